"""Tests for semfield.eval.pose: SE(3) errors, thresholds with a metric scale, returned rate, medians."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from semfield.errors import SemfieldError
from semfield.eval import pose
from semfield.eval.pose import pose_errors, pose_metrics


def _rot(axis: str, deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return {
        "x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
        "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
        "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]),
    }[axis]


def _T(R=None, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = np.eye(3) if R is None else R
    T[:3, 3] = t
    return T


def test_known_rotations_and_translations():
    gt = _T(_rot("z", 90), (1.0, 2.0, 3.0))
    # the estimate is gt composed with a known error Δ (5° about x, t = (0.03, 0, 0.04)): E = Δ exactly
    delta = _T(_rot("x", 5), (0.03, 0.0, 0.04))
    r, t = pose_errors(gt, gt @ delta)
    assert float(r) == pytest.approx(5.0, abs=1e-9)
    assert float(t) == pytest.approx(0.05, abs=1e-12)
    r, t = pose_errors(np.eye(4), _T(_rot("y", 90)))
    assert float(r) == pytest.approx(90.0, abs=1e-9) and float(t) == 0.0
    # 180° (trace -1, possibly below by rounding: arccos is clipped)
    r, _ = pose_errors(np.eye(4), _T(_rot("z", 180)))
    assert float(r) == pytest.approx(180.0, abs=1e-6)
    # batch shape preserved
    r, t = pose_errors(np.stack([np.eye(4)] * 3), np.stack([_T(_rot("x", d)) for d in (0, 10, 20)]))
    np.testing.assert_allclose(r, [0, 10, 20], atol=1e-6)


def test_success_thresholds_with_scale_and_returned_rate():
    gt = np.stack([_T(_rot("z", 30 * q), (q, 0.0, 0.0)) for q in range(5)])
    deltas = [_T(_rot("x", 1), (0.01, 0, 0)), _T(_rot("x", 3), (0, 0.01, 0)), _T(_rot("y", 1), (0, 0, 0.03))]
    est = [gt[q] @ d for q, d in enumerate(deltas)] + [None, np.full((4, 4), np.nan)]
    m = pose_metrics(gt, est, metres_per_unit=1.0)  # errors (1°, 1 cm), (3°, 1 cm), (1°, 3 cm), -, -
    assert m["n"] == 5 and m["returned_rate"] == pytest.approx(0.6)
    assert m["success_5deg_5cm"] == pytest.approx(0.6)
    assert m["success_2deg_2cm"] == pytest.approx(0.2)
    assert m["median_rot_deg"] == pytest.approx(1.0) and m["median_trans_cm"] == pytest.approx(1.0)
    assert m["median_trans_units"] == pytest.approx(0.01)
    assert m["rot_deg"][3] is None and m["trans_cm"][4] is None
    # twice the metres per unit: 2, 2 and 6 cm -> 5/5: queries 0, 1; 2/2: none (2 cm is not < 2 cm)
    m = pose_metrics(gt, est, metres_per_unit=2.0)
    assert m["success_5deg_5cm"] == pytest.approx(0.4)
    assert m["success_2deg_2cm"] == 0.0
    assert m["median_trans_cm"] == pytest.approx(2.0)
    # an object-scale scene: 0.01 units at 0.1 m per unit = 0.1 cm
    assert pose_metrics(gt[:1], est[:1], metres_per_unit=0.1)["success_2deg_2cm"] == 1.0


def test_nothing_returned_and_errors():
    m = pose_metrics(np.stack([np.eye(4)] * 2), [None, None])
    assert m["returned_rate"] == 0.0 and m["success_5deg_5cm"] == 0.0 and math.isnan(m["median_rot_deg"])
    with pytest.raises(SemfieldError):
        pose_metrics(np.stack([np.eye(4)] * 2), [None])
    with pytest.raises(SemfieldError):
        pose_metrics(np.stack([np.eye(4)]), [np.eye(3)])
    with pytest.raises(SemfieldError):
        pose_metrics(np.stack([np.eye(4)]), [np.eye(4)], metres_per_unit=0)


def test_doctests():
    assert doctest.testmod(pose, raise_on_error=False).failed == 0
