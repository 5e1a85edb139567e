"""SPINE's geometric fidelity factor (semfield.eval.geometric_fidelity) on hand-worked images."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from semfield.errors import SemfieldError
from semfield.eval import geometric_fidelity as gf


def _step_image(h=8, w=10, col=5) -> np.ndarray:
    rgb = np.zeros((h, w, 3))
    rgb[:, col:] = 1.0
    return rgb


def test_doctests():
    assert doctest.testmod(gf, raise_on_error=False).failed == 0


def test_sobel_of_a_step_and_a_ramp_by_hand():
    # a 0 -> 1 step between columns 4 and 5: central difference of the [1, 2, 1] / 4-smoothed rows is 1 on
    # columns 4 and 5 and 0 elsewhere; no vertical change (edge-replicated rows)
    expected = np.zeros((8, 10))
    expected[:, 4:6] = 1.0
    np.testing.assert_array_equal(gf.sobel_norm(_step_image()[..., 0]), expected)
    # a ramp of slope 0.25 per pixel from column 3 to 7: 2 * 0.25 inside, 0.25 at its two ends (half steps)
    ramp = np.clip((np.arange(10) - 3) / 4.0, 0, 1)[None, :] * np.ones((8, 1))
    np.testing.assert_allclose(gf.sobel_norm(ramp)[0], [0, 0, 0, 0.25, 0.5, 0.5, 0.5, 0.25, 0, 0])


def test_sharp_features_keep_the_edges_and_blurred_ones_lose_them():
    rgb = _step_image()
    # a two-region feature map: one direction of variation -> grey step 1/3, gradient 1/3
    sharp = np.zeros((8, 10, 6))
    sharp[:, 5:, 2] = 7.0
    res = gf.geometric_fidelity(sharp, rgb)
    assert res["rgb_edges"] == [16] * 8
    assert res["feature_edges"] == [16, 16, 16, 0, 0, 0, 0, 0] and res["factor"] == pytest.approx(3 / 8)
    # the same map blurred into a 4-pixel ramp: gradient at most 2 * (1/3) / 4 = 1/6 -> edges only at 0.1
    blurred = np.zeros((8, 10, 6))
    blurred[..., 2] = 7.0 * np.clip((np.arange(10) - 3) / 4.0, 0, 1)[None, :]
    res_blur = gf.geometric_fidelity(blurred, rgb)
    assert res_blur["feature_edges"] == [24, 0, 0, 0, 0, 0, 0, 0]  # columns 4, 5, 6 at 1/6
    assert res_blur["factor"] == pytest.approx(1.5 / 8)  # 24 / 16 at 0.1, 0 elsewhere
    assert res_blur["factor"] < res["factor"]


def test_flat_features_have_no_edges_and_flat_images_no_factor():
    rgb = _step_image()
    flat = np.ones((8, 10, 4))
    res = gf.geometric_fidelity(flat, rgb)
    assert res["feature_edges"] == [0] * 8 and res["factor"] == 0.0
    res = gf.geometric_fidelity(_step_image()[..., :2], np.zeros((8, 10, 3)))
    assert res["ratio"] == [None] * 8 and res["factor"] is None


def test_valid_mask_limits_the_comparison():
    rgb = _step_image()
    valid = np.zeros((8, 10), dtype=bool)
    valid[:, :3] = True  # far from the edge: nothing changes there
    res = gf.geometric_fidelity(rgb[..., :2], rgb, valid)
    assert res["rgb_edges"] == [0] * 8 and res["factor"] is None


@pytest.mark.parametrize("features, rgb", [(np.zeros((4, 4)), np.zeros((4, 4, 3))),
                                           (np.zeros((4, 5, 2)), np.zeros((4, 4, 3)))])
def test_bad_shapes_are_clear_errors(features, rgb):
    with pytest.raises(SemfieldError, match="must be"):
        gf.geometric_fidelity(features, rgb)
