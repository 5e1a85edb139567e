"""Sparse 3D points from posed images: SIFT matches between neighbouring views, triangulated with the
known cameras (what a structure-from-motion model's points are, without solving for the poses).

Used to find the walls and far surfaces that bound a scene (:mod:`semfield.train.bounds_pass`). Pixel
coordinates follow semfield's convention (pixel centres at half-integers); cameras are camera-to-world in
OpenCV axes.
"""

from __future__ import annotations

import cv2
import numpy as np

from .types import Intrinsics


def triangulate(uv_a: np.ndarray, uv_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, c2w_a: np.ndarray,
                c2w_b: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of matched pixels: ``[N, 2]`` and ``[N, 2]`` → world points ``[N, 3]``.

    Args:
        uv_a, uv_b: undistorted pixel coordinates in views a and b (centres at +0.5).
        K_a, K_b: ``[3, 3]`` intrinsics; c2w_a, c2w_b: ``[4, 4]`` camera-to-world (OpenCV axes).
    """
    def projection(K, c2w):
        w2c = np.linalg.inv(np.asarray(c2w, dtype=np.float64))
        return np.asarray(K, dtype=np.float64) @ w2c[:3, :4]

    P_a, P_b = projection(K_a, c2w_a), projection(K_b, c2w_b)  # K maps to semfield's pixel frame already
    u_a, v_a = uv_a[:, :1], uv_a[:, 1:2]
    u_b, v_b = uv_b[:, :1], uv_b[:, 1:2]
    A = np.stack([u_a * P_a[2] - P_a[0], v_a * P_a[2] - P_a[1], u_b * P_b[2] - P_b[0], v_b * P_b[2] - P_b[1]],
                 axis=1)  # [N, 4, 4]
    _, _, vt = np.linalg.svd(A)
    X = vt[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return X[:, :3] / X[:, 3:4]


def reprojection(points: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``points [N, 3]`` → ``(uv [N, 2], z [N])`` in a camera (z: depth along its optical axis)."""
    c2w = np.asarray(c2w, dtype=np.float64)
    cam = (np.asarray(points, dtype=np.float64) - c2w[:3, 3]) @ c2w[:3, :3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] / z[:, None]) * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]]
    return uv, z


def good_triangulations(points: np.ndarray, uv_a: np.ndarray, uv_b: np.ndarray, K_a: np.ndarray,
                        K_b: np.ndarray, c2w_a: np.ndarray, c2w_b: np.ndarray, max_px: float = 2.0,
                        min_angle_deg: float = 2.0) -> np.ndarray:
    """Which triangulated points to keep ``[N]`` bool: finite, in front of both cameras, reprojecting within
    ``max_px`` pixels in both views, and seen under at least ``min_angle_deg`` between the two rays."""
    ok = np.all(np.isfinite(points), axis=1)
    for uv, K, c2w in ((uv_a, K_a, c2w_a), (uv_b, K_b, c2w_b)):
        proj, z = reprojection(points, K, c2w)
        with np.errstate(invalid="ignore"):
            ok &= (z > 0) & (np.linalg.norm(proj - uv, axis=1) <= max_px)
    ra = points - np.asarray(c2w_a)[:3, 3]
    rb = points - np.asarray(c2w_b)[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = np.sum(ra * rb, axis=1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1))
        ok &= np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))) >= min_angle_deg
    return ok


def undistort_pixels(uv: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pixels of a distorted (OpenCV ``k1 k2 p1 p2``) image → where a pinhole camera with the same K sees them."""
    if not intrinsics.distortion or not any(intrinsics.distortion):
        return uv
    K = intrinsics.K
    pts = (uv - 0.5).reshape(-1, 1, 2).astype(np.float64)  # OpenCV's pixel centres are integers
    out = cv2.undistortPoints(pts, K - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]]),
                              np.asarray(intrinsics.distortion, dtype=np.float64), P=K)
    return out.reshape(-1, 2)  # P = K: back in semfield's pixel frame


def neighbour_pairs(c2w: np.ndarray, k: int, max_angle_deg: float = 60.0) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` with ``i < j``: each camera with its ``k`` nearest cameras (by centre) whose optical
    axes differ by at most ``max_angle_deg``."""
    centres, axes = c2w[:, :3, 3], c2w[:, :3, 2]
    pairs = set()
    for i in range(len(c2w)):
        cos = axes @ axes[i]
        dist = np.linalg.norm(centres - centres[i], axis=1)
        dist[(cos < np.cos(np.radians(max_angle_deg))) | (np.arange(len(c2w)) == i)] = np.inf
        for j in np.argsort(dist)[:k]:
            if np.isfinite(dist[j]):
                pairs.add((min(i, int(j)), max(i, int(j))))
    return sorted(pairs)
