"""The one camera convention: quaternions, OpenGL ↔ OpenCV, COLMAP poses, look_at and projection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semfield.scene.convention import (
    FLIP_YZ,
    c2w_to_colmap,
    colmap_to_c2w,
    look_at,
    opencv_to_opengl,
    opengl_to_opencv,
    qvec_to_rotmat,
    rotmat_to_qvec,
)

unit = st.floats(-1.0, 1.0, allow_nan=False)
quats = st.tuples(unit, unit, unit, unit).filter(lambda q: np.linalg.norm(q) > 1e-3)
vec3 = st.tuples(*[st.floats(-100.0, 100.0, allow_nan=False)] * 3)


def _unit(q) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q)
    return -q if q[0] < 0 else q


@settings(max_examples=200, deadline=None, derandomize=True)
@given(quats)
def test_quaternion_rotation_round_trip(q):
    q = _unit(q)
    R = qvec_to_rotmat(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-12)
    q2 = rotmat_to_qvec(R)
    # q and -q are the same rotation; with w ≈ 0 the sign is not pinned down
    assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < 1e-9
    np.testing.assert_allclose(qvec_to_rotmat(q2), R, atol=1e-12)


def test_quaternion_matches_hand_worked_rotations():
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    # 90° about z (Hamilton, w first): x → y
    np.testing.assert_allclose(qvec_to_rotmat([c, 0, 0, s]) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    # 90° about y: z → x
    np.testing.assert_allclose(qvec_to_rotmat([c, 0, s, 0]) @ [0, 0, 1], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(rotmat_to_qvec(np.eye(3)), [1, 0, 0, 0], atol=1e-12)
    Rz = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(rotmat_to_qvec(Rz), [c, 0, 0, s], atol=1e-12)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(quats, vec3)
def test_opengl_opencv_round_trip(q, t):
    c2w = np.eye(4)
    c2w[:3, :3], c2w[:3, 3] = qvec_to_rotmat(_unit(q)), t
    gl = opencv_to_opengl(c2w)
    np.testing.assert_allclose(opengl_to_opencv(gl), c2w, atol=1e-12)
    # same camera centre and viewing direction: OpenCV +z is OpenGL -z, OpenCV +y (down) is OpenGL -y
    np.testing.assert_allclose(gl[:3, 3], c2w[:3, 3])
    np.testing.assert_allclose(gl[:3, 2], -c2w[:3, 2])
    np.testing.assert_allclose(gl[:3, 1], -c2w[:3, 1])
    np.testing.assert_allclose(gl[:3, 0], c2w[:3, 0])
    np.testing.assert_allclose(FLIP_YZ @ FLIP_YZ, np.eye(4))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(quats, vec3)
def test_colmap_round_trip(q, t):
    q = _unit(q)
    c2w = colmap_to_c2w(q, np.asarray(t))
    # colmap_to_c2w is the inverse of [R | t]
    w2c = np.eye(4)
    w2c[:3, :3], w2c[:3, 3] = qvec_to_rotmat(q), t
    np.testing.assert_allclose(c2w @ w2c, np.eye(4), atol=1e-9)
    q2, t2 = c2w_to_colmap(c2w)
    assert min(np.abs(q2 - q).max(), np.abs(q2 + q).max()) < 1e-9
    np.testing.assert_allclose(t2, t, atol=1e-9)
    np.testing.assert_allclose(colmap_to_c2w(q2, t2), c2w, atol=1e-9)


def test_look_at_axes():
    eye, target = np.array([2.0, -3.0, 1.5]), np.array([0.1, 0.2, 0.3])
    c2w = look_at(eye, target)
    R = c2w[:3, :3]
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(c2w[:3, 3], eye)
    forward = (target - eye) / np.linalg.norm(target - eye)
    np.testing.assert_allclose(c2w[:3, 2], forward, atol=1e-12)
    assert c2w[2, 1] < -0.5  # image y (down) points down in a z-up world for an upright camera
    assert abs(c2w[2, 0]) < 1e-12  # no roll: image x is horizontal
    with pytest.raises(ValueError):
        look_at([0, 0, 1], [0, 0, 0])  # looking straight down the up axis
    with pytest.raises(ValueError):
        look_at([1, 1, 1], [1, 1, 1])


def test_projection_of_world_point():
    K = np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]])
    c2w = look_at([0.0, -4.0, 0.0], [0.0, 0.0, 0.0])  # looking along +y, z up
    w2c = np.linalg.inv(c2w)

    def project(X):
        x = w2c @ np.append(X, 1.0)
        assert x[2] > 0
        uvw = K @ x[:3]
        return uvw[:2] / uvw[2]

    np.testing.assert_allclose(project([0, 0, 0]), [32, 24])  # the target lands on the principal point
    # a point 0.4 right (camera +x = world +x when looking along +y with z up) at depth 4 → u + 10
    np.testing.assert_allclose(project([0.4, 0, 0]), [42, 24])
    # a point above the target (world +z) lands above the centre (smaller v)
    np.testing.assert_allclose(project([0, 0, 0.4]), [32, 14])
    # back-projecting the pixel along the camera convention recovers the ray through the point
    u, v = project([0.3, 1.0, -0.2])
    d_cam = np.array([(u - 32) / 100, (v - 24) / 100, 1.0])
    d_world = c2w[:3, :3] @ d_cam
    p = c2w[:3, 3] + d_world * 5.0  # depth along z is 5 (the point is at y = 1, camera at y = -4)
    np.testing.assert_allclose(p, [0.3, 1.0, -0.2], atol=1e-12)
