"""Locate a photo in a trained run with no initial guess: coarse (regression, retrieval), PnP, refinement.

1. Coarse. Three candidate kinds: (a) the regressor's pose (from the photo's DINOv2 descriptors), (b) the
   poses of the ``retrieval_k`` bank views whose layout descriptors are most similar (cosine), (c) the
   ``thumbnail_k`` bank views whose colour thumbnails correlate best with the photo.
2. PnP. The photo's DINOv2 patches are matched to every bank view at once (mutual nearest neighbours on
   the bank's stored patch features, :mod:`semfield.pose.bank_match`); each match is a 2D (photo patch
   centre) ↔ 3D (the bank's point under that patch) correspondence, so the ``match_views`` views with the
   most matches each give a PnP-RANSAC pose, and their matches pooled give one more — no rendering. Every
   pose is scored by how well a small render there correlates with the photo; the ``pnp_finalists`` best
   distinct poses get one fine round each at ``finalist_size`` — render RGB + depth, match the photo to the
   render by dense optical flow (``fine_matcher``; SIFT optional), lift the render's pixels to 3D, PnP —
   and the best-scoring result goes on at ``match_size`` through up to ``pnp_rounds`` rounds in all
   (until the pose stops moving). Flow finds thousands of matches in a render 10–25° off, where SIFT kept
   under 15 on a blurry 192-px render. A round whose pose would render less like the photo is undone.
   (Scoring by render correlation, not by inliers: a render from the far side of a table matches a symmetric layout
   about as well, and 2 of 24 test views once came out turned 169° and 179°.) When the bank gives no pose,
   the coarse candidates of step 1 are rendered and their DINOv2 patches matched to the photo's instead;
   the same render-based dense match stands in for the fine matcher in a round that finds no pose.
3. Photometric search, when PnP failed or its pose is not trusted (its render correlates less than
   ``trusted_score`` with the photo and its flow round matched too little of it: small photos, a blurry
   field, no bank view on the right side of a symmetric layout): every coarse candidate is moved by a short
   large-step photometric refinement and scored by the correlation of its render with the photo
   (:mod:`semfield.pose.photometric`); the best hypothesis replaces the PnP pose if it scores higher, and
   goes through the fine rounds (from ~10° off, flow brings it in).
4. Refinement. Photometric gradient descent on the pose through the differentiable renderer
   (:mod:`semfield.pose.refine`).

The result says which path won (``method``: ``pnp`` or ``photometric``) and whether PnP succeeded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import SemfieldError
from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..scene.types import Intrinsics
from .bank import ViewBank
from .bank_match import match_bank, patch_centres
from .descriptors import describe_image
from .geometry import backproject, trusted_depth
from .matching import Matches, dense_feature_matches, flow_grid, flow_matches, sift_matches
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

__all__ = ["LocateOptions", "LocateResult", "bank_pnp_poses", "coarse_candidates", "locate_photo", "render_and_pnp"]


FINE_MATCHERS = ("flow", "sift")
"""How a fine round matches the photo to its render: dense optical flow, or SIFT keypoints."""


@dataclass
class LocateOptions:
    """Settings of :func:`locate_photo`. Sizes are long sides in pixels (capped at the photo's).

    ``retrieval_k`` / ``thumbnail_k``: bank views taken by descriptor / thumbnail similarity as candidates;
    ``match_views``: bank views (most patch matches first) whose matches give a PnP pose each;
    ``match_similarity``: the cosine floor of a patch match;
    ``pnp_finalists``: distinct PnP poses (best render scores first) that go on to the fine rounds, distinct
    meaning at least ``distinct_deg`` or ``distinct_frac`` (of the distance to the scene) apart;
    ``finalist_size``: long side of the finalists' first fine round (the one that goes on continues at
    ``match_size``);
    ``trusted_score`` / ``trusted_flow_support`` / ``trusted_flow_score``: a PnP pose whose render
    correlates less than ``trusted_score`` with the photo competes with the photometric search (by its
    score), unless its last flow round's PnP inliers cover ``trusted_flow_support`` of the flow grid's points
    and it scores at least ``trusted_flow_score``. Correctly located views of the quick suite score
    0.93–0.98, poses degrees off 0.6–0.85, but a photo with occluders scores below 0.9 however right. Over the quick suite's 24 test views at another
    exposure, with occluders and at 2/3 size, flow support was ≥ 0.23 on 66 of the 68 right PnP poses
    (0.03 and 0.04 on two), ≤ 0.04 on the 4 wrong ones (one a mirror pose 174° off); on unseen scenes a
    pose 92° off reached 0.10 with a score of 0.43, while right poses of occluded photos scored ≥ 0.79;
    ``ransac_iterations``: PnP-RANSAC iterations of every PnP here;
    ``fine_matcher``: ``flow`` (dense DIS optical flow on a ``flow_step`` grid, forward–backward consistent
    to ``flow_consistency_px``, PnP inliers within ``flow_reprojection_px``) or ``sift`` (inliers within
    ``reprojection_px``);
    ``score_tolerance``: a fine round whose pose scores more than this below the pose it started from is
    undone (scores of right poses differ by noise: 0.97 against 0.96; a wrong round drops them by 0.1+);
    ``converged_deg`` / ``converged_frac``: a fine round that moves the pose less than this (rotation, and
    translation as a fraction of the distance to the scene) ends the rounds.
    """

    retrieval_k: int = 4
    thumbnail_k: int = 3
    match_views: int = 12
    match_similarity: float = 0.5
    distinct_deg: float = 3.0
    distinct_frac: float = 0.05
    # Render-based dense matching (the fallbacks) at the photo's own size: a 192-px photo has 13 x 13 DINOv2
    # patches, not 7 x 7 at 96 px, and PnP on ~30 patch matches was mostly noise.
    # The rest was measured on the 24 test views of the quick suite's 3 scenes (5 deg / 5 cm, 2-core CPU):
    # bank matching replaced render-based dense PnP from 8 coarse candidates (18 -> 20 located, 8.9 -> 4.4 s
    # per photo); 3 finalists and undoing rounds that lower the score gave 21 at 4.8 s; rendering the SIFT
    # rounds at a 2.5-voxel step instead of 1.5 and a 20 x 512-ray refinement instead of 30 x 768 gave 20
    # at 3.3 s (one view's SIFT round fails on the coarser render). With 128-view banks: step 2.5 and 1000
    # RANSAC iterations 19 at 3.26 s, step 2.0 and 300 iterations 20 at 3.14 s, step 1.5 and 300 iterations
    # 20 at 3.93 s (a RANSAC of 1000 iterations took 26 ms, 13+ per photo). A photometric search for poses with
    # < 15 inliers (instead of a score < 0.9) changed none of them and cost ~4 s for a quarter of the
    # photos; letting the PnP pose join that search moved a failed one further off (7.8 -> 10.0 deg).
    # Dense DIS optical flow instead of SIFT in the fine rounds (384-view banks): 20 -> 24 of 24 located,
    # median 2.89 -> 2.72 s per photo; the 4 it rescued started 3-12 deg off, where SIFT kept 4-14 matches.
    # The finalists' first round at 128 px instead of 192, with a 0.01 score tolerance: 24 located, 2.24 s
    # (without the tolerance 1.95 s but 15 instead of 20 within 1 deg / 1 cm: the guard kept the 128-px pose
    # over a 192-px round scoring 0.0002 lower); at 96 px 23 located. Without the refinement: 22 instead of
    # 24 within 2 deg / 2 cm, 0.4 s less.
    # Checked on scenes never used for tuning (the full suite's default-3..5 and two rooms, 48 views): 43 of
    # 48; the search's winner going through the flow rounds and the score floor on flow support made it 45
    # (two mirror views where no bank PnP pose was right, the search ending 10-24 deg off), the quick
    # suite's 24 unchanged and its exposure variant 22 -> 23.
    select_size: int = 192
    match_size: int = 192
    finalist_size: int = 128
    pnp_rounds: int = 3
    pnp_finalists: int = 3
    fine_matcher: str = "flow"
    reprojection_px: float = 2.0
    flow_step: int = 3
    flow_consistency_px: float = 1.0
    flow_reprojection_px: float = 1.5
    ransac_iterations: int = 300
    dense_reprojection_patches: float = 0.75
    min_inliers: int = 10
    trusted_score: float = 0.9
    trusted_flow_support: float = 0.15
    trusted_flow_score: float = 0.6
    score_tolerance: float = 0.01
    converged_deg: float = 0.2
    converged_frac: float = 0.003
    depth_edge_ratio: float = 0.03
    score_size: int = 32
    render: RenderOptions = field(default_factory=lambda: RenderOptions(step_voxels=2.0, max_samples=384))
    select_render: RenderOptions = field(default_factory=lambda: RenderOptions(step_voxels=3.0, max_samples=384))
    search: RefineOptions = field(default_factory=lambda: SEARCH_REFINE)
    settle: RefineOptions = field(default_factory=lambda: SETTLE_REFINE)
    refine: RefineOptions = field(default_factory=lambda: RefineOptions(iterations=20, rays=512))
    use_refine: bool = True

    def __post_init__(self) -> None:
        if self.fine_matcher not in FINE_MATCHERS:
            raise SemfieldError(f"unknown fine matcher {self.fine_matcher!r} (one of {', '.join(FINE_MATCHERS)})")


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
        chosen: the PnP pose or candidate it came from (``bank:i`` — the bank view with the i-th most patch
            matches —, ``bank:pooled``, or, when the bank gave no pose or the photometric search won,
            ``regression``, ``retrieval:i`` or ``thumbnail:i``; empty if none).
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


def render_and_pnp(fld: GridField, photo: np.ndarray, intr: Intrinsics, c2w: np.ndarray, size: int,
                   opts: LocateOptions, dense: tuple | None = None,
                   render: RenderOptions | None = None) -> tuple[PnPResult, Matches]:
    """Render at ``c2w`` (long side ``size``), match the photo to it, lift, and solve PnP.

    Args:
        photo: ``[H, W, 3]`` in [0, 1] (numpy).
        intr: the photo's intrinsics.
        c2w: ``[4, 4]`` where to render.
        dense: ``(teacher, photo patch features [h, w, D])`` to match DINOv2 patches instead of flow or SIFT
            (robust to a far-off render, precise to about a patch); None for ``opts.fine_matcher``.
        render: the render's settings (default ``opts.render``).
    Returns:
        ``(PnPResult, the matches used)``.
    """
    r_intr = intr.long_side_at_most(size)
    with torch.no_grad():
        out = render_image(fld, torch.as_tensor(c2w, dtype=torch.float32, device=_field_device(fld)), r_intr,
                           render or opts.render)
    rgb = out["rgb"].float().cpu()
    depth = out["median_depth"].float().cpu().numpy()
    trusted = trusted_depth(depth, opts.depth_edge_ratio)
    if dense is not None:
        teacher, photo_patches = dense
        matches = dense_feature_matches(photo_patches, teacher.extract(rgb.clamp(0, 1)).features,
                                        (intr.height, intr.width), (r_intr.height, r_intr.width))
        threshold = opts.dense_reprojection_patches * max(intr.width / photo_patches.shape[1],
                                                          intr.height / photo_patches.shape[0])
    elif opts.fine_matcher == "flow":
        matches = flow_matches(photo, rgb.numpy(), render_mask=trusted, step=opts.flow_step,
                               consistency_px=opts.flow_consistency_px)
        threshold = opts.flow_reprojection_px * max(1.0, intr.width / r_intr.width)
    elif opts.fine_matcher == "sift":
        matches = sift_matches(photo, rgb.numpy(), render_mask=trusted)
        threshold = opts.reprojection_px
    else:
        raise AssertionError(opts.fine_matcher)  # LocateOptions checks it
    if len(matches) == 0:
        return PnPResult(None, 0, np.zeros(0, dtype=bool)), matches
    cols = np.clip(np.floor(matches.render[:, 0]).astype(int), 0, r_intr.width - 1)
    rows = np.clip(np.floor(matches.render[:, 1]).astype(int), 0, r_intr.height - 1)
    ok = trusted[rows, cols]
    matches = Matches(matches.query[ok], matches.render[ok])
    points = backproject(matches.render, depth[rows[ok], cols[ok]], r_intr.K, c2w)
    result = solve_pnp(points, matches.query, intr.K, reprojection_px=threshold, iterations=opts.ransac_iterations,
                       min_inliers=opts.min_inliers)
    return result, matches


def _moved_less_than(a: np.ndarray, b: np.ndarray, deg: float, dist: float) -> bool:
    """Whether poses ``a`` and ``b`` (``[4, 4]``) differ by less than ``deg`` degrees and ``dist`` units."""
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return bool(angle < deg and np.linalg.norm(a[:3, 3] - b[:3, 3]) < dist)


@dataclass
class _Hypothesis:
    """A pose on its way through the fine rounds: ``c2w [4, 4]``, its render ``score``, PnP ``inliers``;
    ``flow_support``: the last flow round's inliers as a fraction of its grid points (0 if none)."""

    name: str
    c2w: np.ndarray
    score: float
    inliers: int
    converged: bool = False
    flow_support: float = 0.0


