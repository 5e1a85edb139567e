"""Scene-level scoring of panoptic maps (semfield.panoptic.evaluate.score_maps) on hand-made stacks."""

from __future__ import annotations

import numpy as np
import pytest

from semfield.panoptic.evaluate import score_maps


def _stack():
    """Two 4 x 6 frames: void row 0 (class 0), stuff class 1 elsewhere, objects 1 and 2 (class 5)."""
    cls = np.ones((2, 4, 6), dtype=np.int64)
    inst = np.zeros((2, 4, 6), dtype=np.int64)
    cls[:, 0] = 0
    for f in range(2):
        cls[f, 1:3, 0:2], inst[f, 1:3, 0:2] = 5, 1
        cls[f, 1:3, 3:5], inst[f, 1:3, 3:5] = 5, 2
    return cls, inst


def test_perfect_and_relabelled_predictions_score_100():
    cls, inst = _stack()
    s = score_maps(cls, inst, cls, inst, stuff_classes=[1])
    assert s["pq"] == pytest.approx(100.0) and s["pq_things"] == pytest.approx(100.0)
    assert s["mcov"] == pytest.approx(100.0) and s["precision"] == s["recall"] == pytest.approx(100.0)
    relabelled = np.where(inst == 1, 7, np.where(inst == 2, 3, 11))  # new ids, the same in both frames
    assert score_maps(cls, relabelled, cls, inst, [1])["pq"] == pytest.approx(100.0)


def test_ids_that_change_between_frames_are_penalised():
    cls, inst = _stack()
    swapped = inst.copy()
    swapped[1] = np.where(inst[1] == 1, 2, np.where(inst[1] == 2, 1, 0))  # frame 1 swaps the two objects
    s = score_maps(cls, swapped, cls, inst, [1])
    # each predicted object overlaps each true object by half: IoU = 4 / 12, no match
    assert s["pq_things"] == pytest.approx(0.0)
    assert s["pq_stuff"] == pytest.approx(100.0)
    assert s["mcov"] == pytest.approx(100.0 / 3.0)
