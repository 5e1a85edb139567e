"""Pose-estimation figures on held-out views: per stage (coarse, coarse + PnP, full), the iNeRF baseline at
two perturbations, and robustness variants of the query photo. Scores follow PROTOCOLS.md
(:func:`semfield.eval.pose.pose_metrics`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ..eval.pose import pose_metrics
from ..run import Run
from ..scene.images import load_rgb
from ..scene.types import Frame, Scene
from .bank import BankSettings
from .fit import coarse_model_for_run, descriptor_teacher
from .geometry import closest_point_to_axes, perturb_pose
from .locate import LocateOptions, LocateResult, locate_photo
from .refine import RefineOptions, refine_pose_photometric
from .robustness import VARIANTS

__all__ = [
    "BASELINE_PERTURBATIONS",
    "INERF_REFINE",
    "STAGE_SECONDS",
    "SUMMARY_KEYS",
    "evaluate_views",
    "inerf_baseline",
    "metres_per_unit",
    "scene_scale",
]

BASELINE_PERTURBATIONS = ((30.0, 0.5), (100.0, 1.0))
"""iNeRF / Splat-Nav initial guesses: (degrees, multiples of the scene scale)."""

INERF_REFINE = RefineOptions(iterations=100, rays=768, lr_rotation=1e-2, lr_translation=1e-2, lr_final_factor=0.05,
                             huber=0.0, colour_affine=False)
"""iNeRF-style settings: plain photometric MSE, larger steps and more iterations than the final refinement."""


LENGTH_UNITS = {"metre": 1.0, "centimetre": 0.01, "millimetre": 0.001}


def metres_per_unit(scene: Scene) -> float:
    """Metres per scene unit, from a generated scene's ``scene.json`` (``units.length``); 1 when the scene does
    not say (a capture with no metric scale: centimetres are then scene units / 100)."""
    units = (scene.ground_truth or {}).get("units", {})
    return LENGTH_UNITS.get(str(units.get("length", "metre")), 1.0)


def scene_scale(scene: Scene) -> float:
    """The scene scale ``s`` of the initial-guess perturbations: 1 m, or the median distance from the training
    cameras to the point they look at when that is smaller (PROTOCOLS.md: scaled when the scene is smaller)."""
    c2w = np.stack([f.c2w for f in scene.split("train")])
    centre = closest_point_to_axes(c2w)
    radius = float(np.median(np.linalg.norm(c2w[:, :3, 3] - centre, axis=1)))
    return min(1.0 / metres_per_unit(scene), radius)


def _photo(frame: Frame) -> torch.Tensor:
    k = frame.intrinsics
    return torch.as_tensor(load_rgb(frame.image_path, expect_size=(k.width, k.height)))


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


STAGE_SECONDS = {"coarse_regression": ("describe", "coarse"), "coarse_retrieval": ("describe", "coarse"),
                 "coarse_pnp": ("describe", "coarse", "pnp"), "full": ("total",)}
"""The :class:`LocateResult` timings (``seconds`` keys) that add up to each reported stage's time per image."""


def _stage_figures(gt: np.ndarray, results: list[LocateResult], mpu: float) -> dict[str, Any]:
    stage_of = {"coarse_regression": "regression", "coarse_retrieval": "retrieval", "coarse_pnp": "pnp",
                "full": "refined"}
    out: dict[str, Any] = {}
    for name, stage in stage_of.items():
        est = [r.stages[stage] for r in results]
        m = pose_metrics(gt, est, metres_per_unit=mpu)
        m["seconds_per_image"] = _median([sum(r.seconds[k] for k in STAGE_SECONDS[name]) for r in results])
        out[name] = m
    out["pnp_ok_rate"] = float(np.mean([r.pnp_ok for r in results])) if results else float("nan")
    out["photometric_rate"] = float(np.mean([r.method == "photometric" for r in results])) if results else float("nan")
    out["inliers_median"] = _median([r.inliers for r in results])
    out["chosen"] = [r.chosen for r in results]
    return out