def _flow_grid_points(intr: Intrinsics, size: int, step: int) -> int:
    """How many render pixels a flow round at long side ``size`` samples (its ``step`` grid)."""
    r = intr.long_side_at_most(size)
    return len(flow_grid(r.height, r.width, step)[0])


def _fine_rounds(fld: GridField, photo: torch.Tensor, intr: Intrinsics, hyp: _Hypothesis, dense: tuple,
                 scale: float, opts: LocateOptions, rounds: int, size: int) -> _Hypothesis:
    """Up to ``rounds`` render → match (``opts.fine_matcher``) → PnP rounds from ``hyp`` at long side
    ``size``, until the pose stops moving or a round would lower its render score (a PnP on wrong matches:
    the round is undone)."""
    photo_np = photo.float().cpu().numpy()
    for _ in range(rounds):
        res, _ = render_and_pnp(fld, photo_np, intr, hyp.c2w, size, opts)
        support = res.inliers / _flow_grid_points(intr, size, opts.flow_step) if opts.fine_matcher == "flow" else 0.0
        if res.c2w is None:  # still too far off for the fine matcher: one more dense round, closer
            res, _ = render_and_pnp(fld, photo_np, intr, hyp.c2w, opts.select_size, opts, dense=dense,
                                    render=opts.select_render)
            support = 0.0
        if res.c2w is None:
            break
        score = render_score(fld, photo, intr, res.c2w, opts.score_size, opts.search.render)
        if score < hyp.score - opts.score_tolerance:
            break
        moved = not _moved_less_than(hyp.c2w, res.c2w, opts.converged_deg, opts.converged_frac * scale)
        hyp = _Hypothesis(hyp.name, res.c2w, score, res.inliers, converged=not moved, flow_support=support)
        if hyp.converged:
            break
    return hyp


