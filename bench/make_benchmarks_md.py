#!/usr/bin/env python
"""Regenerate BENCHMARKS.md from the ``results.json`` files written by the benchmark scripts.

    python bench/make_benchmarks_md.py [--results-glob 'bench/results/*/results.json'] [--output BENCHMARKS.md]

Every number in the output comes from a results.json (the scripts in bench/) or a bench.json (``semfield bench``,
the suites, first); nothing is typed by hand. Relative globs and paths are
taken from the repository root.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GLOB = "bench/results/*/results.json"
SUITE_GLOB = "bench/results/*/bench.json"
REGENERATE = ("semfield bench --suite quick --out bench/results/suite_quick && "
              "python bench/bench_train.py --out bench/results/train_default --runs 3 --budget 120 "
              "--preset default --seed 0 && python bench/bench_distill.py --out bench/results/distill_default "
              "--runs 3 --iterations 360 --preset default --seed 0 && python bench/make_benchmarks_md.py")

# (key, label, format, target key in results["targets"] or None)
TRAIN_ROWS = (
    ("psnr_test", "held-out PSNR (dB)", ".2f"),
    ("ssim_test", "held-out SSIM", ".3f"),
    ("depth_abs_rel_test", "depth abs-rel, full image", ".4f"),
    ("depth_abs_rel_fg_test", "depth abs-rel, foreground (table + objects)", ".4f"),
    ("depth_rmse_test", "depth RMSE (m)", ".4f"),
    ("depth_abs_rel_expected_test", "depth abs-rel, full image, expected depth", ".4f"),
    ("depth_abs_rel_fg_expected_test", "depth abs-rel, foreground, expected depth", ".4f"),
    ("train_seconds", "training time (s)", ".1f"),
    ("iterations", "iterations", ".0f"),
    ("peak_rss_mb", "peak RSS (MB)", ".0f"),
    ("peak_gpu_mb", "peak GPU memory allocated by torch (MB)", ".0f"),
    ("wall_seconds", "whole-process wall time (s)", ".1f"),
)
DEFAULT_TARGETS = {"psnr_test": [">=", 26.0], "depth_abs_rel_fg_test": ["<=", 0.08],
                   "peak_rss_mb": ["<=", 4096.0], "train_seconds": ["<=", 120.0]}
UNITS = {"psnr_test": " dB", "peak_rss_mb": " MB", "train_seconds": " s"}


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def _run_value(run: dict[str, Any], key: str) -> Any:
    return run.get("final", {}).get(key, run.get(key))


def _target_cells(key: str, value: Any, targets: dict[str, Any]) -> tuple[str, str]:
    if key not in targets:
        return "", ""
    op, bound = targets[key]
    text = f"{'≥' if op == '>=' else '≤'} {bound:g}{UNITS.get(key, '')}"
    if value is None:
        return text, "n/a"
    ok = value >= bound if op == ">=" else value <= bound
    return text, "yes" if ok else "**no**"


def _machine(m: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    threads = sorted({r["torch_threads"] for r in runs if r.get("torch_threads")}) or [m.get("torch_threads", "?")]
    parts = [m.get("cpu", "?"), f"{m.get('cores', '?')} cores (torch threads used: {', '.join(map(str, threads))})"]
    if m.get("ram_mb"):
        parts.append(f"{m['ram_mb'] / 1024:.0f} GiB RAM")
    parts.append(f"GPU: {m['gpu']}" if m.get("gpu") else "no GPU")
    parts.append(f"torch {m.get('torch', '?')}, Python {m.get('python', '?')}")
    return ", ".join(parts)


def _stops(runs: list[dict[str, Any]]) -> str:
    sched = sorted({r.get("schedule_iterations") for r in runs if r.get("schedule_iterations")})
    if not sched:
        return ""
    by_time = sum(1 for r in runs if r.get("stopped_by") == "max_seconds")
    return (f"Schedule length {', '.join(map(str, sched))} iterations; {by_time} of {len(runs)} run(s) "
            f"stopped by the time budget before finishing it.")


def stale_scene_note(res: dict[str, Any]) -> list[str]:
    """A warning when the result's scenes came from an older scene generator: other images (version 1), or
    ground-truth boxes in training (versions 1 and 2)."""
    from semfield.data.generate.presets import GENERATOR_VERSION

    version = res.get("generator_version") or (res.get("scene") or {}).get("generator_version") or 1
    if version == GENERATOR_VERSION:
        return []
    images = (" Its images were rendered with one aliased RGB sample per pixel (version 2 on supersamples 3×3)."
              if version == 1 else " Same images as today's.")
    return [(f"**Trained with ground-truth boxes** (scenes of generator version {version}; today's is "
             f"{GENERATOR_VERSION}): the room's box was in transforms.json and the focus box was read from "
             "scene.json, help a real capture never gives; training now finds both from the images (see "
             f"\"Training boxes from the data\")." + images + " Run the command again to measure it as a user "
             "would."), ""]


def _code_line(res: dict[str, Any]) -> str:
    """``- Code: commit <12 hex> [(uncommitted changes)][, run started <time>]``."""
    git = res.get("git") or {}
    commit = (git.get("commit") or "unknown")[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
    return f"- Code: commit {commit}" + (f", run started {res['started']}" if res.get("started") else "")


def _provenance(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """The command block and the machine / code / settings / results lines every section starts with."""
    runs, settings = res.get("runs", []), res.get("settings", {})
    return ["```", res["command"], "```", "",
            f"- Machine: {_machine(res.get('machine', {}), runs)}",
            _code_line(res),
            f"- Settings overridden: {', '.join(f'`{s}`' for s in settings.get('set', [])) or 'none (defaults)'}",
            f"- Results: `{os.path.relpath(path, output.parent)}`",
            *([f"- Note: {res['note']}"] if res.get("note") else []), ""]


def _class_table(summary: dict[str, Any]) -> list[str]:
    """Held-out PSNR per ground-truth region (medians over runs, from bench_train's summary)."""
    regions = summary.get("psnr_by_class")
    if not regions:
        return []
    lines = ["", ("Where the error is (final evaluation, squared error pooled over all test views per "
                  "ground-truth region; medians over runs):"), "",
             "| region | PSNR (dB) | share of pixels | share of squared error |", "|---|---|---|---|"]
    for region, r in regions.items():
        lines.append(f"| {region} | {_fmt(r['psnr'], '.2f')} | {_fmt(r['pixel_share'], '.3f')} | "
                     f"{_fmt(r['error_share'], '.3f')} |")
    return lines


def train_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    scene, settings = res["scene"], res.get("settings", {})
    targets = res.get("targets") or DEFAULT_TARGETS
    runs = res["runs"]
    name = path.parent.name
    lines = [f"## Training: `{name}`", "",
             (f"**{scene['label']}.** {len(runs)} run(s) of at most {settings.get('budget_seconds', '?'):g} s "
             f"of training each, every run in its own process (training seeds "
             f"{', '.join(map(str, settings.get('train_seeds', [])))}); figures are the **median over runs**. "
             f"Final metrics render all test views with `eval_render`; the curve points use the training "
             f"sampler (`render`). Training time excludes evaluation; wall time is the whole process "
             f"(start-up, scene loading, training, evaluations). {_stops(runs)}"), "",
             *_provenance(res, path, output)]
    on_gpu = str(res.get("machine", {}).get("device", "cpu")).startswith("cuda")
    if on_gpu:
        lines += [("**Trained on a GPU.** The targets are those of the 2-core CPU: they are shown for "
                   "comparison, not as this run's goal."), ""]
    lines += ["| figure | median | target | meets target |", "|---|---|---|---|"]
    summary = res["summary"]
    for key, label, spec in TRAIN_ROWS:
        if key == "peak_gpu_mb" and summary.get(key) is None:
            continue
        target, ok = _target_cells(key, summary.get(key), targets)
        lines.append(f"| {label} | {_fmt(summary.get(key), spec)} | {target} | {ok} |")
    lines += ["", "Per run:", "",
              "| run | seed | iterations | train s | wall s | PSNR | SSIM | abs-rel | fg abs-rel | RMSE | peak RSS MB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        cells = [str(r.get("run")), str(r.get("train_seed", "?"))]
        for key, spec in (("iterations", ".0f"), ("train_seconds", ".1f"), ("wall_seconds", ".1f"),
                          ("psnr_test", ".2f"), ("ssim_test", ".3f"), ("depth_abs_rel_test", ".4f"),
                          ("depth_abs_rel_fg_test", ".4f"), ("depth_rmse_test", ".4f"), ("peak_rss_mb", ".0f")):
            cells.append(_fmt(_run_value(r, key), spec))
        lines.append("| " + " | ".join(cells) + " |")
    lines += _class_table(summary)
    for r in runs:
        busy = r.get("cpu_busy_before_run")
        if busy is not None and busy > 0.1:
            lines += ["", (f"Warning: other processes used {100 * busy:.0f}% of the CPU just before run "
                           f"{r.get('run')}; its times are pessimistic.")]
    png = path.parent / res.get("curve_png", "curve.png")
    if png.exists():
        rel = Path(os.path.relpath(png, output.parent)).as_posix()
        lines += ["", (f"Held-out PSNR and foreground depth abs-rel against training seconds "
                       f"(dashed: targets; stars: final evaluation): [{rel}]({rel})"), "", f"![curves]({rel})"]
    return lines + [""]


def _cell(summary: dict[str, Any], key: str, spec: str) -> str:
    return _fmt(summary.get(key), spec)


def distill_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """The distillation / query benchmark (bench/bench_distill.py)."""
    s, scene, settings = res["summary"], res["scene"], res.get("settings", {})
    targets = dict(res.get("targets") or {})
    targets.setdefault("feature_cosine_label_noise_free", [">=", 0.9])
    targets.setdefault("text_query_ms", ["<=", 50.0])
    runs = res.get("runs", [])
    lines = [f"## Distillation and queries: `{path.parent.name}`", "",
             (f"**{scene['label']}, simulated teacher (`label`) + DINOv2 (`dinov2`).** {len(runs)} run(s) of "
              f"{settings.get('iterations', '?')} iterations each for RGB only and for RGB + both heads, each "
              f"training in its own process; figures are the **median over runs**."), "",
             *_provenance(res, path, output)[:-1],
             f"- Teachers: `{json.dumps(settings.get('teachers', {}))}`", "",
             "| figure | median | target | meets target |", "|---|---|---|---|"]
    rows = (("train_seconds_rgb", "training time, RGB only (s)", ".1f"),
            ("train_seconds_distill", "training time, RGB + label + dinov2 heads (s)", ".1f"),
            ("train_seconds_ratio", "training time ratio (distill / RGB)", ".2f"),
            ("peak_rss_mb_distill", "peak RSS with heads (MB)", ".0f"),
            ("psnr_test_rgb", "held-out PSNR, RGB only (dB)", ".2f"),
            ("psnr_test_distill", "held-out PSNR, with heads (dB)", ".2f"),
            ("feature_cosine_dinov2", "dinov2 head: cosine to the teacher on held-out views", ".3f"),
            ("feature_cosine_centred_dinov2", "dinov2 head: the same, both centred", ".3f"),
            ("feature_cosine_label", "label head: cosine to the (noisy) simulated teacher", ".3f"),
            ("feature_cosine_label_noise_free", "label head: cosine to the simulated teacher without noise", ".3f"),
            ("feature_cosine_centred_label_noise_free", "label head: the same, both centred", ".3f"),
            ("bake_seconds", "query bake (surface cloud) (s)", ".1f"),
            ("text_query_ms", "text query: 3D point + box + heatmap at an existing view (ms)", ".1f"),
            ("exemplar_query_ms", "exemplar query, the same outputs (ms)", ".1f"),
            ("new_view_relevancy_ms", "relevancy heatmap at a new viewpoint (ms)", ".0f"))
    for key, label, spec in rows:
        target, ok = _target_cells(key, s.get(key), targets)
        lines.append(f"| {label} | {_cell(s, key, spec)} | {target} | {ok} |")
    lines += ["", "Localization (fraction of queries; 2D over (test view, query) pairs with a ground-truth box):", "",
              "| queries | 2D LERF | 2D LangSplat (smoothed) | 3D point in box | 3D, 2 cm margin | 3D box IoU |",
              "|---|---|---|---|---|---|"]
    for prefix, label in (("text_name", "names (label head)"), ("text_synonym", "paraphrases / synonyms"),
                          ("text_category", "categories"), ("text", "all text queries"),
                          ("exemplar", "exemplar (dinov2 head)")):
        cells = [_cell(s, f"{prefix}_{k}", ".3f") for k in ("loc2d_lerf", "loc2d_langsplat", "loc3d", "loc3d_2cm",
                                                            "box_iou")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "2D semantic segmentation of the test views (scene's classes):", "",
              "| source | mIoU | mAcc | oAcc |", "|---|---|---|---|"]
    for key, label in (("field", "field (label head, rendered)"),
                       ("teacher_nearest", "teacher on GT images, nearest upsampling"),
                       ("teacher_bilinear", "teacher on GT images, bilinear upsampling")):
        lines.append(f"| {label} | " + " | ".join(_cell(s, f"seg_{m}_{key}", ".3f") for m in ("miou", "macc", "oacc"))
                     + " |")
    ext = (res.get("extraction") or {}).get("teachers", {})
    if ext:
        lines += ["", "Teacher feature extraction (cold cache, once): " + "; ".join(
            f"{name} {v.get('train_seconds', 0) + v.get('test_seconds', 0):.1f} s for "
            f"{v.get('n_train', 0) + v.get('n_test', 0)} images" for name, v in ext.items() if "train_seconds" in v)
            + "."]
    if res.get("notes"):
        lines += ["", *[ln for ln in res["notes"].splitlines() if not ln.startswith("## ")]]
    return lines + [""]


def panoptic_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """The panoptic benchmark (bench/bench_panoptic.py): one scene, one mask source."""
    s, scene, masks = res["panoptic"], res["scene"], res.get("mask_quality_train_views", {})
    run, base = res.get("instance_run", {}), res.get("baseline")
    lines = [f"## Panoptic segmentation: `{path.parent.name}`", "",
             (f"**{scene['label']}, {res['masks_label']}.** One run with the simulated label teacher and an "
              "instance head; scene-level panoptic quality on the test views."), "",
             "```", res["command"], "```", "",
             f"- Machine: {_machine(res.get('machine', {}), [])}",
             _code_line(res),
             f"- Results: `{os.path.relpath(path, output.parent)}`", "",
             "| figure | value | target | meets target |", "|---|---|---|---|"]
    targets = {"pq": [">=", 70.0], "added_training_cost_percent": ["<=", 30.0], "cluster_seconds": ["<=", 10.0]}
    cost = 100.0 * res["added_training_cost"] if "added_training_cost" in res else None
    rows = (("pq", "PQ, scene level", s.get("pq"), ".1f"), ("sq", "SQ", s.get("sq"), ".1f"),
            ("rq", "RQ", s.get("rq"), ".1f"), ("pq_things", "PQ things", s.get("pq_things"), ".1f"),
            ("pq_stuff", "PQ stuff", s.get("pq_stuff"), ".1f"), ("mcov", "thing coverage (mCov)", s.get("mcov"), ".1f"),
            ("precision", "thing precision", s.get("precision"), ".1f"),
            ("recall", "thing recall", s.get("recall"), ".1f"),
            ("cluster_seconds", "clustering + labelling (s)", s.get("cluster_seconds"), ".2f"),
            ("render_seconds", "rendering the sampled training views (s)", s.get("render_seconds"), ".1f"),
            ("train_seconds", "training time with the instance head (s)", run.get("train_seconds"), ".1f"),
            ("baseline_seconds", "training time without it (s)", (base or {}).get("train_seconds"), ".1f"),
            ("added_training_cost_percent", "added training cost (%)", cost, ".1f"),
            ("mask_mcov", "2D masks on the training views: object coverage", masks.get("mcov"), ".1f"),
            ("mask_precision", "2D masks: precision (IoU > 0.5)", masks.get("precision"), ".1f"),
            ("mask_recall", "2D masks: recall (IoU > 0.5)", masks.get("recall"), ".1f"),
            ("masks_per_view", "2D masks per view", masks.get("masks_per_view"), ".1f"))
    for key, label, value, spec in rows:
        target, ok = _target_cells(key, value, targets)
        lines.append(f"| {label} | {_fmt(value, spec)} | {target} | {ok} |")
    pictures = res.get("pictures") or []
    if pictures:
        lines += ["", "Pictures: " + ", ".join(f"`{os.path.relpath(path.parent / p, output.parent)}`"
                                               for p in pictures) + "."]
    lines += ["", *[f"- {note}" for note in res.get("notes", [])]]
    return lines + [""]


def sweep_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """A settings sweep (bench/sweep_train.py): mean held-out figures per variant over the seeds."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from sweep_train import table

    variants = res["variants"]
    lines = [f"## Settings sweep: `{path.parent.name}`", "",
             (f"**{res['scene']['label']}.** Each variant trained with seeds {', '.join(map(str, res['seeds']))} "
              f"({res['parallel']} trainings at a time), then evaluated on all test views with the final "
              "evaluation of the training benchmark; PSNR and region PSNRs are means over the seeds. Compare "
              "variants at the same iterations: times here are not the 2-core CPU's."), "",
             "```", res["command"], "```", "",
             f"- Machine: {_machine(res.get('machine', {}), [])}",
             _code_line(res),
             f"- Settings for every variant: {', '.join(f'`{s}`' for s in res.get('set', [])) or 'none'}",
             f"- Results: `{os.path.relpath(path, output.parent)}`", ""]
    lines += table(res["rows"], list(variants)).rstrip("\n").splitlines()
    lines += ["", "Variants: " + "; ".join(f"**{name}** {' '.join(f'`{s}`' for s in sets) or '(defaults)'}"
                                            for name, sets in variants.items()) + ".", ""]
    lines += [f"- {note}" for note in res.get("notes", [])]
    return lines + [""]


def consistency_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """Teacher consistency (bench/teacher_consistency.py): the ceiling of a view-independent head."""
    ranks = [k for k in map(str, res["ranks"]) if any(k in t["rank_ceiling"] for t in res["teachers"])]
    lines = [f"## Teacher consistency: `{path.parent.name}`", "",
             (f"**{res['scene']['label']}.** How far a view-independent feature head could get against each "
              "teacher. Each cell centre of a test view is lifted to 3D with the ground-truth depth and looked "
              "up in every training view that sees it (ground-truth depth within 2 %): *pair* compares the test "
              "view's teacher feature with one training view's at the same point, *mean of views* with their "
              "mean, which is what a head fitted with a squared loss converges to at that point: an estimate "
              "of the ceiling of the distillation benchmark's feature cosine (a head that also pools "
              "neighbouring points can pass it where the teacher's disagreement is random noise, as the "
              "simulated label teacher's is). *Direction-weighted* weights each training view by "
              "exp(κ (cos a − 1)), a the angle between its viewing direction at the point and the test view's "
              "(the best κ of those measured is shown): what a head whose features vary smoothly with the "
              "viewing direction could reach. The rank columns bound a head storing a k-wide latent with a "
              "linear decoder. Options in brackets: the same model with test-time averaging (`jitter`: "
              "sub-patch shifts per axis, `flip`: the mirrored image too), a denoised teacher whose own maps "
              "are what a head distilled from it is compared with. Extraction: seconds for all training and "
              "test images, a few when the cache was warm (the distillation benchmark records cold times)."), "",
             "```", res["command"], "```", "",
             f"- Machine: {_machine(res.get('machine', {}), [])}",
             _code_line(res),
             f"- Results: `{os.path.relpath(path, output.parent)}`", "",
             "| teacher | width | map | extraction (s) | cosine, pair of views | cosine, mean of views | cosine, "
             "direction-weighted (κ) | views per point | " + " | ".join(f"rank {k}" for k in ranks) + " |",
             "|---" * (8 + len(ranks)) + "|"]
    for t in res["teachers"]:
        options = ", ".join(f"{k} {json.dumps(v)}" for k, v in (t.get("spec") or {}).items() if k != "kind")
        name = f"{t['teacher']} ({options})" if options else t["teacher"]
        extraction = _fmt(t.get("extract_seconds"), ".0f")
        cells = " | ".join(_fmt(t["rank_ceiling"].get(k), ".3f") for k in ranks)
        by_dir = t.get("direction_weighted_cosine") or {}
        best = max(by_dir.items(), key=lambda kv: kv[1]) if by_dir else None
        directional = f"{_fmt(best[1], '.3f')} ({float(best[0]):g})" if best else "–"
        lines.append(f"| {name} | {t['dim']} | {t['map_hw'][0]}×{t['map_hw'][1]} | {extraction} | "
                     f"{_fmt(t['pair_cosine'], '.3f')} | {_fmt(t['mean_view_cosine'], '.3f')} | {directional} | "
                     f"{_fmt(t['views_per_point'], '.1f')} | {cells} |")
    return lines + [""]


def head_ab_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """A same-process A/B of feature-head settings (bench/compare_heads.py)."""
    lines = [f"## Feature-head A/B: `{path.parent.name}`", "",
             (f"**{res['scene']['label']}, simulated teacher.** Each variant trains {res['iterations']} "
              "iterations (seed 0) in one process, one after the other, so their times compare (the ratio "
              "divides by the median of the RGB-only trainings of the same process); then every head's "
              "held-out cosine to its teacher (as the distillation benchmark) and the text queries' 3D and 2D "
              "localization (all kinds of phrase). One training per variant: differences of a few hundredths "
              "in cosine or accuracy are within a run's noise."), "",
             "```", res["command"], "```", "",
             f"- Machine: {_machine(res.get('machine', {}), [])}",
             _code_line(res),
             f"- Results: `{os.path.relpath(path, output.parent)}`", "",
             ("| variant | training (s) | ratio | DINOv2 cosine | label cosine | label cosine, noise-free | "
             "text 3D | text 2D (LERF) | text box IoU |"), "|---" * 9 + "|"]
    for row in res["rows"]:
        cosine, text = row.get("cosine", {}), row.get("text", {}).get("all", {})
        lines.append(f"| {row['variant']} | {_fmt(row['train_seconds'], '.1f')} | {_fmt(row.get('ratio'), '.2f')} | "
                     f"{_fmt(cosine.get('dinov2'), '.3f')} | {_fmt(cosine.get('label'), '.3f')} | "
                     f"{_fmt(cosine.get('label:noise_free'), '.3f')} | {_fmt(text.get('loc3d'), '.3f')} | "
                     f"{_fmt(text.get('loc2d_lerf'), '.3f')} | {_fmt(text.get('box_iou'), '.3f')} |")
    lines += ["", "Variants: " + "; ".join(f"**{row['variant']}** {row['description']}" for row in res["rows"]
                                            if row["variant"] != "rgb") + "."]
    return lines + [""] + [f"- {note}" for note in res.get("notes", [])] + [""]


def pose_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """Camera pose with no initial guess (bench/bench_pose.py), pooled over the runs' views."""
    pooled, runs = res["pooled"], res.get("runs", [])
    n = pooled["stages"]["full"]["n"]
    lines = [f"## Camera pose, no initial guess: `{path.parent.name}`", "",
             (f"**{n} {res.get('views', 'test')} views of {len(runs)} run(s)**, each located from its photo alone "
              "(PROTOCOLS.md: rotation and translation error of the camera-to-world pose, success below both "
              "thresholds, medians over the poses returned). Goals (issue 6): success at 5°/5 cm ≥ 95 %, "
              "median ≤ 1° / 1 cm, ≤ 3 s per image on the 2-core CPU. Seconds per image: the median over views for "
              "the stages; for the robustness and baseline rows the median of the runs' medians."), "",
             "```", res["command"], "```", "",
             f"- Machine: {_machine(res.get('machine', {}), [{'torch_threads': res.get('threads')}])}",
             _code_line(res),
             "- Runs: " + ", ".join(f"`{r.get('run', '?')}`" for r in runs),
             f"- Results: `{os.path.relpath(path, output.parent)}`", "",
             ("| stage | success 5°/5 cm | success 2°/2 cm | median rotation (°) | median translation (cm) | "
              "returned | s / image |"), "|---|---|---|---|---|---|---|"]

    def row(label: str, m: dict[str, Any]) -> str:
        return (f"| {label} | {_fmt(m['success_5deg_5cm'], '.3f')} | {_fmt(m['success_2deg_2cm'], '.3f')} | "
                f"{_fmt(m['median_rot_deg'], '.2f')} | {_fmt(m['median_trans_cm'], '.2f')} | "
                f"{_fmt(m['returned_rate'], '.3f')} | {_fmt(m['seconds_per_image'], '.2f')} |")

    # results from before the matcher was an option (and recorded) used SIFT
    matcher = {"flow": "optical flow", "sift": "SIFT"}.get(res.get("locate_options", {}).get("fine_matcher", "sift"),
                                                          "?")
    labels = {"coarse_regression": "coarse: regression from the global descriptor",
              "coarse_retrieval": "coarse: retrieval (top bank view by layout descriptor)",
              "coarse_pnp": f"coarse + PnP (bank patch matches, then render → {matcher} → PnP rounds)",
              "full": "full (+ photometric refinement)"}
    lines += [row(label, pooled["stages"][k]) for k, label in labels.items() if k in pooled["stages"]]
    lines += [row(f"robustness: {k}", m) for k, m in pooled.get("robustness", {}).items()]
    lines += [row(f"iNeRF baseline from ground truth perturbed by {k.replace('deg_', '°, ').replace('s', ' s')}", m)
              for k, m in pooled.get("baseline", {}).items()]
    lines += ["", "Per run (full method):", "", ("| run | views | success 5°/5 cm | median rotation (°) | "
                                                  "median translation (cm) | s / image | bank views | bank fit (s) |"),
              "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m, fit = r["stages"]["full"], r.get("fit", {})
        lines.append(f"| `{Path(r.get('run', '?')).name}` | {m['n']} | {_fmt(m['success_5deg_5cm'], '.3f')} | "
                     f"{_fmt(m['median_rot_deg'], '.2f')} | {_fmt(m['median_trans_cm'], '.2f')} | "
                     f"{_fmt(m['seconds_per_image'], '.2f')} | {fit.get('bank_views', '?')} | "
                     f"{_fmt((fit.get('fit_seconds') or {}).get('bank'), '.0f')} |")
    if res.get("notes"):
        lines += ["", *(f"- {note}" for note in res["notes"])]
    return lines + [""]


def suite_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """A ``semfield bench`` suite: its own report (:func:`semfield.harness.report.render_report`), one
    heading level down, with the results file named."""
    from semfield.harness.report import render_report

    body = render_report(res).splitlines()
    lines = [f"## Suite `{res['suite']}`: `{path.parent.name}`", ""]
    lines += ["#" + ln if ln.startswith("#") else ln for ln in body[1:]]
    return lines + ["", f"- Results: `{os.path.relpath(path, output.parent)}`", ""]


def _fmt_cell(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def suite_ab_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """Two runs of a suite, trained with ground-truth boxes and with boxes found from the data."""
    before, after = res["before"], res["after"]
    title = res.get("title", "Training boxes from the data")
    b_label, a_label = res.get("labels", ("GT boxes", "from data"))
    boxes_ab = title == "Training boxes from the data"
    lines = [f"## {title}: suite `{res['suite']}` (`{path.parent.name}`)", "",
             "```", res["command"], "```", "",
             (f"- Before: `{before['command']}` (boxes: {before['bounds']}), started {before['started']}, "
             f"{_machine(before['machine'], [])}"),
             (f"- After: `{after['command']}` (boxes: {after['bounds']}), started {after['started']}, "
             f"{_machine(after['machine'], [])}"),
             f"- Results: `{os.path.relpath(path, output.parent)}`",
             *([f"- Note: {res['note']}"] if res.get("note") else []), "",
             ("Means over the scene groups; the tolerance is how much worse the data-derived boxes may be on the "
              "default scenes (issue 23); on rooms they may be no worse at all. ✓ / ✗: met or not."
              if boxes_ab else "Means over the scene groups; the tolerance column is issue 23's (how much worse "
              "the second run may be on the default scenes, rooms no worse at all). ✓ / ✗: met or not."), ""]
    groups = [g for g in res["groups"] if res["groups"][g]]
    head = ("| figure | tolerance | " + " | ".join(f"{g}: {b_label} | {g}: {a_label} | change" for g in groups)
            + " |")
    lines += [head, "|---|---|" + "---|---|---|" * len(groups)]
    for row in res["rows"]:
        cells = []
        for g in groups:
            v = row["groups"].get(g, {})
            change = v.get("change")
            mark = {True: " ✓", False: " ✗", None: ""}[v.get("within_tolerance")]
            cells += [_fmt_cell(v.get("before"), row["format"]), _fmt_cell(v.get("after"), row["format"]),
                      ("n/a" if change is None else f"{change:+{row['format']}}") + mark]
        tol = "" if row["tolerance"] is None else f"{row['tolerance']:g}"
        lines.append(f"| {row['label']} (`{row['key']}`) | {tol} | " + " | ".join(cells) + " |")
    lines += ["", f"Per scene ({b_label} → {a_label}):", "",
              "| figure | " + " | ".join(res["scenes"]) + " |", "|---|" + "---|" * len(res["scenes"])]
    for row in res["rows"]:
        cells = [f"{_fmt_cell(b, row['format'])} → {_fmt_cell(a, row['format'])}"
                 for b, a in (row["per_scene"][n] for n in res["scenes"])]
        lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return lines + [""]


def bounds_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """bench_bounds.py: the boxes found from the data against the ground truth, and on the fox."""
    lines = [f"## Boxes found from the data, on scenes no suite uses: `{path.parent.name}`", "",
             "```", res["command"], "```", "", f"- Machine: {_machine(res.get('machine', {}), [])}",
             f"- Results: `{os.path.relpath(path, output.parent)}`",
             *([f"- Note: {res['note']}"] if res.get("note") else []), ""]
    if res.get("generated"):
        lines += [("| scene | focus IoU with GT | objects ≥ 90 % inside | least object share inside | voxel (mm) | "
                  "voxel with GT box (mm) | outer IoU with room | seconds |"), "|---|---|---|---|---|---|---|---|"]
        for r in res["generated"]:
            lines.append(f"| {r['scene']} | {r['focus_iou_gt']:.2f} | {r['objects_mostly_inside']}/{r['objects']} | "
                         f"{r['objects_inside_min']:.2f} | {r['voxel_mm']:.1f} | {r['gt_voxel_mm']:.1f} | "
                         f"{r['outer_iou_room']:.2f} | {r['seconds']:.1f} |")
        s = res["summary"]
        lines += [(f"| **mean** | {s['focus_iou_gt']:.2f} | {s['objects_mostly_inside']} | {s['objects_inside_min']:.2f} "
                  f"| {s['voxel_mm']:.1f} | {s['gt_voxel_mm']:.1f} | {s['outer_iou_room']:.2f} | {s['seconds']:.1f} |"),
                  ""]
    if res.get("fox"):
        fox = res["fox"]
        lines += [(f"The real fox capture (its {len(fox['cameras'])} training photos that exist, long side "
                  f"{fox['long_side']} px, {fox['iterations']} iterations, held-out every 8th photo):"), "",
                  "| boxes | held-out PSNR (dB) | SSIM | focus voxel (mm) | training s | peak RSS (MiB) |",
                  "|---|---|---|---|---|---|"]
        for mode, run in fox["runs"].items():
            label = "from the data (auto)" if mode == "auto" else "from the cameras alone"
            lines.append(f"| {label} | {run['psnr_test']:.2f} | {run['ssim_test']:.3f} | {run['voxel_mm']:.1f} | "
                         f"{run['train_seconds']:.0f} | {run['peak_rss_mb']:.0f} |")
        lines.append("")
    if (path.parent / "boxes.png").exists():
        lines += [f"![boxes]({os.path.relpath(path.parent / 'boxes.png', output.parent)})", ""]
    return lines


DIAGNOSIS_ROWS = (
    ("2d", "teacher_gt_bilinear", "2D: teacher on the GT test image (bilinear)"),
    ("2d", "field_lookup", "2D: trained head, lookup at the median-depth point (segment_view)"),
    ("2d", "field_rendered", "2D: trained head, volume-rendered"),
    ("2d", "head_fused_lookup", "2D: fused head, lookup at the median-depth point"),
    ("2d", "head_fused_rendered", "2D: fused head, volume-rendered"),
    ("2d", "head_fused_rendered_noise_free", "2D: head fused from the noise-free teacher, rendered"),
    ("3d", "fusion_gtdepth", "3D: OpenScene fusion, GT depth"),
    ("3d", "fusion_gtdepth_noise_free", "3D: OpenScene fusion of the noise-free teacher, GT depth"),
    ("3d", "fusion_fielddepth", "3D: OpenScene fusion, field depth"),
    ("3d", "field_lookup", "3D: trained head, lookup at the GT point"),
    ("3d", "field_rendered_fused", "3D: trained head rendered into the training views, fused"),
    ("3d", "head_fused_lookup", "3D: fused head, lookup at the GT point"),
    ("3d", "head_fused_lookup_noise_free", "3D: head fused from the noise-free teacher, lookup"),
)


def diagnosis_section(res: dict[str, Any], path: Path, output: Path) -> list[str]:
    """diagnose_semantics.py: where the label head loses against its teacher, stage by stage."""
    runs = res["runs"]
    names = [Path(r["run"]).name for r in runs]
    lines = [f"## Semantics, stage by stage: `{path.parent.name}`", "", "```", res["command"], "```", "",
             f"- Machine: {_machine(res.get('machine', {}), [])}",
             f"- Results: `{os.path.relpath(path, output.parent)}`",
             *([f"- Note: {res['note']}"] if res.get("note") else []), "",
             ("mIoU over each scene's label set, label head. \"Trained head\": as 360 iterations leave it; "
              "\"fused head\": the same head after `semfield.train.head_fusion` (how training now ends; "
              "`--set head_fusion.enabled=false` leaves it out), on the same geometry:"), "",
             "| stage | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for group, key, label in DIAGNOSIS_ROWS:
        lines.append(f"| {label} | " + " | ".join(_fmt_cell(r[group].get(key), ".3f") for r in runs) + " |")
    for when in ("before", "after") if any(r.get("text_before") for r in runs) else ():
        lines.append(f"| text 3D names / paraphrases / categories, {when} fusion | " + " | ".join(
            "—" if not r.get(f"text_{when}") else
            " / ".join(_fmt_cell(r[f"text_{when}"][k], ".2f") for k in ("name", "synonym", "category"))
            for r in runs) + " |")
    for when in ("before", "after"):
        lines.append(f"| heatmaps (names), field {when} fusion: precision / components / specks | " + " | ".join(
            " / ".join(_fmt_cell(r[f"coherence_{when}"]["field"][k], ".2f") for k in ("precision", "components",
                                                                                     "specks"))
            for r in runs) + " |")
    lines.append("| heatmaps (names), OpenScene fusion baseline: precision / components / specks | " + " | ".join(
        " / ".join(_fmt_cell(r["coherence_before"]["fusion"][k], ".2f") for k in ("precision", "components", "specks"))
        for r in runs) + " |")
    lines.append("| head fusion seconds | " + " | ".join(_fmt_cell(r.get("fusion_seconds"), ".1f") for r in runs)
                 + " |")
    if any(r.get("fusion_extra_peak_mb") is not None for r in runs):
        lines.append("| head fusion, extra peak memory (MiB) | "
                     + " | ".join(_fmt_cell(r.get("fusion_extra_peak_mb"), ".0f") for r in runs) + " |")
    lines += ["", "Per class (3D IoU; share = the class's share of the GT points):", "",
              "| scene | class | share | fusion, field depth | trained head | fused head |", "|---|---|---|---|---|---|"]
    for name, r in zip(names, runs, strict=True):
        for cls, v in sorted(r["per_class"].items(), key=lambda kv: kv[1]["share"]):
            lines.append(f"| {name} | {cls} | {v['share']:.4f} | {_fmt_cell(v.get('fusion_fielddepth'), '.2f')} | "
                         f"{_fmt_cell(v.get('field_lookup'), '.2f')} | {_fmt_cell(v.get('head_fused_lookup'), '.2f')} |")
    lines.append("")
    return lines


def render(paths: list[Path], output: Path) -> str:
    lines = ["# semfield benchmarks", "",
             "<!-- Generated by bench/make_benchmarks_md.py from bench/results/*/bench.json and results.json: do not edit by hand. -->",
             "",
             ("This file is **generated**: every figure below is read from a `results.json` written by a benchmark "
              "script in `bench/` (see `bench/README.md`). To regenerate everything, run each section's command "
              "and then this script, e.g."), "",
             "```", REGENERATE, "```", "",
             ("Metrics follow `PROTOCOLS.md` (\"Image quality and geometry\", \"Speed and memory\"): PSNR on "
              "held-out views (RGB in [0, 1]), SSIM with an 11×11 Gaussian window, depth abs-rel and RMSE of the "
              "rendered planar median depth (where a ray's accumulated weight reaches 1/2) against ground truth "
              "(full image, and restricted to the table and objects; the expected depth is listed beside it), "
              "whole-process peak RSS, median of the runs."), ""]
    if not paths:
        lines += ["No results yet.", ""]
    for path in paths:
        res = json.loads(path.read_text(encoding="utf-8"))
        stale = stale_scene_note(res)
        if res.get("benchmark") == "semfield bench":
            section = suite_section(res, path, output)
        elif res.get("benchmark") == "train":
            section = train_section(res, path, output)
        elif res.get("benchmark") == "distill":
            section = distill_section(res, path, output)
        elif res.get("benchmark") == "panoptic":
            section = panoptic_section(res, path, output)
        elif res.get("benchmark") == "teacher_consistency":
            section = consistency_section(res, path, output)
        elif res.get("benchmark") == "sweep":
            section = sweep_section(res, path, output)
        elif res.get("benchmark") == "head_ab":
            section = head_ab_section(res, path, output)
        elif res.get("benchmark") == "pose":
            section = pose_section(res, path, output)
        elif res.get("benchmark") == "suite_ab":
            section = suite_ab_section(res, path, output)
        elif res.get("benchmark") == "bounds":
            section = bounds_section(res, path, output)
        elif res.get("benchmark") == "semantics_diagnosis":
            section = diagnosis_section(res, path, output)
        else:
            section = [f"## `{path.parent.name}`", "", f"(unknown benchmark kind {res.get('benchmark')!r})", ""]
        lines += section[:2] + stale + section[2:]  # the warning right under the heading
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-glob", default=DEFAULT_GLOB,
                   help=f"results.json files to include (default {DEFAULT_GLOB}, relative to the repo root)")
    p.add_argument("--suite-glob", default=SUITE_GLOB,
                   help=f"semfield bench results to include (default {SUITE_GLOB}, relative to the repo root)")
    p.add_argument("--output", default="BENCHMARKS.md", help="file to write (default BENCHMARKS.md at the repo root)")
    args = p.parse_args(argv)
    pattern = args.results_glob if os.path.isabs(args.results_glob) else str(REPO / args.results_glob)
    output = Path(args.output)
    if not output.is_absolute():
        output = REPO / output
    suite_pattern = args.suite_glob if os.path.isabs(args.suite_glob) else str(REPO / args.suite_glob)
    suites = sorted(Path(p).resolve() for p in glob.glob(suite_pattern))
    paths = suites + sorted(Path(p).resolve() for p in glob.glob(pattern))
    output.write_text(render(paths, output.resolve()), encoding="utf-8")
    print(f"wrote {output} from {len(paths)} result file(s)")


if __name__ == "__main__":
    main()
