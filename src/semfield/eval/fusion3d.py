"""OpenScene-2D fusion baseline: average the 2D teacher features of every view that sees a 3D point.

Pure torch (CPU or CUDA), no I/O; numpy inputs are converted.
See PROTOCOLS.md (the project's evaluation protocols).

For each view, a point ``p`` goes to camera space ``x_c = R^T (p - t)`` with ``c2w = [R | t]`` (OpenCV axes:
x right, y down, z forward) and projects to pixel coordinates ``(u, v) = (K x_c)[:2] / z``, where pixel
centres sit at half-integers (pixel (row i, col j) covers ``[j, j+1) × [i, i+1)``). The view *sees* the point
when ``z > 0``, ``0 <= u < W``, ``0 <= v < H`` and the planar depth ``d = depth[floor(v), floor(u)]`` is
finite, ``> 0`` and ``|d - z| <= 0.25 · d`` (OpenScene's occlusion test). The view's feature is the cell of
the ``[h, w, D]`` feature map covering ``(u, v)``: ``feat[floor(v · h / H), floor(u · w / W)]`` (nearest cell
when the teacher's map is coarser than the depth image). The fused feature is the plain mean over seeing
views; a point no view sees gets a zero feature and ``valid = False`` (the 3D metric counts it wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..errors import SemfieldError

__all__ = ["Fusion", "fuse_features_2d_to_3d", "project_points"]

OPENSCENE_DEPTH_TOLERANCE = 0.25


class Fusion(NamedTuple):
    """Result of :func:`fuse_features_2d_to_3d`.

    ``features [N, D]`` mean feature, ``counts [N]`` int64 seeing views, ``valid [N]`` bool (counts > 0).
    """

    features: Tensor
    counts: Tensor
    valid: Tensor


def _t(x, name: str) -> Tensor:
    try:
        return torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise SemfieldError(f"{name}: expected an array or tensor") from None


def project_points(points: Tensor, c2w: Tensor, K: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Project world points into one camera (OpenCV axes, pixel centres at half-integers).

    Args:
        points: ``[N, 3]`` world points.
        c2w: ``[4, 4]`` camera-to-world.
        K: ``[3, 3]`` intrinsics.

    Returns:
        ``(u [N], v [N], z [N])`` float64: pixel coordinates and camera-space depth.

    Example:
        >>> u, v, z = project_points(torch.tensor([[0.0, 0.0, 2.0]]), torch.eye(4),
        ...                          torch.tensor([[10.0, 0, 2], [0, 10.0, 2], [0, 0, 1]]))
        >>> u.item(), v.item(), z.item()
        (2.0, 2.0, 2.0)
    """
    p = _t(points, "project_points points").to(torch.float64)
    c2w = _t(c2w, "project_points c2w").to(p)
    K = _t(K, "project_points K").to(p)
    cam = (p - c2w[:3, 3]) @ c2w[:3, :3]  # rows: R^T (p - t)
    z = cam[:, 2]
    proj = cam @ K.T
    safe = torch.where(z > 0, z, torch.ones_like(z))
    return proj[:, 0] / safe, proj[:, 1] / safe, z