def bank_pnp_poses(bank: ViewBank, photo_patches: torch.Tensor, intr: Intrinsics,
                   opts: LocateOptions) -> list[tuple[str, PnPResult]]:
    """PnP poses from the photo's patches matched to the bank's stored patches and 3D points (no rendering).

    Args:
        bank: the coarse model's view bank (patch features and points).
        photo_patches: ``[h, w, D]`` the photo's teacher patch features (as the bank's were made: the photo
            resized to the bank's size).
        intr: the photo's intrinsics (patch centres are placed on its ``H × W`` pixels).
        opts: :class:`LocateOptions` (``match_views``, ``match_similarity``, ``dense_reprojection_patches``,
            ``min_inliers``).
    Returns:
        ``[("bank:i", PnPResult), ...]`` for the ``match_views`` views with the most matches (rank ``i``) and
        ``("bank:pooled", ...)`` for their matches together; failed PnPs left out.
    """
    h, w, D = photo_patches.shape
    matches = match_bank(bank.patch_basis.compress(photo_patches.reshape(-1, D)), bank.patch_feats,
                         bank.patch_valid, opts.match_similarity)
    centres = patch_centres((h, w), (intr.height, intr.width)).numpy()
    threshold = opts.dense_reprojection_patches * max(intr.width / w, intr.height / h)
    order = torch.argsort(matches.counts, descending=True, stable=True)[: opts.match_views]
    order = [int(b) for b in order if int(matches.counts[b]) >= opts.min_inliers]
    out: list[tuple[str, PnPResult]] = []
    pooled_q, pooled_x = [], []
    for rank, b in enumerate(order):
        qi, pi = matches.of_view(b)
        pixels, points = centres[qi.numpy()], bank.patch_points[b, pi].double().numpy()
        pooled_q.append(pixels)
        pooled_x.append(points)
        res = solve_pnp(points, pixels, intr.K, reprojection_px=threshold, iterations=opts.ransac_iterations,
                        min_inliers=opts.min_inliers)
        if res.c2w is not None:
            out.append((f"bank:{rank}", res))
    if len(order) > 1:
        res = solve_pnp(np.concatenate(pooled_x), np.concatenate(pooled_q), intr.K, reprojection_px=threshold,
                        iterations=opts.ransac_iterations, min_inliers=opts.min_inliers)
        if res.c2w is not None:
            out.append(("bank:pooled", res))
    return out


