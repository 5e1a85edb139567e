"""Pose maths of semfield.pose: rotations, updates, the OpenCV extrinsics conversion, projection, perturbation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from semfield.eval.pose import pose_errors
from semfield.pose.geometry import (
    backproject,
    c2w_from_opencv_extrinsics,
    closest_point_to_axes,
    matrix_to_rotation_6d,
    opencv_extrinsics_from_c2w,
    perturb_pose,
    pose_update,
    project,
    rotation_6d_to_matrix,
    so3_exp,
)
from semfield.pose.refine import fit_colour_affine, interest_pixel_weights
from semfield.scene.convention import look_at


def test_so3_exp_hand_worked():
    R = so3_exp(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    R = so3_exp(torch.tensor([math.pi, 0.0, 0.0], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(R, np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    np.testing.assert_allclose(so3_exp(torch.zeros(3, dtype=torch.float64)).numpy(), np.eye(3), atol=0)
    # gradient at zero is the skew generator: d(R e_x)/d(ω_z) = e_y
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (so3_exp(w)[1, 0]).backward()
    np.testing.assert_allclose(w.grad.numpy(), [0.0, 0.0, 1.0], atol=1e-9)


def test_pose_update_is_camera_frame():
    c2w = torch.as_tensor(look_at(np.array([1.0, 0.0, 0.5]), np.zeros(3)), dtype=torch.float64)
    # move 0.1 along the camera's own z (forward): the eye moves 0.1 toward the target
    moved = pose_update(c2w, torch.tensor([0, 0, 0, 0, 0, 0.1], dtype=torch.float64))
    forward = c2w[:3, 2]
    np.testing.assert_allclose((moved[:3, 3] - c2w[:3, 3]).numpy(), (0.1 * forward).numpy(), atol=1e-12)
    r, t = pose_errors(c2w.numpy(), pose_update(c2w, torch.tensor([0.1, 0, 0, 0, 0, 0],
                                                                  dtype=torch.float64)).numpy())
    assert float(r) == pytest.approx(math.degrees(0.1), abs=1e-9) and float(t) == pytest.approx(0.0, abs=1e-12)


def test_rotation_6d_round_trip_and_gram_schmidt():
    R = so3_exp(torch.tensor([[0.3, -0.2, 1.1], [2.0, 0.1, -0.4]], dtype=torch.float64))
    np.testing.assert_allclose(rotation_6d_to_matrix(matrix_to_rotation_6d(R)).numpy(), R.numpy(), atol=1e-12)
    # unnormalised, non-orthogonal columns: (2, 0, 0) and (1, 3, 0) -> identity
    out = rotation_6d_to_matrix(torch.tensor([2.0, 0, 0, 1.0, 3.0, 0.0], dtype=torch.float64)).numpy()
    np.testing.assert_allclose(out, np.eye(3), atol=1e-12)


def test_opencv_extrinsics_conversion():
    # camera at (0, 0, 2) looking down -z with x right: world-to-camera R = diag(1, -1, -1), t = (0, 0, 2)
    c2w = np.eye(4)
    c2w[:3, :3] = np.diag([1.0, -1.0, -1.0])
    c2w[:3, 3] = [0.0, 0.0, 2.0]
    rvec, tvec = opencv_extrinsics_from_c2w(c2w)
    np.testing.assert_allclose(np.abs(rvec), [math.pi, 0.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(tvec, [0.0, 0.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(c2w_from_opencv_extrinsics(rvec, tvec), c2w, atol=1e-9)
    rng = np.random.default_rng(3)
    for _ in range(5):
        T = perturb_pose(np.eye(4), float(rng.uniform(1, 179)), 1.0, rng)
        back = c2w_from_opencv_extrinsics(*opencv_extrinsics_from_c2w(T))
        np.testing.assert_allclose(back, T, atol=1e-9)


def test_backproject_project_round_trip():
    K = np.array([[100.0, 0, 32.0], [0, 120.0, 24.0], [0, 0, 1]])
    c2w = look_at(np.array([0.5, -1.0, 0.8]), np.array([0.0, 0.0, 0.2]))
    uv = np.array([[32.0, 24.0], [10.5, 40.5], [60.0, 3.0]])
    depth = np.array([1.0, 2.0, 0.5])
    X = backproject(uv, depth, K, c2w)
    # the principal point at depth 1 lies one unit along the optical axis
    np.testing.assert_allclose(X[0], c2w[:3, 3] + c2w[:3, 2], atol=1e-12)
    uv2, z = project(X, K, c2w)
    np.testing.assert_allclose(uv2, uv, atol=1e-9)
    np.testing.assert_allclose(z, depth, atol=1e-12)


def test_perturb_pose_has_exact_errors():
    rng = np.random.default_rng(0)
    base = look_at(np.array([1.0, 1.0, 1.0]), np.zeros(3))
    for deg, dist in ((30.0, 0.5), (100.0, 1.0)):
        r, t = pose_errors(base, perturb_pose(base, deg, dist, rng))
        assert float(r) == pytest.approx(deg, abs=1e-6) and float(t) == pytest.approx(dist, abs=1e-9)


def test_closest_point_to_axes():
    target = np.array([0.2, -0.1, 0.4])
    cams = np.stack([look_at(e, target) for e in ([1.0, 0, 1], [-1.0, 0.5, 1], [0, -1.2, 0.8])])
    np.testing.assert_allclose(closest_point_to_axes(cams), target, atol=1e-9)


def test_colour_affine_and_interest_weights():
    g = torch.Generator().manual_seed(0)
    render = torch.rand(200, 3, generator=g)
    target = render * torch.tensor([0.5, 1.2, 0.8]) + torch.tensor([0.1, -0.05, 0.0])
    gain, bias = fit_colour_affine(render, target)
    np.testing.assert_allclose(gain.numpy(), [0.5, 1.2, 0.8], atol=1e-5)
    np.testing.assert_allclose(bias.numpy(), [0.1, -0.05, 0.0], atol=1e-5)
    img = torch.zeros(8, 8, 3)
    img[:, 4:] = 1.0  # one vertical edge between columns 3 and 4
    w = interest_pixel_weights(img, uniform_floor=0.2).view(8, 8)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-6)
    assert float(w[:, 3:5].sum()) == pytest.approx(0.8 + 0.2 * 2 / 8, abs=1e-5)  # edge columns get the 80 %
    assert float(w[0, 0]) == pytest.approx(0.2 / 64, abs=1e-7)


def test_thumbnail_correlation_ignores_exposure_and_ranks_the_same_view_first():
    from semfield.pose.photometric import thumbnail, thumbnail_candidates

    gen = torch.Generator().manual_seed(0)
    views = torch.rand(5, 24, 32, 3, generator=gen)
    bank = torch.stack([thumbnail(v, (6, 8)) for v in views])
    assert bank.shape == (5, 3 * 6 * 8) and torch.allclose(bank.norm(dim=1), torch.ones(5))
    darker = 0.5 * views[3] + 0.1  # another exposure: a gain and an offset per channel
    photo = thumbnail(darker, (6, 8))
    assert float(photo @ bank[3]) > 0.999
    assert thumbnail_candidates(bank, photo, 2)[0] == 3
    assert float(thumbnail(torch.full((8, 8, 3), 0.3), (4, 4)).norm()) == 0.0  # flat image: zero vector
