"""Camera pose errors (SPINE / iNeRF): SE(3) error, success rates at (5°, 5 cm) and (2°, 2 cm), medians.

numpy, no I/O; torch tensors are accepted and read on the CPU.
See PROTOCOLS.md (the project's evaluation protocols).

``E = T_gt⁻¹ · T_est`` (both camera-to-world 4 × 4); rotation error
``= arccos(clip((tr(R_E) − 1) / 2, −1, 1))`` in degrees; translation error ``= ‖t_E‖`` in scene units, and in
centimetres as ``‖t_E‖ · metres_per_unit · 100``. A query whose solver returned nothing (``None``) or a pose
with a non-finite entry is "not returned": it lowers the returned rate and counts as a failure at every
threshold. Medians are over the returned poses only (read them beside ``returned_rate``). Thresholds are
strict: success means rotation < 5° and translation < 5 cm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import SemfieldError
from .arrays import as_float

__all__ = ["pose_errors", "pose_metrics"]

THRESHOLDS = ((5.0, 5.0), (2.0, 2.0))
"""(degrees, centimetres) success thresholds: iNeRF's (5°, 5 cm) and the stricter (2°, 2 cm)."""


def _pose_array(x, name: str) -> np.ndarray:
    a = as_float(x, name)
    if a.shape[-2:] != (4, 4):
        raise SemfieldError(f"{name}: poses must be [..., 4, 4], got {a.shape}")
    return a


def pose_errors(T_gt, T_est) -> tuple[np.ndarray, np.ndarray]:
    """Rotation (degrees) and translation (scene units) errors of ``E = T_gt⁻¹ · T_est``.

    Args:
        T_gt: ``[..., 4, 4]`` ground-truth camera-to-world poses.
        T_est: ``[..., 4, 4]`` estimated poses, same shape.

    Returns:
        ``(rot_deg [...], trans [...])``; NaN where an estimate has a non-finite entry.

    Example:
        >>> T = np.eye(4); T[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]; T[:3, 3] = [0.3, 0, 0.4]
        >>> r, t = pose_errors(np.eye(4), T)
        >>> float(r.round(6)), float(t.round(6))
        (90.0, 0.5)
    """
    gt = _pose_array(T_gt, "pose_errors T_gt")
    est = _pose_array(T_est, "pose_errors T_est")
    if gt.shape != est.shape:
        raise SemfieldError(f"pose_errors: T_gt {gt.shape} and T_est {est.shape} differ in shape")
    R_gt, t_gt = gt[..., :3, :3], gt[..., :3, 3]
    R_est, t_est = est[..., :3, :3], est[..., :3, 3]
    R_gt_inv = np.swapaxes(R_gt, -1, -2)
    R_e = R_gt_inv @ R_est
    t_e = np.einsum("...ij,...j->...i", R_gt_inv, t_est - t_gt)
    cos = (np.trace(R_e, axis1=-2, axis2=-1) - 1.0) / 2.0
    rot = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    trans = np.linalg.norm(t_e, axis=-1)
    bad = ~np.isfinite(est).all(axis=(-2, -1))
    return np.where(bad, np.nan, rot), np.where(bad, np.nan, trans)


def pose_metrics(T_gt, T_est: Sequence, metres_per_unit: float = 1.0) -> dict[str, float]:
    """Aggregate pose-estimation scores over Q queries.

    Args:
        T_gt: ``[Q, 4, 4]`` ground-truth camera-to-world poses.
        T_est: Q estimates, each ``[4, 4]`` or ``None`` (not returned); a ``[Q, 4, 4]`` array with NaN rows
            works too.
        metres_per_unit: the scene's true metric scale (metres per scene unit) for the centimetre thresholds.

    Returns:
        dict: ``n``, ``returned_rate`` (SPINE's "success rate"), ``success_5deg_5cm``, ``success_2deg_2cm``
        (over all Q queries), ``median_rot_deg``, ``median_trans_units``, ``median_trans_cm`` (over returned
        poses; NaN when none returned), and per-query ``rot_deg`` / ``trans_cm`` lists (None if not returned).

    Example:
        >>> T = np.eye(4); T[0, 3] = 0.04  # 4 cm off at 1 m per unit
        >>> m = pose_metrics(np.stack([np.eye(4)] * 2), [T, None])
        >>> m["returned_rate"], m["success_5deg_5cm"], m["success_2deg_2cm"], round(m["median_trans_cm"], 6)
        (0.5, 0.5, 0.0, 4.0)
    """
    gt = _pose_array(T_gt, "pose_metrics T_gt")
    if gt.ndim != 3:
        raise SemfieldError(f"pose_metrics: T_gt must be [Q, 4, 4], got {gt.shape}")
    if len(T_est) != gt.shape[0]:
        raise SemfieldError(f"pose_metrics: {gt.shape[0]} ground-truth poses but {len(T_est)} estimates")
    if metres_per_unit <= 0:
        raise SemfieldError(f"pose_metrics: metres_per_unit must be > 0, got {metres_per_unit}")
    est = np.full(gt.shape, np.nan)
    for q, T in enumerate(T_est):
        if T is not None:
            est[q] = _pose_array(T, f"pose_metrics T_est[{q}]")
    rot, trans = pose_errors(gt, est)
    returned = np.isfinite(rot)
    trans_cm = trans * metres_per_unit * 100.0
    n = gt.shape[0]
    out: dict = {"n": n, "returned_rate": float(returned.mean()) if n else float("nan")}
    for deg, cm in THRESHOLDS:
        ok = returned & (np.nan_to_num(rot, nan=np.inf) < deg) & (np.nan_to_num(trans_cm, nan=np.inf) < cm)
        out[f"success_{deg:g}deg_{cm:g}cm"] = float(ok.mean()) if n else float("nan")
    any_returned = bool(returned.any())
    out["median_rot_deg"] = float(np.median(rot[returned])) if any_returned else float("nan")
    out["median_trans_units"] = float(np.median(trans[returned])) if any_returned else float("nan")
    out["median_trans_cm"] = float(np.median(trans_cm[returned])) if any_returned else float("nan")
    out["rot_deg"] = [float(r) if ok else None for r, ok in zip(rot, returned, strict=True)]
    out["trans_cm"] = [float(t) if ok else None for t, ok in zip(trans_cm, returned, strict=True)]
    return out
