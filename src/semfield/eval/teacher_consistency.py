"""How well a 3D-consistent field *could* match a teacher: the teacher's own agreement across views.

A field stores one feature per 3D point and renders it from every camera; the best it can do at a point,
under a squared loss, is the mean of what the training views' teacher saw there. If the teacher gives a
point different features in different views (a ViT's patch feature depends on the context around it), no
view-independent field can reproduce every view. These functions estimate that ceiling with ground-truth
geometry: each patch centre of a held-out view is lifted to 3D with its ground-truth planar depth,
projected into every training view where the ground-truth depth says it is visible, and the training views'
teacher features there are compared with the held-out view's own. (An estimate: where the views disagree by
random noise, a field that also pools neighbouring points averages more of it away than the mean over the
views that see one point does.)

Pure torch, no I/O. Cameras: camera-to-world ``[4, 4]`` in OpenCV axes, pinhole intrinsics, pixel centres
at ``+0.5`` (as everywhere in semfield). Teacher maps: ``[h, w, D]``, cell ``[i, j]`` centred on image pixel
``((j + 0.5) W / w, (i + 0.5) H / h)``; the training views' maps are read through
:class:`semfield.train.features.FeatureTargets`, as training reads them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..train.features import FeatureTargets

__all__ = ["Camera", "cross_view_consistency", "lift_cell_centres", "project", "rank_ceiling"]


@dataclass
class Camera:
    """A pinhole camera: ``c2w [4, 4]`` (OpenCV axes), focal lengths and principal point in pixels, size."""

    c2w: torch.Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int


def lift_cell_centres(cam: Camera, depth: torch.Tensor, map_hw: tuple[int, int]):
    """World points of a teacher map's cell centres, at the ground-truth planar depth there.

    Args:
        depth: ``[H, W]`` planar depth of the camera's image (0 or non-finite = unknown).
        map_hw: the teacher map's ``(h, w)``.
    Returns:
        points ``[h*w, 3]`` (row-major over the map) and valid ``[h*w]`` bool (depth known).
    """
    h, w = map_hw
    vv, uu = torch.meshgrid(torch.arange(h, dtype=torch.float64) + 0.5, torch.arange(w, dtype=torch.float64) + 0.5,
                            indexing="ij")
    u = uu.reshape(-1) * cam.width / w
    v = vv.reshape(-1) * cam.height / h
    z = depth.to(torch.float64)[v.long().clamp(max=cam.height - 1), u.long().clamp(max=cam.width - 1)]
    valid = torch.isfinite(z) & (z > 0)
    z = torch.where(valid, z, torch.zeros_like(z))
    cam_pts = torch.stack([(u - cam.cx) / cam.fx * z, (v - cam.cy) / cam.fy * z, z], dim=-1)
    c2w = cam.c2w.to(torch.float64)
    return cam_pts @ c2w[:3, :3].T + c2w[:3, 3], valid


def project(cam: Camera, points: torch.Tensor):
    """Pixel coordinates ``u, v [N]`` (centres at +0.5) and camera depth ``z [N]`` of world ``points [N, 3]``."""
    c2w = cam.c2w.to(points.dtype)
    local = (points - c2w[:3, 3]) @ c2w[:3, :3]
    z = local[:, 2]
    safe = torch.where(z.abs() > 1e-9, z, torch.full_like(z, 1e-9))
    return local[:, 0] / safe * cam.fx + cam.cx, local[:, 1] / safe * cam.fy + cam.cy, z


def cross_view_consistency(target_map: torch.Tensor, target_cam: Camera, target_depth: torch.Tensor,
                           sources: FeatureTargets, source_cams: list[Camera], source_depths: list[torch.Tensor],
                           depth_tolerance: float = 0.02, direction_kappas: tuple[float, ...] = ()) -> dict:
    """The teacher's agreement between one held-out (target) view and the training (source) views.

    ``sources`` holds the training views' maps as training reads them (float16, bilinear at pixel centres),
    in the order of ``source_cams`` and ``source_depths``.

    A target cell centre counts as seen by a source view when it projects inside that image, in front of the
    camera, and the source's ground-truth depth there is within ``depth_tolerance`` (relative) of the
    point's depth (not occluded).

    Returns:
        ``pair_cosine``: mean cosine between the target's feature and one source view's feature at the
        same point, over all (point, seeing source) pairs; ``mean_view_cosine``: mean over points of the
        cosine between the target's feature and the mean of the seeing sources' features (what a
        view-independent field fitted with a squared loss converges to); ``views_per_point``: mean number of
        sources seeing a point; ``points``: points seen by at least one source; ``direction_weighted_cosine``
        (``{str(kappa): cosine}``, one per ``direction_kappas``): the same against the sources' mean weighted
        by ``exp(kappa (cos a - 1))``, ``a`` the angle between a source's and the target's viewing direction
        at the point — what a head whose features vary smoothly with the viewing direction could reach
        (kappa 0 is the plain mean; 30 halves a view's weight at about 11°).
    """
    h, w, D = target_map.shape
    points, valid = lift_cell_centres(target_cam, target_depth, (h, w))
    target = target_map.reshape(-1, D).float()
    total = torch.zeros_like(target)
    count = torch.zeros(target.shape[0], dtype=torch.float32)
    pair_sum, pair_n = 0.0, 0
    target_dirs = F.normalize(points - target_cam.c2w[:3, 3].to(points), dim=-1)
    weighted = {kappa: torch.zeros_like(target) for kappa in direction_kappas}
    for k, (cam, depth) in enumerate(zip(source_cams, source_depths)):
        u, v, z = project(cam, points)
        inside = valid & (z > 1e-6) & (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
        idx = inside.nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        seen_depth = depth.to(torch.float64)[v[idx].long().clamp(max=cam.height - 1),
                                             u[idx].long().clamp(max=cam.width - 1)]
        idx = idx[(seen_depth - z[idx]).abs() <= depth_tolerance * z[idx]]
        if idx.numel() == 0:
            continue
        feats = sources.sample(torch.full_like(idx, k), torch.stack([u[idx], v[idx]], dim=-1).float())
        pair = F.cosine_similarity(feats, target[idx], dim=-1)
        pair_sum += float(pair.sum())
        pair_n += int(idx.numel())
        total[idx] += feats
        count[idx] += 1
        cos_angle = (F.normalize(points[idx] - cam.c2w[:3, 3].to(points), dim=-1) * target_dirs[idx]).sum(-1)
        for kappa, w_total in weighted.items():
            wk = torch.exp(kappa * (cos_angle.clamp(-1.0, 1.0) - 1.0))
            w_total[idx] += wk.to(feats.dtype)[:, None] * feats
    seen = count > 0
    n_seen = int(seen.sum())
    if n_seen == 0:
        return {"pair_cosine": float("nan"), "mean_view_cosine": float("nan"), "views_per_point": 0.0, "points": 0,
                "direction_weighted_cosine": {str(kappa): float("nan") for kappa in direction_kappas}}
    mean_cos = F.cosine_similarity(total[seen] / count[seen, None], target[seen], dim=-1)
    # the weights' scale cancels in the cosine: no normalisation by their sum needed (and none underflows)
    by_direction = {str(kappa): float(F.cosine_similarity(w_total[seen], target[seen], dim=-1).mean())
                    for kappa, w_total in weighted.items()}
    return {"pair_cosine": pair_sum / pair_n, "mean_view_cosine": float(mean_cos.mean()),
            "views_per_point": float(count[seen].mean()), "points": n_seen,
            "direction_weighted_cosine": by_direction}


def rank_ceiling(train_features: torch.Tensor, test_features: torch.Tensor, ranks: list[int]) -> dict[int, float]:
    """Mean cosine between held-out features ``[M, D]`` and their best rank-``k`` reconstruction: the training
    features' mean ``[N, D]`` plus the projection onto their top ``k`` principal directions. The ceiling of a
    head that stores a ``k``-wide latent decoded by a linear layer (with the teacher's mean added back)."""
    mean = train_features.mean(dim=0)
    q = min(max(ranks), *train_features.shape)
    _, _, V = torch.linalg.svd(train_features - mean, full_matrices=False)
    centred = test_features - mean
    out = {}
    for k in ranks:
        P = V[: min(k, q)].T
        out[k] = float(F.cosine_similarity(mean + (centred @ P) @ P.T, test_features, dim=-1).mean())
    return out
