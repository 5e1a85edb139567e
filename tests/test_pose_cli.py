"""``semfield locate`` input errors, intrinsics parsing and the robustness variants of a query photo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from semfield.cli import cli
from semfield.errors import SemfieldError
from semfield.pose.outputs import parse_intrinsics
from semfield.pose.robustness import add_occluders, change_exposure, resize_photo
from semfield.scene.images import save_rgb
from semfield.scene.types import Intrinsics


def test_unknown_run_is_one_line_error(tmp_path):
    photo = tmp_path / "p.png"
    save_rgb(photo, np.zeros((8, 8, 3), dtype=np.float32))
    res = CliRunner().invoke(cli, ["locate", str(tmp_path / "nope"), str(photo), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "run folder not found" in res.output and len(res.output.strip().splitlines()) == 1


def test_parse_intrinsics():
    k = parse_intrinsics("100,110,32.5,24", 64, 48)
    assert (k.width, k.height, k.fx, k.fy, k.cx, k.cy) == (64, 48, 100.0, 110.0, 32.5, 24.0)
    for bad in ("100,110,32", "a,b,c,d", "-1,1,0,0", "nan,1,0,0"):
        with pytest.raises(SemfieldError):
            parse_intrinsics(bad, 64, 48)


def test_robustness_variants():
    img = torch.full((30, 60, 3), 0.5)
    assert float(change_exposure(img, gain=0.5, gamma=1.0)[0, 0, 0]) == pytest.approx(0.25)
    occluded = add_occluders(img, count=1, side_frac=0.2, seed=1)
    changed = (occluded != img).any(-1)
    assert int(changed.sum()) <= 6 * 6 and int(changed.sum()) > 0  # one 6x6 square (20 % of 30 px)
    intr = Intrinsics(width=60, height=30, fx=50.0, fy=50.0, cx=30.0, cy=15.0)
    small, k = resize_photo(img, intr, 0.5)
    assert tuple(small.shape) == (15, 30, 3) and (k.fx, k.cx, k.cy) == (25.0, 15.0, 7.5)