def inerf_baseline(run: Run, scene: Scene, frames: list[Frame], perturbations=BASELINE_PERTURBATIONS,
                   opts: RefineOptions = INERF_REFINE, seed: int = 0, progress: bool = False) -> dict[str, Any]:
    """iNeRF-style photometric optimisation from ground truth perturbed by (degrees, multiples of the scene
    scale). Returns ``{"30deg_0.5s": pose_metrics + seconds_per_image, ...}`` and ``scene_scale``."""
    import time

    s = scene_scale(scene)
    mpu = metres_per_unit(scene)
    gt = np.stack([f.c2w for f in frames])
    out: dict[str, Any] = {"scene_scale": s, "settings": {"iterations": opts.iterations, "rays": opts.rays,
                                                          "lr_rotation": opts.lr_rotation,
                                                          "lr_translation": opts.lr_translation}}
    rng = np.random.default_rng(seed)
    for deg, mult in perturbations:
        est, secs = [], []
        for i, f in enumerate(tqdm(frames, desc=f"iNeRF {deg:g}°", disable=not progress)):
            start = perturb_pose(f.c2w, deg, mult * s, rng)
            t0 = time.perf_counter()
            pose, _ = refine_pose_photometric(run.field, _photo(f), f.intrinsics, start, opts, seed=seed + i)
            secs.append(time.perf_counter() - t0)
            est.append(pose)
        m = pose_metrics(gt, est, metres_per_unit=mpu)
        m["seconds_per_image"] = _median(secs)
        out[f"{deg:g}deg_{mult:g}s"] = m
    return out


SUMMARY_KEYS = ("success_5deg_5cm", "success_2deg_2cm", "median_rot_deg", "median_trans_cm", "seconds_per_image",
                "returned_rate")
"""The full method's figures repeated under ``summary`` by :func:`evaluate_views`."""


def evaluate_views(run: Run, scene: Scene, frames: list[Frame], opts: LocateOptions | None = None,
                   teacher=None, baseline: bool = True, variants: Sequence[str] = tuple(VARIANTS),
                   progress: bool = False, keep_results: bool = False,
                   bank: BankSettings | None = None) -> dict[str, Any]:
    """Locate every frame's photo with no initial guess and score each stage; optionally the iNeRF baseline
    and robustness variants.

    Args:
        run, scene: the trained run and its scene.
        frames: the query views (their photos and ground-truth poses), e.g. ``scene.split("test")``.
        opts: :class:`LocateOptions`.
        teacher: the descriptor teacher (built when None).
        baseline: also run :func:`inerf_baseline`.
        variants: names in :data:`semfield.pose.robustness.VARIANTS` to locate perturbed photos with.
        keep_results: include the :class:`LocateResult` objects under ``"results"`` (not JSON-ready).
        bank: view-bank settings of the coarse model (default :class:`BankSettings`; fitted once, cached).
    Returns:
        dict: ``fit`` (bank size and fit seconds), ``stages`` (``coarse_regression``, ``coarse_retrieval``,
        ``coarse_pnp``, ``full``: each :func:`pose_metrics` + ``seconds_per_image``; ``pnp_ok_rate``,
        ``photometric_rate``, ``inliers_median``), ``summary`` (the ``full`` stage's :data:`SUMMARY_KEYS`),
        ``baseline`` (when asked), ``robustness`` (``full`` metrics per variant),
        ``metres_per_unit``.
    """
    opts = opts or LocateOptions()
    teacher = teacher or descriptor_teacher()
    model = coarse_model_for_run(run, scene, teacher, bank=bank, progress=progress)
    mpu = metres_per_unit(scene)
    gt = np.stack([f.c2w for f in frames])
    results = []
    for i, f in enumerate(tqdm(frames, desc="locate", disable=not progress)):
        results.append(locate_photo(run.field, model, teacher, _photo(f), f.intrinsics, opts, seed=i))
    out: dict[str, Any] = {
        "metres_per_unit": mpu,
        "fit": {"bank_views": model.meta["bank_views"], "fit_seconds": model.meta["fit_seconds"],
                "regressor_fit": model.meta["regressor_fit"]},
        "stages": _stage_figures(gt, results, mpu),
    }
    out["summary"] = {k: out["stages"]["full"][k] for k in SUMMARY_KEYS}
    if keep_results:
        out["results"] = results
    if variants:
        out["robustness"] = {}
        for name in variants:
            res = []
            for i, f in enumerate(tqdm(frames, desc=name, disable=not progress)):
                img, intr = VARIANTS[name](_photo(f), f.intrinsics)
                res.append(locate_photo(run.field, model, teacher, img, intr, opts, seed=i))
            out["robustness"][name] = _stage_figures(gt, res, mpu)["full"]
    if baseline:
        out["baseline"] = inerf_baseline(run, scene, frames, progress=progress)
    return out
