"""The one camera convention of semfield, and conversions to and from the others.

Inside semfield a camera pose is a **camera-to-world** 4×4 matrix ``c2w`` whose rotation columns are the
camera's x, y, z axes in world coordinates using the **OpenCV** camera axes: x right, y down, z forward
(the viewing direction). A pixel (u, v) with u along the width and v along the height, pixel centres at
half-integers, back-projects to the camera-space direction ``((u - cx) / fx, (v - cy) / fy, 1)``.

Conversions happen only in readers and writers:

- nerfstudio / NeRF ``transforms.json`` store camera-to-world in the **OpenGL** convention (x right, y up,
  z backward): ``c2w_cv = c2w_gl @ diag(1, -1, -1, 1)`` and back the same way.
- COLMAP stores **world-to-camera** rotations as quaternions (qw, qx, qy, qz) and translations in the
  OpenCV convention: ``c2w_cv = inverse([R | t])``.
"""

from __future__ import annotations

import numpy as np

FLIP_YZ = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_to_opencv(c2w_gl: np.ndarray) -> np.ndarray:
    """Camera-to-world in OpenGL axes ``[..., 4, 4]`` → OpenCV axes ``[..., 4, 4]`` (its own inverse)."""
    return np.asarray(c2w_gl, dtype=np.float64) @ FLIP_YZ


def opencv_to_opengl(c2w_cv: np.ndarray) -> np.ndarray:
    """Camera-to-world in OpenCV axes ``[..., 4, 4]`` → OpenGL axes ``[..., 4, 4]``."""
    return np.asarray(c2w_cv, dtype=np.float64) @ FLIP_YZ


def qvec_to_rotmat(qvec: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(w, x, y, z)`` ``[4]`` → rotation matrix ``[3, 3]`` (normalises first)."""
    q = np.asarray(qvec, dtype=np.float64)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` → unit quaternion ``(w, x, y, z)`` ``[4]`` with w ≥ 0."""
    R = np.asarray(R, dtype=np.float64)
    K = np.array(
        [
            [R[0, 0] - R[1, 1] - R[2, 2], 0, 0, 0],
            [R[1, 0] + R[0, 1], R[1, 1] - R[0, 0] - R[2, 2], 0, 0],
            [R[2, 0] + R[0, 2], R[2, 1] + R[1, 2], R[2, 2] - R[0, 0] - R[1, 1], 0],
            [R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1], R[0, 0] + R[1, 1] + R[2, 2]],
        ]
    ) / 3.0
    eigvals, eigvecs = np.linalg.eigh(K)
    q = eigvecs[[3, 0, 1, 2], np.argmax(eigvals)]
    return -q if q[0] < 0 else q


def colmap_to_c2w(qvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """COLMAP world-to-camera ``(qvec [4], tvec [3])`` → camera-to-world ``[4, 4]`` (OpenCV axes)."""
    R = qvec_to_rotmat(qvec)
    c2w = np.eye(4)
    c2w[:3, :3] = R.T
    c2w[:3, 3] = -R.T @ np.asarray(tvec, dtype=np.float64)
    return c2w


def c2w_to_colmap(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world ``[4, 4]`` (OpenCV axes) → COLMAP world-to-camera ``(qvec [4], tvec [3])``."""
    c2w = np.asarray(c2w, dtype=np.float64)
    R = c2w[:3, :3].T
    t = -R @ c2w[:3, 3]
    return rotmat_to_qvec(R), t


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world ``[4, 4]`` (OpenCV axes) of a camera at ``eye [3]`` looking at ``target [3]``."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    if np.linalg.norm(forward) < 1e-12:
        raise ValueError("look_at: eye and target coincide")
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to up")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w
