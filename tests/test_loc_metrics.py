"""Tests for semfield.eval.localization: LERF vs LangSplat localization, box conventions, 3D boxes."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from scipy import ndimage

from semfield.errors import SemfieldError
from semfield.eval import localization
from semfield.eval.localization import (
    argmax_pixel,
    box_filter,
    box_iou_3d,
    langsplat_localization_hit,
    langsplat_smoothed,
    lerf_localization_hit,
    localization_accuracy,
    pixels_in_boxes,
    point_in_box,
)


def _crafted_map() -> np.ndarray:
    """40 x 40: a broad plateau of 0.8 on rows/cols 0..19 (the object) and a one-pixel spike of 1.0 at
    row 30, col 35 (noise)."""
    r = np.zeros((40, 40))
    r[:20, :20] = 0.8
    r[30, 35] = 1.0
    return r


def test_lerf_and_langsplat_differ_on_crafted_map():
    r = _crafted_map()
    box = [[0, 0, 20, 20]]
    assert argmax_pixel(r) == (35, 30)
    assert not lerf_localization_hit(r, box)
    # Smoothed at (row 5, col 5): rows/cols -10..19, reflected -10..-1 -> 10..1, all on the plateau: 0.8, so
    # 0.5·(0.8 + 0.8) = 0.8. At the spike: window cols 20..49, and the reflect-101 border mirrors col 35 to
    # col 2·39 - 35 = 43, inside it, so the spike counts twice: 0.5·(2/900 + 1.0) = 0.501111 < 0.8.
    s = langsplat_smoothed(r)
    assert s[5, 5] == pytest.approx(0.8)
    assert s[30, 35] == pytest.approx(0.5 * (2.0 / 900 + 1.0))
    assert langsplat_localization_hit(r, box)
    assert localization_accuracy([r, r], [box, [[30, 25, 40, 40]]], variant="lerf") == 0.5
    assert localization_accuracy([r, r], [box, [[30, 25, 40, 40]]], variant="langsplat") == 0.5
    assert localization_accuracy([r], [box], variant="langsplat") == 1.0
    assert localization_accuracy([r], [box], variant="lerf") == 0.0


def test_box_filter_matches_opencv_semantics():
    # reference: scipy's uniform filter with mode 'mirror' (= BORDER_REFLECT_101) centres even windows at
    # size // 2, like cv2.filter2D's default anchor
    rng = np.random.default_rng(0)
    img = rng.random((37, 45))
    for size in (1, 3, 4, 30):
        np.testing.assert_allclose(
            box_filter(img, size), ndimage.uniform_filter(img, size, mode="mirror"), rtol=0, atol=1e-12
        )
    # hand value: [0, 3, 0] with a 3-wide window and reflect-101 borders -> [2, 1, 2]
    np.testing.assert_allclose(box_filter(np.array([[0.0, 3.0, 0.0]]), 3), [[2.0, 1.0, 2.0]])
    # even window: output j averages j-2..j+1 (anchor 2): [1, 2, 3, 4, 5] padded 3,2 | ... | 4
    np.testing.assert_allclose(box_filter(np.array([[1.0, 2, 3, 4, 5]]), 4)[0], [2.0, 2.0, 2.5, 3.5, 4.0])


def test_langsplat_raw_weight_zero_is_smoothed_only():
    r = _crafted_map()
    np.testing.assert_allclose(langsplat_smoothed(r, raw_weight=0.0), box_filter(r, 30))


def test_pixel_box_conventions():
    # box [1, 1, 3, 2]: centres x in [1, 3), y in [1, 2) -> cols 1, 2 (centres 1.5, 2.5), row 1 (centre 1.5)
    box = [[1, 1, 3, 2]]
    cols, rows = np.meshgrid(np.arange(5), np.arange(4))
    inside = pixels_in_boxes(cols.ravel(), rows.ravel(), box).reshape(4, 5)
    expect = np.zeros((4, 5), dtype=bool)
    expect[1, 1:3] = True
    np.testing.assert_array_equal(inside, expect)
    # LangSplat: closed on integer indices, corners may come in any order -> cols 1..3, rows 1..2
    inside = pixels_in_boxes(cols.ravel(), rows.ravel(), [[3, 2, 1, 1]], convention="indices").reshape(4, 5)
    expect = np.zeros((4, 5), dtype=bool)
    expect[1:3, 1:4] = True
    np.testing.assert_array_equal(inside, expect)
    # several boxes: any of them
    assert pixels_in_boxes([0, 4], [0, 3], [[0, 0, 1, 1], [4, 3, 5, 4]]).tolist() == [True, True]
    assert not lerf_localization_hit(np.eye(3), np.zeros((0, 4)))
    with pytest.raises(SemfieldError):
        pixels_in_boxes([0], [0], [[0, 0, 1]])
    with pytest.raises(SemfieldError):
        pixels_in_boxes([0], [0], box, convention="corners")


def test_accuracy_errors():
    with pytest.raises(SemfieldError):
        localization_accuracy([np.eye(3)], [], variant="lerf")
    with pytest.raises(SemfieldError):
        localization_accuracy([np.eye(3)], [[[0, 0, 1, 1]]], variant="both")
    with pytest.raises(SemfieldError):
        argmax_pixel(np.zeros(3))
    assert np.isnan(localization_accuracy([], []))


def test_box_iou_3d():
    a = np.array([[0.0, 0, 0], [2, 1, 1]])
    assert box_iou_3d(a, a) == 1.0
    assert box_iou_3d(a, a + 5) == 0.0
    assert box_iou_3d(a, [[2, 0, 0], [3, 1, 1]]) == 0.0  # touching faces
    # shifted by half its length along x: intersection 1, union 2 + 2 - 1 = 3
    assert box_iou_3d(a, a + [1, 0, 0]) == pytest.approx(1 / 3)
    # half of a unit cube inside it: 0.5 / 1
    assert box_iou_3d([[0, 0, 0], [1, 1, 1]], [[0, 0, 0], [0.5, 1, 1]]) == pytest.approx(0.5)
    # overlap on two axes: [0,2]x[0,2]x[0,1] vs [1,3]x[1,3]x[0,1]: inter 1, union 4 + 4 - 1 = 7
    assert box_iou_3d([[0, 0, 0], [2, 2, 1]], [[1, 1, 0], [3, 3, 1]]) == pytest.approx(1 / 7)
    with pytest.raises(SemfieldError, match="exceeds"):
        box_iou_3d([[1, 0, 0], [0, 1, 1]], a)
    with pytest.raises(SemfieldError, match=r"\[2, 3\]"):
        box_iou_3d(np.zeros(6), a)


def test_point_in_box_with_margin():
    box = np.array([[0.0, 0, 0], [1, 2, 3]])
    assert point_in_box([0.5, 1, 1.5], box)
    assert point_in_box([1, 2, 3], box)  # closed
    assert not point_in_box([1.05, 1, 1], box)
    assert point_in_box([1.05, 1, 1], box, margin=0.1)
    assert not point_in_box([1.05, 1, -0.2], box, margin=0.1)
    np.testing.assert_array_equal(point_in_box([[0.5, 1, 1], [2, 1, 1]], box), [True, False])


def test_doctests():
    assert doctest.testmod(localization, raise_on_error=False).failed == 0
