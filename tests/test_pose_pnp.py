"""PnP on synthetic correspondences recovers a known pose in semfield's convention; matching helpers."""

from __future__ import annotations

import numpy as np
import torch

from semfield.eval.pose import pose_errors
from semfield.pose.geometry import project
from semfield.pose.matching import dense_feature_matches, flow_matches, sift_matches
from semfield.pose.pnp import solve_pnp
from semfield.scene.convention import look_at
from semfield.scene.types import Intrinsics

INTR = Intrinsics(width=192, height=144, fx=180.0, fy=180.0, cx=96.0, cy=72.0)


def _synthetic(seed: int, n: int = 150):
    rng = np.random.default_rng(seed)
    c2w = look_at(np.array([1.2, -0.8, 1.0]), np.array([0.05, 0.1, 0.3]))
    points = rng.uniform([-0.5, -0.5, 0.0], [0.5, 0.5, 0.6], size=(n, 3))
    uv, z = project(points, INTR.K, c2w)
    keep = (z > 0) & (uv[:, 0] > 0) & (uv[:, 0] < INTR.width) & (uv[:, 1] > 0) & (uv[:, 1] < INTR.height)
    return c2w, points[keep], uv[keep], rng


def test_pnp_recovers_known_pose_exactly():
    c2w, X, uv, _ = _synthetic(0)
    res = solve_pnp(X, uv, INTR.K)
    assert res.c2w is not None and res.inliers == len(X)
    r, t = pose_errors(c2w, res.c2w)
    assert float(r) < 1e-4 and float(t) < 1e-6  # arccos near 1 resolves ~1e-6 degrees
    # the convention: the recovered camera looks along its +z at the scene (the points are in front)
    _, z = project(X, INTR.K, res.c2w)
    assert (z > 0).all()


def test_pnp_with_noise_and_outliers():
    c2w, X, uv, rng = _synthetic(1)
    uv_noisy = uv + rng.normal(0, 0.3, size=uv.shape)
    n_out = len(X) // 3
    uv_noisy[:n_out] = rng.uniform([0, 0], [INTR.width, INTR.height], size=(n_out, 2))  # a third are wrong
    res = solve_pnp(X, uv_noisy, INTR.K, reprojection_px=2.0)
    assert res.c2w is not None
    r, t = pose_errors(c2w, res.c2w)
    assert float(r) < 0.2 and float(t) < 0.005, (float(r), float(t))
    assert not res.inlier_mask[:n_out].any() or res.inlier_mask[:n_out].mean() < 0.1
    assert res.inlier_mask[n_out:].mean() > 0.9


def test_pnp_fails_cleanly_with_too_few_points():
    _, X, uv, _ = _synthetic(2)
    res = solve_pnp(X[:5], uv[:5], INTR.K)
    assert res.c2w is None and res.inliers == 0


def test_dense_matches_are_mutual_patch_centres():
    # 2x2 patch grids; the render's patches are the photo's with columns swapped
    f = torch.eye(4).reshape(2, 2, 4)
    m = dense_feature_matches(f, f[:, [1, 0]], query_size=(28, 28), render_size=(14, 14))
    assert len(m) == 4
    order = np.lexsort((m.query[:, 0], m.query[:, 1]))
    np.testing.assert_allclose(m.query[order], [[7, 7], [21, 7], [7, 21], [21, 21]])
    np.testing.assert_allclose(m.render[order], [[10.5, 3.5], [3.5, 3.5], [10.5, 10.5], [3.5, 10.5]])


def test_sift_matches_a_shifted_texture_in_half_integer_pixels():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, size=(40, 40)).repeat(4, 0).repeat(4, 1)
    import cv2

    base = cv2.GaussianBlur(base, (0, 0), 1.0)
    img = np.stack([base] * 3, -1).astype(np.float32)
    shifted = np.roll(img, (6, -9), axis=(0, 1))  # content moves 9 px left and 6 px down
    m = sift_matches(img, shifted)
    assert len(m) > 20
    d = np.median(m.render - m.query, axis=0)
    np.testing.assert_allclose(d, [-9.0, 6.0], atol=0.3)


def _texture(size: int = 96, seed: int = 0) -> np.ndarray:
    """A smooth random grey texture ``[size, size, 3]`` in [0, 1]."""
    import cv2

    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(0, 1, size=(size // 4, size // 4)).repeat(4, 0).repeat(4, 1), (0, 0), 1.5)
    return np.stack([base] * 3, -1).astype(np.float32)


def test_flow_matches_follow_a_shift_even_at_another_exposure():
    img = _texture()
    photo = np.roll(img, (5, -7), axis=(0, 1)) * 0.6 + 0.1  # content 7 px left, 5 px down; darker, flatter
    m = flow_matches(photo, img, step=4)
    assert len(m) > 200  # most of the 24 x 24 grid, less what left the picture or wrapped around
    d = m.query - m.render
    inner = (m.render[:, 0] > 12) & (m.render[:, 0] < 84) & (m.render[:, 1] > 12) & (m.render[:, 1] < 84)
    np.testing.assert_allclose(np.median(d[inner], axis=0), [-7.0, 5.0], atol=0.25)
    assert np.mean(np.all(np.abs(d[inner] - [-7.0, 5.0]) < 1.0, axis=1)) > 0.9
    # render points sit on the step grid at pixel centres; those that would land left of the photo are gone
    np.testing.assert_allclose((m.render - 2.5) % 4, 0)
    assert np.all(m.query[:, 0] >= 0) and m.render[:, 0].min() > 7


def test_flow_matches_scale_to_a_larger_photo_and_respect_the_mask():
    import cv2

    img = _texture(seed=1)
    photo = cv2.resize(img, (192, 192), interpolation=cv2.INTER_LINEAR)  # the same view at twice the size
    mask = np.zeros((96, 96), dtype=bool)
    mask[:, :48] = True
    m = flow_matches(photo, img, render_mask=mask, step=4)
    assert len(m) > 100
    assert np.all(m.render[:, 0] < 48)
    np.testing.assert_allclose(np.median(np.abs(m.query - 2 * m.render), axis=0), [0, 0], atol=0.3)


def test_intrinsics_long_side_at_most_scales_down_never_up():
    small = INTR.long_side_at_most(96)
    assert (small.width, small.height, small.fx, small.cx) == (96, 72, 90.0, 48.0)
    assert INTR.long_side_at_most(400) == INTR


def test_locate_options_reject_an_unknown_matcher():
    import pytest

    from semfield.errors import SemfieldError
    from semfield.pose.locate import LocateOptions

    with pytest.raises(SemfieldError, match="unknown fine matcher 'orb'"):
        LocateOptions(fine_matcher="orb")


def test_flow_matches_drop_pixels_whose_flow_does_not_come_back():
    img = _texture(seed=2)
    photo = _texture(seed=3)  # an unrelated picture: flow either way lands somewhere different
    m = flow_matches(photo, img, step=4)
    assert len(m) < 0.5 * 24 * 24