def _distinct(hypotheses: list[_Hypothesis], n: int, deg: float, dist: float) -> list[_Hypothesis]:
    """The first ``n`` of ``hypotheses`` (best first) that are not within ``deg`` and ``dist`` of an earlier one."""
    kept: list[_Hypothesis] = []
    for h in hypotheses:
        if all(not _moved_less_than(h.c2w, k.c2w, deg, dist) for k in kept):
            kept.append(h)
        if len(kept) == n:
            break
    return kept


def _pnp_stage(fld: GridField, model: CoarseModel, teacher, photo: torch.Tensor, photo_patches: torch.Tensor,
               intr: Intrinsics, candidates: list[tuple[str, np.ndarray]], scale: float,
               opts: LocateOptions) -> _Hypothesis | None:
    """PnP poses from the bank's matches (render-based dense PnP from the coarse ``candidates`` when the bank
    gives none), each scored by its render's correlation with the photo; the ``pnp_finalists`` best distinct
    ones get one fine round each, and the best-scoring result goes on through the remaining rounds
    (``scale``: the capture's radius, for the translation thresholds; ``photo_patches``: the photo's teacher
    patches as described at the bank's size, for the bank and the render-based matches alike). None when no
    PnP succeeded."""
    dense = (teacher, photo_patches)
    poses = bank_pnp_poses(model.bank, photo_patches, intr, opts)
    if not poses:
        photo_np = photo.float().cpu().numpy()
        for name, c2w in candidates:
            res, _ = render_and_pnp(fld, photo_np, intr, c2w, opts.select_size, opts, dense=dense,
                                    render=opts.select_render)
            if res.c2w is not None:
                poses.append((name, res))
    if not poses:
        return None
    scored = sorted((_Hypothesis(name, res.c2w, render_score(fld, photo, intr, res.c2w, opts.score_size,
                                                             opts.search.render), res.inliers)
                     for name, res in poses), key=lambda h: -h.score)
    finalists = _distinct(scored, opts.pnp_finalists, opts.distinct_deg, opts.distinct_frac * scale)
    # one fine round each; the best-scoring result goes on alone
    best = max((_fine_rounds(fld, photo, intr, h, dense, scale, opts, 1, opts.finalist_size) for h in finalists),
               key=lambda h: h.score)
    if not best.converged or opts.finalist_size != opts.match_size:
        best = _fine_rounds(fld, photo, intr, best, dense, scale, opts, opts.pnp_rounds - 1, opts.match_size)
    return best


