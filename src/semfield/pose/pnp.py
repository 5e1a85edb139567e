"""Pose from 2D–3D correspondences: OpenCV PnP-RANSAC with a final least-squares polish on the inliers.

Pixels are in semfield's convention (centres at half-integers) and so is the calibration matrix, so the two
agree without any shift; the world-to-camera result of OpenCV is converted to camera-to-world in
:func:`semfield.pose.geometry.c2w_from_opencv_extrinsics`, the one place that does it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import c2w_from_opencv_extrinsics, opencv_extrinsics_from_c2w

__all__ = ["PnPResult", "solve_pnp"]

MIN_CORRESPONDENCES = 6


@dataclass
class PnPResult:
    """``c2w [4, 4]`` (None when PnP failed), ``inliers`` (count), ``inlier_mask [N]`` bool."""

    c2w: np.ndarray | None
    inliers: int
    inlier_mask: np.ndarray


def solve_pnp(points_world: np.ndarray, pixels: np.ndarray, K: np.ndarray, reprojection_px: float = 2.0,
              iterations: int = 1000, guess_c2w: np.ndarray | None = None, min_inliers: int = 8,
              seed: int = 0) -> PnPResult:
    """Camera pose that projects ``points_world`` onto ``pixels``, robust to outliers.

    Args:
        points_world: ``[N, 3]`` 3D points (world).
        pixels: ``[N, 2]`` their observed pixel coordinates (column, row; centres at half-integers).
        K: ``[3, 3]`` the observing camera's calibration (same pixel convention).
        reprojection_px: RANSAC inlier threshold in pixels.
        iterations: RANSAC iterations.
        guess_c2w: optional ``[4, 4]`` starting pose for the iterative solver.
        min_inliers: fewer inliers than this is a failure (``c2w`` None).
        seed: OpenCV's RNG seed (RANSAC sampling), for repeatable results.
    Returns:
        :class:`PnPResult`.
    """
    X = np.ascontiguousarray(np.asarray(points_world, dtype=np.float64).reshape(-1, 3))
    x = np.ascontiguousarray(np.asarray(pixels, dtype=np.float64).reshape(-1, 2))
    n = X.shape[0]
    failed = PnPResult(None, 0, np.zeros(n, dtype=bool))
    if n < max(MIN_CORRESPONDENCES, min_inliers):
        return failed
    K = np.asarray(K, dtype=np.float64)
    cv2.setRNGSeed(seed)
    use_guess = guess_c2w is not None
    rvec0, tvec0 = opencv_extrinsics_from_c2w(guess_c2w) if use_guess else (np.zeros(3), np.zeros(3))
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(
        X, x, K, None, rvec0.reshape(3, 1).copy(), tvec0.reshape(3, 1).copy(), useExtrinsicGuess=use_guess,
        iterationsCount=iterations, reprojectionError=reprojection_px, confidence=0.999,
        flags=cv2.SOLVEPNP_EPNP if not use_guess else cv2.SOLVEPNP_ITERATIVE)
    if not ok or inliers is None or len(inliers) < min_inliers:
        return failed
    idx = inliers.reshape(-1)
    rvec, tvec = cv2.solvePnPRefineLM(X[idx], x[idx], K, None, rvec, tvec)
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    c2w = c2w_from_opencv_extrinsics(rvec.reshape(3), tvec.reshape(3))
    if not np.isfinite(c2w).all():
        return failed
    return PnPResult(c2w, int(mask.sum()), mask)
