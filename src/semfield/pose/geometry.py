"""Pose maths for camera localisation: rotations, pose updates, projection, and the one PnP conversion.

Poses are camera-to-world ``[4, 4]`` in semfield's convention (OpenCV camera axes: x right, y down,
z forward; see :mod:`semfield.scene.convention`). OpenCV's ``solvePnP`` uses the same camera axes but
returns **world-to-camera** ``(rvec, tvec)`` (a Rodrigues vector and a translation):
:func:`c2w_from_opencv_extrinsics` and :func:`opencv_extrinsics_from_c2w` are the only place where that
conversion happens. Pixel centres sit at half-integers (the top-left pixel's centre is (0.5, 0.5)), as in
:mod:`semfield.render.rays`; OpenCV's keypoints put them at integers, so :mod:`semfield.pose.matching` adds
0.5 to every keypoint it returns, and PnP then sees pixels and calibration in one convention.

numpy for the correspondence geometry, torch (differentiable) for the rotation parameterisations used by
refinement and by the coarse regressor. No I/O.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

__all__ = [
    "backproject",
    "c2w_from_opencv_extrinsics",
    "closest_point_to_axes",
    "matrix_to_rotation_6d",
    "opencv_extrinsics_from_c2w",
    "perturb_pose",
    "pose_update",
    "project",
    "random_unit_vectors",
    "rotation_6d_to_matrix",
    "rotation_about_axis",
    "rotation_angle_deg",
    "so3_exp",
]


def so3_exp(omega: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of axis-angle vectors (Rodrigues), differentiable, stable at zero.

    Args:
        omega: ``[..., 3]`` rotation vectors (axis times angle in radians).
    Returns:
        ``[..., 3, 3]`` rotation matrices.
    """
    theta2 = (omega * omega).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    theta = theta2.clamp(min=1e-12).sqrt()
    small = theta2 < 1e-8
    # sin(θ)/θ and (1 - cos θ)/θ², with their Taylor expansions near 0
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp(min=1e-12))
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    K = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*omega.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(K)
    return eye + a * K + b * (K @ K)


