"""Held-out PSNR per ground-truth region (floor, wall, table, objects): hand-worked figures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from semfield.scene.types import Frame, Intrinsics, Scene
from semfield.train.evaluate import _foreground, _region_psnr, class_regions


def test_region_psnr_hand_worked():
    # floor: 100 pixels with squared error 0.01 each (20 dB); table: 300 pixels at 0.001 (30 dB);
    # walls: exact (no finite PSNR); ceiling: not seen (left out)
    out = _region_psnr({"floor": [1.0, 100], "table": [0.3, 300], "wall": [0.0, 100], "ceiling": [0.0, 0]})
    assert set(out) == {"floor", "table", "wall"}
    assert out["floor"]["psnr"] == pytest.approx(20.0)
    assert out["table"]["psnr"] == pytest.approx(30.0)
    assert out["wall"]["psnr"] is None
    assert out["floor"]["pixel_share"] == pytest.approx(0.2) and out["table"]["pixel_share"] == pytest.approx(0.6)
    assert out["floor"]["error_share"] == pytest.approx(1.0 / 1.3)
    assert out["table"]["error_share"] == pytest.approx(0.3 / 1.3)
    assert out["wall"]["error_share"] == 0.0


def test_class_regions_split_stuff_and_objects(tmp_path):
    sem = np.array([[0, 1, 1, 2], [4, 4, 5, 6]], dtype=np.uint8)  # unlabelled, floor, wall, table, 2 objects
    Image.fromarray(sem).save(tmp_path / "sem.png")
    k = Intrinsics(width=4, height=2, fx=2.0, fy=2.0, cx=2.0, cy=1.0)
    frame = Frame(name="f", image_path=tmp_path / "x.png", c2w=np.eye(4), intrinsics=k,
                  extra={"semantic": tmp_path / "sem.png"})
    scene = Scene(root=tmp_path, frames=[frame],
                  ground_truth={"classes": ["unlabelled", "floor", "wall", "ceiling", "table", "mug", "book"],
                                "stuff_classes": ["floor", "wall", "ceiling", "table"]})
    regions = class_regions(frame, scene)
    assert sorted(regions) == ["ceiling", "floor", "objects", "table", "wall"]
    assert regions["floor"].sum() == 2 and regions["wall"].sum() == 1 and regions["ceiling"].sum() == 0
    assert regions["table"].sum() == 2 and regions["objects"].tolist() == [[False] * 4, [False, False, True, True]]
    assert _foreground(class_regions(frame, scene)).tolist() == [[False] * 4, [True] * 4]
