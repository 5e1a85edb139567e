"""Locate a photo in a trained run with no initial guess: coarse (regression, retrieval), PnP, refinement.

1. Coarse. Three candidate kinds: (a) the regressor's pose (from the photo's DINOv2 descriptors), (b) the
   poses of the ``retrieval_k`` bank views whose layout descriptors are most similar (cosine), (c) the
   ``thumbnail_k`` bank views whose colour thumbnails correlate best with the photo.
2. PnP. Each candidate is rendered (RGB + depth, ``select_size`` pixels on the long side, at the coarser
   ``select_render`` step); DINOv2 patch features of photo and render are matched (mutual nearest
   neighbours, robust to a render 10–20° off), the render's patch centres lifted to 3D with its depth,
   PnP-RANSAC. The ``pnp_finalists`` resulting poses whose small renders correlate best with the photo go on
   to up to ``pnp_rounds`` render → SIFT match → PnP rounds at ``match_size`` (they stop once the pose stops
   moving), and the best-correlating result wins. (The most inliers used to pick the winner: a render from
   the far side of a table matches a symmetric layout about as well, and 2 of 24 test views came out
   turned 169° and 179°.)
3. Photometric search, when PnP failed or has fewer than ``trusted_inliers`` inliers (small photos, a blurry
   field): every candidate is moved by a short large-step photometric refinement and scored by the
   correlation of its render with the photo (:mod:`semfield.pose.photometric`); the best hypothesis
   replaces the PnP pose if it scores higher.
4. Refinement. Photometric gradient descent on the pose through the differentiable renderer
   (:mod:`semfield.pose.refine`).

The result says which path won (``method``: ``pnp`` or ``photometric``) and whether PnP succeeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from ..errors import SemfieldError
from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..scene.types import Intrinsics
from .descriptors import describe_image
from .geometry import backproject
from .matching import Matches, dense_feature_matches, sift_matches
from .photometric import (
    SEARCH_REFINE,
    SETTLE_REFINE,
    photometric_search,
    render_score,
    thumbnail,
    thumbnail_candidates,
)
from .pnp import PnPResult, solve_pnp
from .refine import RefineOptions, refine_pose_photometric
from .store import CoarseModel

__all__ = ["LocateOptions", "LocateResult", "coarse_candidates", "locate_photo", "render_and_pnp"]


@dataclass
class LocateOptions:
    """Settings of :func:`locate_photo`. Sizes are long sides in pixels (capped at the photo's).

    ``retrieval_k`` / ``thumbnail_k``: bank views taken by descriptor / thumbnail similarity as candidates;
    ``pnp_finalists``: dense-PnP poses (best render scores first) that go on to the SIFT rounds;
    ``trusted_inliers``: a PnP pose with fewer inliers competes with the photometric search (by render score);
    ``converged_deg`` / ``converged_frac``: a SIFT round that moves the pose less than this (rotation, and
    translation as a fraction of the distance to the scene) ends the rounds.
    """

    retrieval_k: int = 4
    thumbnail_k: int = 3
    # Dense matching at the photo's own size (a 192-px photo: 13 x 13 DINOv2 patches, not 7 x 7 at 96 px;
    # PnP on ~30 patch matches was mostly noise), rendered at a doubled step so it costs what 96 px did.
    # On all 24 test views of the quick suite's 3 scenes (5 deg / 5 cm): 11 located at 96 px with the most
    # inliers winning, 14 at 192 px, 15 choosing by render score, 17 with 2 finalists (~+3 s per photo).
    select_size: int = 192
    match_size: int = 192
    pnp_rounds: int = 3
    pnp_finalists: int = 2
    reprojection_px: float = 2.0
    dense_reprojection_patches: float = 0.75
    min_inliers: int = 10
    trusted_inliers: int = 15
    converged_deg: float = 0.2
    converged_frac: float = 0.003
    depth_edge_ratio: float = 0.03
    score_size: int = 32
    render: RenderOptions = field(default_factory=lambda: RenderOptions(step_voxels=1.5, max_samples=384))
    select_render: RenderOptions = field(default_factory=lambda: RenderOptions(step_voxels=3.0, max_samples=384))
    search: RefineOptions = field(default_factory=lambda: SEARCH_REFINE)
    settle: RefineOptions = field(default_factory=lambda: SETTLE_REFINE)
    refine: RefineOptions = field(default_factory=RefineOptions)
    use_refine: bool = True


@dataclass
class LocateResult:
    """The found pose and how it was found.

    Attributes:
        c2w: ``[4, 4]`` final camera-to-world pose.
        stages: pose after each stage: ``regression``, ``retrieval`` (top-1), ``pnp`` (None if PnP failed),
            ``photometric`` (the best search hypothesis; None if the search did not run), ``refined`` (None
            if refinement was off).
        inliers: PnP inliers of the last successful round (0 if none).
        pnp_ok: whether any PnP round succeeded.
        method: which path gave the refinement's start: ``pnp`` or ``photometric``.
        chosen: the candidate it came from (``regression``, ``retrieval:i`` or ``thumbnail:i``; empty if none).
        seconds: wall time per stage (``describe``, ``coarse``, ``pnp``, ``search``, ``refine``, ``total``).
    """

    c2w: np.ndarray
    stages: dict[str, np.ndarray | None]
    inliers: int
    pnp_ok: bool
    method: str
    chosen: str
    seconds: dict[str, float]

    def to_json(self) -> dict:
        def mat(m):
            return None if m is None else np.asarray(m).tolist()

        return {"c2w": mat(self.c2w), "inliers": self.inliers, "pnp_ok": self.pnp_ok, "method": self.method,
                "chosen": self.chosen,
                "seconds": self.seconds, "stages": {k: mat(v) for k, v in self.stages.items()}}


def coarse_candidates(model: CoarseModel, global_vec: torch.Tensor, layout_vec: torch.Tensor,
                      photo_thumb: torch.Tensor, k: int, k_thumb: int) -> list[tuple[str, np.ndarray]]:
    """Candidate poses: the regressor's, the top-``k`` bank views by descriptor similarity, then the top
    ``k_thumb`` by thumbnail correlation not already taken.

    Args:
        global_vec, layout_vec: the photo's descriptors (:func:`semfield.pose.descriptors.describe_image`).
        photo_thumb: ``[3 h w]`` its thumbnail at the bank's ``thumb_size``.
    Returns:
        ``[(name, c2w [4, 4]), ...]``: ``regression``, ``retrieval:i``, ``thumbnail:i`` (i = rank).
    """
    desc = torch.cat([global_vec, layout_vec])[None].float()
    with torch.no_grad():
        reg = model.regressor(desc)[0].double().numpy()
    # centred cosine: the component every view shares says nothing about where the camera is
    mean = model.bank.layout_vecs.float().mean(0)
    bank = torch.nn.functional.normalize(model.bank.layout_vecs.float() - mean, dim=1)
    sims = bank @ torch.nn.functional.normalize(layout_vec.float() - mean, dim=0)
    top = torch.topk(sims, min(k, sims.numel())).indices.tolist()
    by_thumb = [j for j in thumbnail_candidates(model.bank.thumbs, photo_thumb, k_thumb + len(top)) if j not in top]
    out = [("regression", reg)]
    out += [(f"retrieval:{i}", model.bank.c2w[j].double().numpy()) for i, j in enumerate(top)]
    out += [(f"thumbnail:{i}", model.bank.c2w[j].double().numpy()) for i, j in enumerate(by_thumb[:k_thumb])]
    return out


def _field_device(fld: GridField) -> torch.device:
    return next(iter(fld.sparse_grids().values())).values.device


def _trusted_depth(depth: np.ndarray, edge_ratio: float) -> np.ndarray:
    """Pixels whose 3×3 neighbourhood has no depth jump larger than ``edge_ratio`` of the depth: ``[H, W]``."""
    d = depth.astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    spread = cv2.dilate(d, kernel) - cv2.erode(d, kernel)
    return np.isfinite(d) & (d > 0) & (spread < edge_ratio * np.maximum(d, 1e-6))


def render_and_pnp(fld: GridField, photo: np.ndarray, intr: Intrinsics, c2w: np.ndarray, size: int,
                   opts: LocateOptions, dense: tuple | None = None,
                   render: RenderOptions | None = None) -> tuple[PnPResult, Matches]:
    """Render at ``c2w`` (long side ``size``), match the photo to it, lift, and solve PnP.

    Args:
        photo: ``[H, W, 3]`` in [0, 1] (numpy).
        intr: the photo's intrinsics.
        c2w: ``[4, 4]`` where to render.
        dense: ``(teacher, photo patch features [h, w, D])`` to match DINOv2 patches instead of SIFT keypoints
            (robust to a far-off render, precise to about a patch); None for SIFT.
        render: the render's settings (default ``opts.render``).
    Returns:
        ``(PnPResult, the matches used)``.
    """
    r_intr = intr.scaled(min(1.0, size / max(intr.width, intr.height)))
    with torch.no_grad():
        out = render_image(fld, torch.as_tensor(c2w, dtype=torch.float32, device=_field_device(fld)), r_intr,
                           render or opts.render)
    rgb = out["rgb"].float().cpu()
    depth = out["median_depth"].float().cpu().numpy()
    trusted = _trusted_depth(depth, opts.depth_edge_ratio)
    if dense is not None:
        teacher, photo_patches = dense
        matches = dense_feature_matches(photo_patches, teacher.extract(rgb.clamp(0, 1)).features,
                                        (intr.height, intr.width), (r_intr.height, r_intr.width))
        threshold = opts.dense_reprojection_patches * max(intr.width / photo_patches.shape[1],
                                                          intr.height / photo_patches.shape[0])
    else:
        matches = sift_matches(photo, rgb.numpy(), render_mask=trusted)
        threshold = opts.reprojection_px
    if len(matches) == 0:
        return PnPResult(None, 0, np.zeros(0, dtype=bool)), matches
    cols = np.clip(np.floor(matches.render[:, 0]).astype(int), 0, r_intr.width - 1)
    rows = np.clip(np.floor(matches.render[:, 1]).astype(int), 0, r_intr.height - 1)
    ok = trusted[rows, cols]
    matches = Matches(matches.query[ok], matches.render[ok])
    points = backproject(matches.render, depth[rows[ok], cols[ok]], r_intr.K, c2w)
    result = solve_pnp(points, matches.query, intr.K, reprojection_px=threshold, min_inliers=opts.min_inliers)
    return result, matches


def _moved_less_than(a: np.ndarray, b: np.ndarray, deg: float, dist: float) -> bool:
    """Whether poses ``a`` and ``b`` (``[4, 4]``) differ by less than ``deg`` degrees and ``dist`` units."""
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return bool(angle < deg and np.linalg.norm(a[:3, 3] - b[:3, 3]) < dist)


def _sift_rounds(fld: GridField, photo_np: np.ndarray, intr: Intrinsics, pose: np.ndarray, inliers: int,
                 dense: tuple, scale: float, opts: LocateOptions) -> tuple[np.ndarray, int]:
    """Render → SIFT match → PnP rounds from ``pose`` until it stops moving: ``(c2w, inliers)``."""
    for _ in range(opts.pnp_rounds):
        res, _ = render_and_pnp(fld, photo_np, intr, pose, opts.match_size, opts)
        if res.c2w is None:  # still too far off for SIFT: one more dense round, closer
            res, _ = render_and_pnp(fld, photo_np, intr, pose, opts.select_size, opts, dense=dense,
                                    render=opts.select_render)
        if res.c2w is None:
            break
        previous, pose, inliers = pose, res.c2w, res.inliers
        if _moved_less_than(previous, pose, opts.converged_deg, opts.converged_frac * scale):
            break
    return pose, inliers


def _pnp_stage(fld: GridField, teacher, photo: torch.Tensor, intr: Intrinsics,
               candidates: list[tuple[str, np.ndarray]], scale: float,
               opts: LocateOptions) -> tuple[np.ndarray | None, int, str]:
    """Dense PnP from every candidate; the ``pnp_finalists`` poses whose renders correlate best with the photo
    go through SIFT rounds, and the best-scoring result wins (``scale``: the capture's radius, for the
    translation threshold): ``(c2w or None, inliers, name)``."""
    photo_np = photo.float().cpu().numpy()
    dense = (teacher, teacher.extract(photo.float().clamp(0, 1)).features)
    found: list[tuple[float, str, PnPResult]] = []
    for name, c2w in candidates:
        res, _ = render_and_pnp(fld, photo_np, intr, c2w, opts.select_size, opts, dense=dense,
                                render=opts.select_render)
        if res.c2w is not None:
            found.append((render_score(fld, photo, intr, res.c2w, opts.score_size, opts.search.render), name, res))
    if not found:
        return None, 0, ""
    found.sort(key=lambda f: -f[0])
    best: tuple[float, np.ndarray, int, str] | None = None
    for score, name, res in found[: opts.pnp_finalists]:
        pose, inliers = _sift_rounds(fld, photo_np, intr, res.c2w, res.inliers, dense, scale, opts)
        if opts.pnp_finalists > 1:
            score = render_score(fld, photo, intr, pose, opts.score_size, opts.search.render)
        if best is None or score > best[0]:
            best = (score, pose, inliers, name)
    return best[1], best[2], best[3]


def locate_photo(fld: GridField, model: CoarseModel, teacher, photo: torch.Tensor, intr: Intrinsics,
                 opts: LocateOptions | None = None, seed: int = 0) -> LocateResult:
    """Camera-to-world pose of ``photo`` in the field's world, with no initial guess.

    Args:
        fld: the trained field.
        model: the run's coarse model (:func:`semfield.pose.fit.coarse_model_for_run`).
        teacher: the descriptor teacher the model was fitted with.
        photo: ``[H, W, 3]`` in [0, 1].
        intr: the photo's intrinsics (``H × W``).
        opts: :class:`LocateOptions`.
        seed: refinement's pixel-sampling seed.
    Returns:
        :class:`LocateResult`.
    """
    opts = opts or LocateOptions()
    if tuple(photo.shape[:2]) != (intr.height, intr.width):
        raise SemfieldError(f"photo is {photo.shape[1]}x{photo.shape[0]} but its intrinsics say "
                            f"{intr.width}x{intr.height}")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    settings = model.meta["bank"]
    desc = describe_image(teacher, photo, int(settings["size"]), int(settings["grid"]))
    t1 = time.perf_counter()
    seconds["describe"] = t1 - t0
    candidates = coarse_candidates(model, desc.global_vec, desc.layout_vec,
                                   thumbnail(photo, model.bank.thumb_size), opts.retrieval_k, opts.thumbnail_k)
    t2 = time.perf_counter()
    seconds["coarse"] = t2 - t1
    scale = float(model.regressor.scale)
    pnp_pose, inliers, chosen = _pnp_stage(fld, teacher, photo, intr, candidates, scale, opts)
    t3 = time.perf_counter()
    seconds["pnp"] = t3 - t2
    stages: dict[str, np.ndarray | None] = {"regression": candidates[0][1], "retrieval": candidates[1][1],
                                            "pnp": pnp_pose, "photometric": None, "refined": None}
    start, method = pnp_pose, "pnp"
    if pnp_pose is None or inliers < opts.trusted_inliers:
        hypotheses = photometric_search(fld, photo, intr, candidates, opts.score_size, opts.search, seed=seed)
        stages["photometric"] = hypotheses[0].c2w
        if pnp_pose is None or hypotheses[0].score > render_score(fld, photo, intr, pnp_pose, opts.score_size,
                                                                  opts.search.render):
            start, method, chosen = hypotheses[0].c2w, "photometric", hypotheses[0].name
            # the search's few steps leave a hypothesis degrees off: settle it before the fine refinement
            start, _ = refine_pose_photometric(fld, photo, intr, start, opts.settle, seed=seed)
    t4 = time.perf_counter()
    seconds["search"] = t4 - t3
    final = start
    if opts.use_refine:
        final, _ = refine_pose_photometric(fld, photo, intr, start, opts.refine, seed=seed)
        stages["refined"] = final
    seconds["refine"] = time.perf_counter() - t4
    seconds["total"] = time.perf_counter() - t0
    return LocateResult(c2w=final, stages=stages, inliers=inliers, pnp_ok=pnp_pose is not None, method=method,
                        chosen=chosen, seconds=seconds)