def pose_update(c2w: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Apply a camera-frame update ``delta = (ω [3], v [3])``: ``c2w · [exp(ω) | v]`` (differentiable).

    Args:
        c2w: ``[4, 4]`` the pose being refined.
        delta: ``[6]`` rotation vector (radians, camera axes) and translation (scene units, camera axes).
    Returns:
        ``[4, 4]`` the updated camera-to-world pose.
    """
    upd = torch.eye(4, dtype=c2w.dtype, device=c2w.device)
    upd = torch.cat([torch.cat([so3_exp(delta[:3]), delta[3:, None]], dim=1), upd[3:]], dim=0)
    return c2w @ upd


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """The continuous 6D rotation representation (Zhou et al. 2019) → rotation matrices by Gram–Schmidt.

    Args:
        x: ``[..., 6]`` the first two columns of a rotation matrix, unnormalised.
    Returns:
        ``[..., 3, 3]`` rotation matrices whose first two columns span the same plane.
    """
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rotation_6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``[..., 3, 3]`` → their first two columns ``[..., 6]`` (inverse of the above)."""
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Angle in degrees of rotation matrices ``[..., 3, 3]`` → ``[...]``."""
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def rotation_about_axis(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` by ``angle_deg`` about unit-normalised ``axis [3]`` (right-handed)."""
    w = np.asarray(axis, dtype=np.float64)
    w = w / np.linalg.norm(w) * math.radians(angle_deg)
    return so3_exp(torch.as_tensor(w, dtype=torch.float64)).numpy()


def c2w_from_opencv_extrinsics(rvec: np.ndarray, tvec: np.ndarray) -> np.ndarray:
    """OpenCV world-to-camera ``(rvec [3], tvec [3])`` (as ``solvePnP`` returns) → camera-to-world ``[4, 4]``.

    OpenCV's camera axes are semfield's, so only the direction of the transform changes:
    ``R_w2c = exp(rvec)``, ``c2w = [R_w2cᵀ | -R_w2cᵀ tvec]``.
    """
    R_w2c = so3_exp(torch.as_tensor(np.asarray(rvec, dtype=np.float64).reshape(3))).numpy()
    t = np.asarray(tvec, dtype=np.float64).reshape(3)
    c2w = np.eye(4)
    c2w[:3, :3] = R_w2c.T
    c2w[:3, 3] = -R_w2c.T @ t
    return c2w


def opencv_extrinsics_from_c2w(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-to-world ``[4, 4]`` → OpenCV world-to-camera ``(rvec [3], tvec [3])`` (inverse of the above)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    R_w2c = c2w[:3, :3].T
    t = -R_w2c @ c2w[:3, 3]
    angle = math.radians(float(rotation_angle_deg(R_w2c)))
    if angle < 1e-12:
        return np.zeros(3), t
    if math.pi - angle < 1e-6:  # 180°: the axis is the eigenvector of eigenvalue 1
        vals, vecs = np.linalg.eigh((R_w2c + R_w2c.T) / 2.0)
        return vecs[:, np.argmax(vals)] * angle, t
    axis = np.array([R_w2c[2, 1] - R_w2c[1, 2], R_w2c[0, 2] - R_w2c[2, 0], R_w2c[1, 0] - R_w2c[0, 1]])
    return axis / (2.0 * math.sin(angle)) * angle, t


def backproject(uv: np.ndarray, depth: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """World points of pixels with planar depth.

    Args:
        uv: ``[N, 2]`` pixel coordinates (column, row), pixel centres at half-integers.
        depth: ``[N]`` planar depth (camera z) in scene units.
        K: ``[3, 3]`` calibration matrix of the image ``uv`` lies in.
        c2w: ``[4, 4]`` that image's camera-to-world pose.
    Returns:
        ``[N, 3]`` world points.
    """
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(depth, dtype=np.float64).reshape(-1)
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    cam = np.stack([x, y, z], axis=-1)
    return cam @ np.asarray(c2w)[:3, :3].T + np.asarray(c2w)[:3, 3]


def trusted_depth(depth: np.ndarray, edge_ratio: float) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood has no depth jump larger than ``edge_ratio`` of the depth.

    Args:
        depth: ``[H, W]`` depth (non-finite or ≤ 0: no depth).
        edge_ratio: the largest trusted spread (max − min over 3 × 3) relative to the depth.
    Returns:
        ``[H, W]`` bool.
    """
    d = np.asarray(depth, dtype=np.float32)
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(d, kernel) - cv2.erode(d, kernel)
    return np.isfinite(d) & (d > 0) & (spread < edge_ratio * np.maximum(d, 1e-6))


def project(points: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points into a camera: ``points [N, 3]`` → ``(uv [N, 2], z [N])`` (half-integer centres)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    cam = (np.asarray(points, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = np.stack([K[0, 0] * cam[:, 0] / z + K[0, 2], K[1, 1] * cam[:, 1] / z + K[1, 2]], axis=-1)
    return uv, z


def random_unit_vectors(n: int, rng: np.random.Generator) -> np.ndarray:
    """``[n, 3]`` directions uniform on the sphere."""
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def perturb_pose(c2w: np.ndarray, angle_deg: float, distance: float, rng: np.random.Generator) -> np.ndarray:
    """``c2w [4, 4]`` rotated by exactly ``angle_deg`` about a random axis (through the camera centre) and
    moved by exactly ``distance`` in a random direction: the iNeRF initial-guess protocol.

    The pose error of the result against ``c2w`` (:func:`semfield.eval.pose.pose_errors`) is
    ``(angle_deg, distance)``.
    """
    axis, direction = random_unit_vectors(2, rng)
    out = np.array(c2w, dtype=np.float64)
    out[:3, :3] = rotation_about_axis(axis, angle_deg) @ out[:3, :3]
    out[:3, 3] = out[:3, 3] + distance * direction
    return out


def closest_point_to_axes(c2w: np.ndarray) -> np.ndarray:
    """The point nearest (least squares) to every camera's optical axis: where a capture looks.

    Args:
        c2w: ``[N, 4, 4]`` camera poses (N ≥ 2, not all axes parallel).
    Returns:
        ``[3]`` the point minimising the sum of squared distances to the lines ``eye + s · forward``.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    eyes, fwd = c2w[:, :3, 3], c2w[:, :3, 2]
    fwd = fwd / np.linalg.norm(fwd, axis=1, keepdims=True)
    P = np.eye(3)[None] - fwd[:, :, None] * fwd[:, None, :]  # projectors orthogonal to each axis
    A = P.sum(0)
    b = np.einsum("nij,nj->i", P, eyes)
    return np.linalg.lstsq(A, b, rcond=None)[0]
