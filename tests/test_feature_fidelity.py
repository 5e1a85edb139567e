"""Tests for semfield.eval.feature_fidelity: hand-worked maps and a brute-force area-pooling reference."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.eval import feature_fidelity
from semfield.eval.feature_fidelity import area_pool, area_weights, centred_feature_cosine, feature_cosine


def brute_force_pool(values: np.ndarray, h: int, w: int) -> np.ndarray:
    """Reference: split every pixel into ``h × w`` sub-pixels (so every cell edge falls on a sub-pixel
    edge, whatever the ratio), give each sub-pixel its pixel's value, and average each cell's sub-pixels."""
    H, W, D = values.shape
    fine = np.repeat(np.repeat(values, h, axis=0), w, axis=1)  # [H h, W w, D]; cell i = fine rows [i H, (i+1) H)
    return fine.reshape(h, H, w, W, D).mean(axis=(1, 3))


def test_identical_maps_give_one():
    rng = np.random.default_rng(0)
    t = rng.standard_normal((4, 5, 8))
    r = np.repeat(np.repeat(t, 3, axis=0), 2, axis=1)  # [12, 10, 8]: every teacher cell is 3 x 2 copies
    assert feature_cosine(r, t) == pytest.approx(1.0)
    assert centred_feature_cosine(r, t) == pytest.approx(1.0)
    assert feature_cosine(torch.from_numpy(r).float(), torch.from_numpy(t).float()) == pytest.approx(1.0, abs=1e-6)


def test_orthogonal_half_hand_value():
    # Teacher 2 x 2 cells, all e0. Rendered 4 x 4: the top half e0, the bottom half e1 (orthogonal).
    # Top cells: cosine 1; bottom cells: cosine 0 -> mean 0.5.
    t = np.zeros((2, 2, 3))
    t[..., 0] = 1.0
    r = np.zeros((4, 4, 3))
    r[:2, :, 0] = 1.0
    r[2:, :, 1] = 1.0
    assert feature_cosine(r, t) == pytest.approx(0.5)
    # A split through the middle of a cell: a 3 x 2 rendered map onto a 2 x 1 grid (ratio 1.5), where
    # cell 0 = row 0 + half of row 1 and cell 1 = half of row 1 + row 2.
    r = np.zeros((3, 2, 3))
    r[0, :, 0] = 1.0  # e0
    r[1, :, 1] = 1.0  # e1
    r[2, :, 1] = 1.0  # e1
    t = np.zeros((2, 1, 3))
    t[..., 0] = 1.0
    # cell 0 pooled = (1 * e0 + 0.5 * e1) / 1.5 -> cos with e0 = 1 / sqrt(1 + 0.25) = 2 / sqrt(5)
    # cell 1 pooled = e1 -> cos 0
    assert feature_cosine(r, t) == pytest.approx((2 / math.sqrt(5) + 0.0) / 2)


def test_area_weights_rows_and_columns():
    a = area_weights(3, 7)  # cell length 7/3
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    np.testing.assert_allclose(a.sum(axis=0) * 7 / 3, 1.0)  # each pixel is shared out completely
    np.testing.assert_allclose(a[0], np.array([1, 1, 1 / 3, 0, 0, 0, 0]) / (7 / 3))
    np.testing.assert_allclose(area_weights(4, 2), [[1, 0], [1, 0], [0, 1], [0, 1]])  # upsampling


@pytest.mark.parametrize("H, W, h, w", [(7, 5, 3, 2), (10, 10, 4, 4), (5, 9, 5, 9), (6, 4, 4, 3), (2, 3, 5, 4)])
def test_area_pool_matches_brute_force(H, W, h, w):
    rng = np.random.default_rng(H * 100 + W)
    values = rng.standard_normal((H, W, 3))
    pooled, frac = area_pool(values, h, w)
    np.testing.assert_allclose(pooled, brute_force_pool(values, h, w), atol=1e-12)
    np.testing.assert_allclose(frac, 1.0)


def test_non_integer_ratio_cosine_against_brute_force():
    rng = np.random.default_rng(3)
    r = rng.standard_normal((11, 13, 6))
    t = rng.standard_normal((4, 5, 6))
    ref = brute_force_pool(r, 4, 5)
    cos = (ref * t).sum(-1) / (np.linalg.norm(ref, axis=-1) * np.linalg.norm(t, axis=-1))
    assert feature_cosine(r, t) == pytest.approx(cos.mean())
    mean = t.reshape(-1, 6).mean(0)
    a, b = ref - mean, t - mean
    cos_c = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    assert centred_feature_cosine(r, t) == pytest.approx(cos_c.mean())


def test_valid_mask_pools_valid_pixels_and_drops_mostly_invalid_cells():
    # Teacher 1 x 2 cells (e0, e0); rendered 2 x 4.
    t = np.zeros((1, 2, 2))
    t[..., 0] = 1.0
    r = np.zeros((2, 4, 2))
    r[..., 0] = 1.0
    r[0, 0] = [0.0, 1.0]  # an invalid pixel holding garbage: must not count
    valid = np.ones((2, 4), dtype=bool)
    valid[0, 0] = False  # cell 0: 3/4 valid -> kept, pooled over its valid pixels only -> e0
    valid[:, 2:] = [[False, False], [True, False]]  # cell 1: 1/4 valid -> dropped
    r[1, 2] = [0.0, 1.0]  # the one valid pixel of cell 1 is orthogonal: would give 0 if counted
    assert feature_cosine(r, t, valid) == pytest.approx(1.0)
    # exactly half valid is kept: cell 1 pools e0 (pixel [0, 2]) and e1 (pixel [1, 2]) -> cosine 1/sqrt(2)
    valid[:, 2:] = [[True, False], [True, False]]
    assert feature_cosine(r, t, valid) == pytest.approx((1.0 + 1 / math.sqrt(2)) / 2)
    assert math.isnan(feature_cosine(r, t, np.zeros((2, 4), dtype=bool)))


def test_centred_removes_the_common_component():
    # A large shared component c plus small per-cell parts: the raw cosine is high even when the per-cell
    # parts are opposite; the centred cosine sees the opposite parts (-1).
    c = np.array([10.0, 0.0, 0.0])
    t = np.stack([c + [0, 1, 0], c + [0, -1, 0]])[None]  # [1, 2, 3], mean c
    r = np.stack([c + [0, -1, 0], c + [0, 1, 0]])[None]
    assert feature_cosine(r, t) > 0.97
    assert centred_feature_cosine(r, t) == pytest.approx(-1.0)


def test_zero_vectors_and_bad_shapes():
    t = np.ones((1, 1, 2))
    assert feature_cosine(np.zeros((2, 2, 2)), t) == 0.0
    with pytest.raises(SemfieldError):
        feature_cosine(np.ones((2, 2, 3)), t)  # feature widths differ
    with pytest.raises(SemfieldError):
        feature_cosine(np.ones((2, 2, 2)), t, valid=np.ones((3, 2), dtype=bool))
    with pytest.raises(SemfieldError):
        feature_cosine(np.ones((2, 2)), t)


def test_doctests():
    assert doctest.testmod(feature_fidelity, raise_on_error=False).failed == 0