def fuse_features_2d_to_3d(
    points,
    c2w,
    K,
    depths: Sequence,
    features: Sequence,
    depth_tolerance: float = OPENSCENE_DEPTH_TOLERANCE,
) -> Fusion:
    """OpenScene-2D fusion of per-view 2D features onto 3D points (see the module docstring).

    Args:
        points: ``[N, 3]`` world points.
        c2w: ``[V, 4, 4]`` camera-to-world per view (OpenCV axes).
        K: ``[V, 3, 3]`` (or one shared ``[3, 3]``) intrinsics at the depth images' resolution.
        depths: ``V`` planar depth maps ``[H, W]`` (ground truth or the field's), scene units; <= 0 = none.
        features: ``V`` feature maps ``[h, w, D]`` covering the same field of view as the depth maps.
        depth_tolerance: relative occlusion tolerance (OpenScene: 0.25).

    Returns:
        :class:`Fusion` with the mean feature per point (dtype of the feature maps, device of the points).

    Example:
        >>> K = torch.tensor([[2.0, 0, 1], [0, 2.0, 1], [0, 0, 1]])
        >>> pts = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 3.0]])  # the second is hidden behind the first
        >>> depth, feat = torch.ones(2, 2), torch.ones(1, 1, 4)
        >>> fused = fuse_features_2d_to_3d(pts, torch.eye(4)[None], K, [depth], [feat])
        >>> fused.counts.tolist(), fused.valid.tolist()
        ([1, 0], [True, False])
    """
    pts = _t(points, "fuse_features_2d_to_3d points")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise SemfieldError(f"fuse_features_2d_to_3d: points must be [N, 3], got {tuple(pts.shape)}")
    c2w = _t(c2w, "fuse_features_2d_to_3d c2w")
    K = _t(K, "fuse_features_2d_to_3d K")
    n_views = len(depths)
    if c2w.shape != (n_views, 4, 4) or len(features) != n_views:
        raise SemfieldError(
            f"fuse_features_2d_to_3d: need c2w [V, 4, 4], V depth maps and V feature maps, got c2w "
            f"{tuple(c2w.shape)}, {n_views} depth maps, {len(features)} feature maps"
        )
    if K.shape == (3, 3):
        K = K.expand(n_views, 3, 3)
    if K.shape != (n_views, 3, 3):
        raise SemfieldError(
            f"fuse_features_2d_to_3d: K must be [3, 3] or [{n_views}, 3, 3], got {tuple(K.shape)}"
        )
    if n_views == 0:
        raise SemfieldError("fuse_features_2d_to_3d: no views given")

    device = pts.device
    dim = None
    acc = counts = None
    for v in range(n_views):
        depth = _t(depths[v], "fuse_features_2d_to_3d depth").to(device=device, dtype=torch.float64)
        feat = _t(features[v], "fuse_features_2d_to_3d features").to(device)
        if depth.ndim != 2 or feat.ndim != 3 or not feat.is_floating_point():
            raise SemfieldError(
                f"fuse_features_2d_to_3d: view {v}: depth must be [H, W] and features float [h, w, D], got "
                f"{tuple(depth.shape)} and {tuple(feat.shape)}"
            )
        if dim is None:
            dim = feat.shape[2]
            acc = torch.zeros(pts.shape[0], dim, dtype=feat.dtype, device=device)
            counts = torch.zeros(pts.shape[0], dtype=torch.int64, device=device)
        elif feat.shape[2] != dim:
            raise SemfieldError(
                f"fuse_features_2d_to_3d: view {v} has feature width {feat.shape[2]}, not {dim}"
            )
        H, W = depth.shape
        h, w = feat.shape[:2]
        u, vv, z = project_points(pts, c2w[v], K[v])
        inside = (z > 0) & (u >= 0) & (u < W) & (vv >= 0) & (vv < H)
        idx = torch.nonzero(inside).squeeze(1)
        col = u[idx].floor().long().clamp(0, W - 1)
        row = vv[idx].floor().long().clamp(0, H - 1)
        d = depth[row, col]
        seen = torch.isfinite(d) & (d > 0) & ((d - z[idx]).abs() <= depth_tolerance * d)
        idx = idx[seen]
        fc = (u[idx] * (w / W)).floor().long().clamp(0, w - 1)
        fr = (vv[idx] * (h / H)).floor().long().clamp(0, h - 1)
        acc.index_add_(0, idx, feat[fr, fc].to(acc.dtype))
        counts.index_add_(0, idx, torch.ones_like(idx))
    valid = counts > 0
    fused = acc / counts.clamp_min(1).unsqueeze(1).to(acc.dtype)
    return Fusion(features=fused, counts=counts, valid=valid)
