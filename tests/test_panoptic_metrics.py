"""Tests for semfield.eval.panoptic: scene-level PQ with stacked frames, stuff merge and the void rule."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from semfield.errors import SemfieldError
from semfield.eval import panoptic
from semfield.eval.panoptic import instance_coverage, panoptic_quality

V = -1  # void


def test_perfect_prediction_over_stacked_frames():
    gt_c = np.array([[[0, 0, 1, 1], [2, 2, 1, 1]], [[0, 0, 1, 2], [V, 2, 1, 1]]])  # [F=2, H=2, W=4]
    gt_i = np.array([[[0, 0, 3, 3], [1, 1, 4, 4]], [[0, 0, 3, 1], [0, 1, 4, 4]]])
    # predicted ids are arbitrary but consistent across frames; void ground truth may be predicted anything
    pred_i = np.where(gt_i == 3, 17, np.where(gt_i == 4, 9, 5))
    pred_c = np.where(gt_c == V, 0, gt_c)
    s = panoptic_quality(pred_c, pred_i, gt_c, gt_i, stuff_classes=[0], void_label=V)
    assert (s.pq, s.sq, s.rq) == (1.0, 1.0, 1.0)
    assert (s.pq_things, s.pq_stuff) == (1.0, 1.0)
    assert s.per_class[1]["tp"] == 2 and s.per_class[2]["tp"] == 1


def test_instance_ids_must_be_consistent_across_frames():
    gt_c = np.ones((2, 4), int)
    gt_i = np.zeros((2, 4), int)
    pred_i = np.array(
        [[0, 0, 0, 0], [1, 1, 1, 1]]
    )  # same object, a new id in frame 2: IoU 4/8 = 0.5, no match
    s = panoptic_quality(gt_c, pred_i, gt_c, gt_i)
    assert s.per_class[1]["tp"] == 0 and s.per_class[1]["fp"] == 2 and s.per_class[1]["fn"] == 1
    assert s.pq == 0.0


def test_split_instance():
    # one ground-truth thing of 10 pixels predicted as two instances of 6 and 4:
    # the 6 matches with IoU 0.6 (TP), the 4 is a FP. PQ = 0.6 / (1 + 0.5) = 0.4, SQ = 0.6, RQ = 2/3.
    c = np.ones(10, int)
    s = panoptic_quality(c, np.array([1] * 6 + [2] * 4), c, np.zeros(10, int))
    assert s.pq == pytest.approx(0.4)
    assert s.sq == pytest.approx(0.6)
    assert s.rq == pytest.approx(2 / 3)
    assert np.isnan(s.pq_stuff) and s.pq_things == pytest.approx(0.4)


def test_void_rule():
    #            0  1  2  3  4  5  6  7  8  9 10 11 12 13 14 15 16
    gt_c = np.array([1, 1, 1, 1, V, V, V, V, V, V, V, 0, 0, 0, 0, 0, 0])
    gt_i = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    # pred 7 covers the thing (4 px) and 4 void px: IoU = 4 / (8 + 4 - 4 - 4) = 1 (plain IoU would be 0.5);
    # pred 8 lies wholly in void: ignored, not a FP.
    pred_c = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, V, 0, 0, 0, 0, 0, 0])
    pred_i = np.array([7, 7, 7, 7, 7, 7, 7, 7, 8, 8, 0, 0, 0, 0, 0, 0, 0])
    s = panoptic_quality(pred_c, pred_i, gt_c, gt_i, stuff_classes=[0], void_label=V)
    assert s.per_class[1] == pytest.approx(
        {"tp": 1, "fp": 0, "fn": 0, "iou_sum": 1.0, "pq": 1.0, "sq": 1.0, "rq": 1.0}
    )
    assert s.pq == 1.0
    # pred 9 is exactly half void (px 8, 9) and half stuff (px 15, 16): not ignored -> FP of class 1.
    # class 1: TP 1 (IoU 1), FP 1 -> PQ = 1 / 1.5, SQ 1, RQ 2/3;
    # stuff: pred 11..14 vs gt 11..16: IoU 4/6 -> PQ 2/3
    pred_c[[8, 9, 15, 16]] = 1
    pred_i[[8, 9, 15, 16]] = 9
    s = panoptic_quality(pred_c, pred_i, gt_c, gt_i, stuff_classes=[0], void_label=V)
    assert s.per_class[1]["fp"] == 1
    assert (s.pq_things, s.sq_things, s.rq_things) == pytest.approx((2 / 3, 1.0, 2 / 3))
    assert (s.pq_stuff, s.sq_stuff, s.rq_stuff) == pytest.approx((2 / 3, 2 / 3, 1.0))
    assert s.pq == pytest.approx(2 / 3)


def test_stuff_merge():
    # wall (stuff class 0) annotated as two instances, predicted as one (or as two other ids): one segment
    gt_c = np.zeros(8, int)
    gt_i = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    one = panoptic_quality(np.zeros(8, int), np.zeros(8, int), gt_c, gt_i, stuff_classes=[0])
    two = panoptic_quality(np.zeros(8, int), np.array([5] * 2 + [6] * 6), gt_c, gt_i, stuff_classes=[0])
    assert one.pq == 1.0 and two.pq == 1.0
    # as a thing class the same prediction would be one FP and two FNs
    thing = panoptic_quality(np.zeros(8, int), np.zeros(8, int), gt_c, gt_i)
    assert thing.per_class[0]["tp"] == 0 and thing.pq == 0.0


def test_hand_worked_pq():
    # two frames of 10 pixels; class 1 = thing (instances a = 1, b = 2), class 0 = stuff.
    gt_c = np.array([[1, 1, 1, 0, 0, 0, 0, 1, 1, 0], [1, 1, 0, 0, 0, 0, 0, 1, 0, 0]])
    gt_i = np.array([[1, 1, 1, 0, 0, 0, 0, 2, 2, 0], [1, 1, 0, 0, 0, 0, 0, 2, 0, 0]])
    pred_c = np.array([[1, 1, 1, 1, 1, 1, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    pred_i = np.array([[10, 10, 10, 10, 11, 11, 0, 0, 0, 0], [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    # a (5 px) vs pred 10 (5 px): I = 4, IoU = 4 / 6 -> TP. b (3 px) unmatched -> FN.
    # pred 11 (2 stuff px) -> FP.
    # class 1: PQ = (2/3) / (1 + 0.5 + 0.5) = 1/3, SQ = 2/3, RQ = 1/2.
    # stuff: gt 12 px, pred 13 px, I = 9, IoU = 9 / 16 = 0.5625 -> PQ = SQ = 0.5625, RQ = 1.
    s = panoptic_quality(pred_c, pred_i, gt_c, gt_i, stuff_classes=[0])
    assert (s.pq_things, s.sq_things, s.rq_things) == pytest.approx((1 / 3, 2 / 3, 0.5))
    assert (s.pq_stuff, s.sq_stuff, s.rq_stuff) == pytest.approx((0.5625, 0.5625, 1.0))
    assert s.pq == pytest.approx((1 / 3 + 0.5625) / 2)  # 0.447917
    assert s.sq == pytest.approx((2 / 3 + 0.5625) / 2)
    assert s.rq == pytest.approx(0.75)


def test_instance_coverage_precision_recall():
    gt = np.array([1, 1, 1, 1, 2, 2, 3, 3, -1, -1])
    pred = np.array([5, 5, 5, 6, 6, 6, 7, 7, 7, 7])
    valid = gt != -1  # the last two pixels are void: dropped
    m = instance_coverage(pred, gt, valid=valid)
    # gt 1 (4 px): pred 5 IoU 3/4, pred 6 IoU 1/6; gt 2 (2 px): pred 6 IoU 2/3; gt 3 (2 px): pred 7 IoU 1.
    assert m["mcov"] == pytest.approx((0.75 + 2 / 3 + 1.0) / 3)
    assert m["mwcov"] == pytest.approx((4 * 0.75 + 2 * 2 / 3 + 2 * 1.0) / 8)
    assert (m["precision"], m["recall"]) == (1.0, 1.0)
    assert (m["n_gt"], m["n_pred"]) == (3, 3)
    m = instance_coverage(np.zeros(4, int), np.array([1, 1, 2, 2]))  # one blob over two objects
    assert (m["mcov"], m["precision"], m["recall"]) == (0.5, 0.0, 0.0)


def test_errors():
    with pytest.raises(SemfieldError, match="size"):
        panoptic_quality(np.zeros(3, int), np.zeros(3, int), np.zeros(4, int), np.zeros(4, int))
    with pytest.raises(SemfieldError, match="integer"):
        panoptic_quality(np.zeros(3), np.zeros(3, int), np.zeros(3, int), np.zeros(3, int))


def test_doctests():
    assert doctest.testmod(panoptic, raise_on_error=False).failed == 0