def _trusted(hyp: _Hypothesis | None, opts: LocateOptions) -> bool:
    """Whether a pose can skip the photometric search: its render score, or its flow support with a score
    floor (``trusted_score``, ``trusted_flow_support``, ``trusted_flow_score``)."""
    return hyp is not None and (hyp.score >= opts.trusted_score or (hyp.flow_support >= opts.trusted_flow_support
                                                                    and hyp.score >= opts.trusted_flow_score))


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
    desc = describe_image(teacher, photo, model.bank.long_side, int(settings["grid"]))
    t1 = time.perf_counter()
    seconds["describe"] = t1 - t0
    candidates = coarse_candidates(model, desc.global_vec, desc.layout_vec,
                                   thumbnail(photo, model.bank.thumb_size), opts.retrieval_k, opts.thumbnail_k)
    t2 = time.perf_counter()
    seconds["coarse"] = t2 - t1
    scale = float(model.regressor.scale)
    pnp = _pnp_stage(fld, model, teacher, photo, desc.patches, intr, candidates, scale, opts)
    pnp_pose, inliers, chosen = (None, 0, "") if pnp is None else (pnp.c2w, pnp.inliers, pnp.name)
    t3 = time.perf_counter()
    seconds["pnp"] = t3 - t2
    stages: dict[str, np.ndarray | None] = {"regression": candidates[0][1], "retrieval": candidates[1][1],
                                            "pnp": pnp_pose, "photometric": None, "refined": None}
    start, method = pnp_pose, "pnp"
    if not _trusted(pnp, opts):
        hypotheses = photometric_search(fld, photo, intr, candidates, opts.score_size, opts.search, seed=seed)
        stages["photometric"] = hypotheses[0].c2w
        if pnp is None or hypotheses[0].score > pnp.score:
            best = hypotheses[0]
            method, chosen = "photometric", best.name
            # the search's few steps leave a hypothesis degrees off: fine rounds take it from there when they
            # can, else a settling refinement brings it within the fine refinement's reach
            found = _fine_rounds(fld, photo, intr, _Hypothesis(best.name, best.c2w, best.score, 0),
                                 (teacher, desc.patches), scale, opts, opts.pnp_rounds, opts.match_size)
            start, inliers = found.c2w, found.inliers
            if not _trusted(found, opts):
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
