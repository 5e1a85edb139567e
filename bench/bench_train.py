#!/usr/bin/env python
"""Training benchmark: quality-vs-time curves, final held-out metrics, time and peak memory per run.

    python bench/bench_train.py --out bench/results/train_default --runs 3 --budget 120

What it does (see bench/README.md):

- generates the scene into ``OUT/scene`` (``--preset``, ``--seed``), or reuses it when it is there (it must
  have been made with the same preset and seed);
- runs ``--runs`` trainings, each in its own Python subprocess (so time and peak RSS are per run, whole
  process: import, scene loading, training, evaluation), with the default ``TrainConfig`` except
  ``max_seconds = --budget`` and any ``--set key=value`` overrides (dotted keys, JSON values; applied last,
  so ``--set max_seconds=...`` or ``--set iterations=...`` win). Run ``i`` uses training seed ``seed + i``;
- during training a callback runs after every iteration and, each time another ``--eval-every-seconds`` of
  *training* time has passed, evaluates all test views with ``config.render`` (the training sampler). The
  trainer excludes callback time from ``train_seconds`` and from the ``max_seconds`` budget. One more
  ``config.render`` point is taken when training stops, then the final evaluation renders all test views
  with ``config.eval_render`` (pictures in ``OUT/runs/run_XX``);
- writes ``OUT/results.json``, ``OUT/curve.png`` and prints a table. Summary figures are medians over runs.

Peak RSS of a run is ``ru_maxrss`` of its subprocess, read by the parent with ``os.wait4``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CURVE_COLUMNS = ("train_seconds", "iterations", "psnr", "ssim", "depth_abs_rel", "depth_abs_rel_fg",
                 "depth_rmse")
FINAL_METRICS = ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "depth_rmse_test",
                 "depth_abs_rel_expected_test", "depth_abs_rel_fg_expected_test")
RUN_FIGURES = FINAL_METRICS + ("train_seconds", "iterations", "peak_rss_mb", "peak_gpu_mb", "wall_seconds",
                                "eval_seconds")
# Targets of the training issue: (metric, comparison, value).
TARGETS = {"psnr_test": (">=", 26.0), "depth_abs_rel_fg_test": ("<=", 0.08), "peak_rss_mb": ("<=", 4096.0),
           "train_seconds": ("<=", 120.0)}


# ----- helpers ----------------------------------------------------------------------------------------
def _parse_sets(items: list[str]) -> dict[str, Any]:
    from semfield.settings import parse_assignment

    return dict(parse_assignment(s) for s in items)


def build_config(train_seed: int, budget: float, sets: list[str]):
    """Default TrainConfig, ``max_seconds = budget``, then the ``--set`` overrides."""
    from semfield.settings import apply_overrides
    from semfield.train.config import TrainConfig

    overrides = {"seed": train_seed, "max_seconds": float(budget)}
    overrides.update(_parse_sets(sets))
    return apply_overrides(TrainConfig(), overrides)


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """The machine facts every results.json records (:func:`semfield.machine.machine_info`)."""
    from semfield.machine import machine_info as info

    return info(device)


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all CPU time that was busy during ``seconds`` (from /proc/stat), while this process sleeps:
    how much other processes would compete with a run started now."""
    def read() -> list[int] | None:
        try:
            return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None

    a = read()
    time.sleep(seconds)
    b = read()
    if a is None or b is None:
        return None
    delta = [y - x for x, y in zip(a, b)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
    idle = delta[3] + delta[4]
    return (total - idle) / total if total > 0 else None


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False,
                                  timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(status)}


def command_line() -> str:
    """The command as typed, with the script path relative to the repository root when it is inside it."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = str(script)
    return " ".join(["python", shlex.quote(shown), *map(shlex.quote, sys.argv[1:])])


def _fmt(value: Any, spec: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def median_or_none(values: list[Any]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(statistics.median(vals)) if vals else None


# ----- scene ------------------------------------------------------------------------------------------
def ensure_scene(scene_dir: Path, preset: str, seed: int) -> Path:
    """``scene_dir/transforms.json``, generating the scene first when it is missing."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    transforms = scene_dir / "transforms.json"
    if transforms.exists():
        gt_file = scene_dir / "scene.json"
        if gt_file.exists():
            gt = json.loads(gt_file.read_text(encoding="utf-8"))
            if (gt.get("preset"), gt.get("seed")) != (preset, seed):
                sys.exit(f"bench_train: {scene_dir} holds preset {gt.get('preset')!r} seed {gt.get('seed')}, "
                         f"not preset {preset!r} seed {seed}; delete it or use another --out")
            from semfield.data.generate.presets import GENERATOR_VERSION, is_current_scene

            if not is_current_scene(gt):
                sys.exit(f"bench_train: {scene_dir} was made by scene generator version "
                         f"{gt.get('generator_version', 1)}, not {GENERATOR_VERSION} (it renders other images); "
                         "delete it or use another --out")
        print(f"reusing scene {scene_dir}", flush=True)
        return transforms
    from semfield.data.generate import make_scene

    print(f"generating scene {scene_dir} (preset {preset}, seed {seed}) ...", flush=True)
    start = time.perf_counter()
    path = make_scene(scene_dir, preset=preset, seed=seed, progress=False)
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)
    return path


def scene_description(transforms: Path, preset: str, seed: int) -> dict[str, Any]:
    from semfield.scene.load import load_scene

    scene = load_scene(transforms)
    train, test = scene.split("train"), scene.split("test")
    k = (test or train)[0].intrinsics
    label = (f"{preset} generated scene, seed {seed}, {len(train)} train / {len(test)} test views at "
             f"{k.width}\u00d7{k.height}")
    gt_file = Path(transforms).parent / "scene.json"
    gt = json.loads(gt_file.read_text(encoding="utf-8")) if gt_file.exists() else {}
    return {"preset": preset, "seed": seed, "n_train": len(train), "n_test": len(test), "width": k.width,
            "height": k.height, "path": str(transforms), "label": label,
            "generator_version": gt.get("generator_version", 1 if gt else None)}


# ----- one run (child process) ------------------------------------------------------------------------
def _curve_point(trainer, ev: dict[str, Any]) -> list[Any]:
    return [float(trainer.train_seconds), int(trainer.iteration), ev["psnr_test"], ev["ssim_test"],
            ev["depth_abs_rel_test"], ev["depth_abs_rel_fg_test"], ev["depth_rmse_test"]]


def child_main(args: argparse.Namespace) -> None:
    import torch

    from semfield.scene.load import load_scene
    from semfield.train.evaluate import evaluate_views
    from semfield.train.trainer import Trainer

    wall_start = time.perf_counter()
    config = build_config(args.train_seed, args.budget, args.set)
    scene = load_scene(Path(args.scene).absolute())
    test = scene.split("test")
    run_dir = Path(args.run_dir)
    curve: list[list[Any]] = []
    eval_seconds = [0.0]
    next_eval = [float(args.eval_every_seconds)]
    tag = f"[run {args.run_index}]"

    def evaluate_now(trainer) -> None:
        start = time.perf_counter()
        ev = evaluate_views(trainer.field, scene, test, config.render)
        eval_seconds[0] += time.perf_counter() - start
        curve.append(_curve_point(trainer, ev))
        print(f"{tag} t={trainer.train_seconds:6.1f}s it={trainer.iteration:5d}  PSNR {_fmt(ev['psnr_test'], '.2f')}"
              f"  SSIM {_fmt(ev['ssim_test'], '.3f')}  fg abs-rel {_fmt(ev['depth_abs_rel_fg_test'], '.4f')}"
              f"  (eval {time.perf_counter() - start:.1f}s)", flush=True)

    def callback(trainer) -> None:
        # Called after every iteration; evaluates only when the next eval time is reached, so the points
        # fall every ~eval_every_seconds of training time whatever the iteration rate (which changes with
        # coarse-to-fine). Time spent here is excluded from train_seconds by the trainer.
        if args.eval_every_seconds > 0 and trainer.train_seconds >= next_eval[0]:
            evaluate_now(trainer)
            while next_eval[0] <= trainer.train_seconds:
                next_eval[0] += args.eval_every_seconds

    trainer = Trainer(scene, run_dir, config)
    trained = trainer.train(progress=False, callback=callback, callback_every=1)
    if not curve or curve[-1][1] != trainer.iteration:
        evaluate_now(trainer)  # the curve's last point: where training stopped, same sampler as the others
    rss_before_final = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    start = time.perf_counter()
    final = evaluate_views(trainer.field, scene, test, config.eval_render, out_dir=run_dir)
    final_seconds = time.perf_counter() - start
    result = {
        "train_seed": args.train_seed,
        "iterations": int(trained["iterations"]),
        "train_seconds": float(trained["train_seconds"]),
        "stopped_by": "max_seconds" if trained["iterations"] < config.iterations else "iterations",
        "curve": curve,
        "final": {k: final[k] for k in FINAL_METRICS},
        "final_render_seconds_per_view": final["render_seconds_per_view"],
        "final_eval_seconds": final_seconds,
        "curve_eval_seconds": eval_seconds[0],
        "eval_seconds": eval_seconds[0] + final_seconds,
        "train_psnr_ema": trained.get("train_psnr_ema"),
        "schedule_iterations": config.iterations,
        "peak_rss_mb_before_final_eval": rss_before_final,
        "peak_rss_mb_self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "child_wall_seconds": time.perf_counter() - wall_start,
        "torch_threads": torch.get_num_threads(),
        "peak_gpu_mb": (torch.cuda.max_memory_allocated() / 2**20 if config.device.startswith("cuda")
                        else None),
        "config": config.to_dict(),
        "psnr_by_class": final["psnr_by_class_test"],
        "per_view": final["per_view"],
        "pictures": final["pictures"],
    }
    Path(args.result).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"{tag} final ({trained['iterations']} it, {trained['train_seconds']:.1f}s): "
          f"PSNR {_fmt(final['psnr_test'], '.2f')}  fg abs-rel {_fmt(final['depth_abs_rel_fg_test'], '.4f')}",
          flush=True)


# ----- parent -----------------------------------------------------------------------------------------
def run_child(index: int, args: argparse.Namespace, transforms: Path, out: Path) -> dict[str, Any]:
    run_dir = out / "runs" / f"run_{index:02d}"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a fresh run each time: the trainer would resume from an old checkpoint
    run_dir.mkdir(parents=True)
    result_file = run_dir / "bench_run.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--scene", str(transforms),
           "--run-dir", str(run_dir), "--result", str(result_file), "--run-index", str(index),
           "--train-seed", str(args.seed + index), "--budget", str(args.budget),
           "--eval-every-seconds", str(args.eval_every_seconds)]
    for s in args.set:
        cmd += ["--set", s]
    busy = cpu_busy_fraction()
    if busy is not None and busy > 0.1:
        print(f"warning: {100 * busy:.0f}% of the CPU was busy with other processes just before run {index}: "
              "the timings will be pessimistic", flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    except KeyboardInterrupt:
        proc.wait()
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_train: run {index} failed with exit status {proc.returncode}")
    result = json.loads(result_file.read_text(encoding="utf-8"))
    result.update({"run": index, "run_dir": str(run_dir.relative_to(out)), "wall_seconds": wall,
                   "cpu_busy_before_run": busy,
                   "peak_rss_mb": usage.ru_maxrss / 1024.0})
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for key in RUN_FIGURES:
        values = [r["final"].get(key) if key in FINAL_METRICS else r.get(key) for r in runs]
        summary[key] = median_or_none(values)
    regions = [r["psnr_by_class"] for r in runs if r.get("psnr_by_class")]
    if regions:  # held-out PSNR and error shares per ground-truth region, medians over runs
        summary["psnr_by_class"] = {
            region: {k: median_or_none([r.get(region, {}).get(k) for r in regions])
                     for k in ("psnr", "pixel_share", "error_share")}
            for region in regions[0]}
    return summary


def plot_curves(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    cols = results["curve_columns"]
    t_i, p_i, d_i = cols.index("train_seconds"), cols.index("psnr"), cols.index("depth_abs_rel_fg")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, run in enumerate(results["runs"]):
        c = colors[n % len(colors)]
        t = [p[t_i] for p in run["curve"]]
        for ax, idx, key in ((ax1, p_i, "psnr_test"), (ax2, d_i, "depth_abs_rel_fg_test")):
            pts = [(x, p[idx]) for x, p in zip(t, run["curve"]) if p[idx] is not None]
            if pts:
                ax.plot(*zip(*pts), "o-", color=c, ms=3, label=f"run {run['run']} (training sampler)")
            if run["final"].get(key) is not None:
                ax.plot([run["train_seconds"]], [run["final"][key]], "*", color=c, ms=12,
                        label=f"run {run['run']} final (eval sampler)")
    targets = results["targets"]
    ax1.axhline(targets["psnr_test"][1], ls="--", color="gray", label=f"target {targets['psnr_test'][1]:g} dB")
    ax2.axhline(targets["depth_abs_rel_fg_test"][1], ls="--", color="gray",
                label=f"target {targets['depth_abs_rel_fg_test'][1]:g}")
    t_max = max([results["settings"]["budget_seconds"]] + [p[t_i] for r in results["runs"] for p in r["curve"]])
    x_max = 1.05 * t_max
    for ax in (ax1, ax2):
        if targets["train_seconds"][1] <= x_max:
            ax.axvline(targets["train_seconds"][1], ls=":", color="gray", lw=1,
                       label=f"time target {targets['train_seconds'][1]:g} s")
        ax.set_xlabel("training seconds (evaluation excluded)")
        ax.grid(alpha=0.3)
        ax.set_xlim(0, x_max)
    ax1.set_ylabel("held-out PSNR (dB)")
    ax1.set_title("PSNR, all test views")
    ax2.set_ylabel("depth abs-rel, table + objects")
    ax2.set_title("foreground depth abs-rel (log scale)")
    ax2.set_yscale("log")
    ax2.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax2.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%.2g"))
    ax1.legend(fontsize=7, loc="best")
    ax2.legend(fontsize=7, loc="best")
    m = results["machine"]
    fig.suptitle(f"{results['scene']['label']} — {m['cpu']}, {m['cores']} cores, torch {m['torch']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(results: dict[str, Any]) -> None:
    head = (f"{'run':>6} {'iters':>6} {'train s':>8} {'wall s':>7} {'PSNR':>6} {'SSIM':>6} {'absrel':>7} "
            f"{'fg absrel':>9} {'RMSE':>6} {'RSS MB':>7}")
    print(head)
    print("-" * len(head))

    def row(name: str, f: dict[str, Any]) -> None:
        print(f"{name:>6} {_fmt(f['iterations'], '6.0f')} {_fmt(f['train_seconds'], '8.1f')} "
              f"{_fmt(f['wall_seconds'], '7.1f')} {_fmt(f['psnr_test'], '6.2f')} {_fmt(f['ssim_test'], '6.3f')} "
              f"{_fmt(f['depth_abs_rel_test'], '7.4f')} {_fmt(f['depth_abs_rel_fg_test'], '9.4f')} "
              f"{_fmt(f['depth_rmse_test'], '6.3f')} {_fmt(f['peak_rss_mb'], '7.0f')}")

    for r in results["runs"]:
        row(str(r["run"]), {**r["final"], **{k: r[k] for k in ("iterations", "train_seconds", "wall_seconds",
                                                               "peak_rss_mb")}})
    row("median", results["summary"])
    t = results["targets"]
    print(f"targets: PSNR >= {t['psnr_test'][1]:g} dB, fg abs-rel <= {t['depth_abs_rel_fg_test'][1]:g}, "
          f"RSS <= {t['peak_rss_mb'][1]:g} MB, training <= {t['train_seconds'][1]:g} s")


def parent_main(args: argparse.Namespace) -> None:
    out = Path(args.out).absolute()
    out.mkdir(parents=True, exist_ok=True)
    device = build_config(args.seed, args.budget, args.set).device  # a bad --set fails now, before any work
    command = command_line()
    transforms = ensure_scene(out / "scene", args.preset, args.seed)
    scene = scene_description(transforms, args.preset, args.seed)
    scene["path"] = str((out / "scene").relative_to(out))
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    runs = []
    for i in range(args.runs):
        print(f"=== run {i + 1}/{args.runs} (training seed {args.seed + i}, budget {args.budget:g} s) ===",
              flush=True)
        runs.append(run_child(i, args, transforms, out))
    results = {
        "benchmark": "train",
        "command": command,
        "cwd": str(Path.cwd()),
        "started": started,
        "git": git_info(),
        "machine": machine_info(device),
        "scene": scene,
        "settings": {"runs": args.runs, "budget_seconds": args.budget, "eval_every_seconds": args.eval_every_seconds,
                     "set": args.set, "train_seeds": [args.seed + i for i in range(args.runs)],
                     "curve_render": "config.render (training sampler), all test views",
                     "final_render": "config.eval_render, all test views"},
        "config": runs[0]["config"] if runs else None,
        "targets": TARGETS,
        "curve_columns": list(CURVE_COLUMNS),
        "summary_is": "median over runs",
        "summary": summarize(runs),
        "runs": runs,
        "curve_png": "curve.png",
    }
    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    plot_curves(results, out / "curve.png")
    print()
    print(f"{scene['label']}; {args.runs} run(s), budget {args.budget:g} s")
    print_table(results)
    print(f"wrote {out / 'results.json'} and {out / 'curve.png'}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="output folder (scene/, runs/, results.json, curve.png)")
    p.add_argument("--runs", type=int, default=3, help="independent trainings, one subprocess each (default 3)")
    p.add_argument("--budget", type=float, default=120.0, help="training seconds per run: max_seconds (default 120)")
    p.add_argument("--preset", default="default", help="scene preset: tiny | default | room (default: default)")
    p.add_argument("--seed", type=int, default=0, help="scene seed; run i trains with seed + i (default 0)")
    p.add_argument("--eval-every-seconds", type=float, default=20.0,
                   help="training seconds between curve evaluations; 0 = final only (default 20)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="TrainConfig override, dotted key, JSON value (repeatable), e.g. --set batch_rays=2048")
    # internal: one run in this process
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scene", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--run-index", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--train-seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child_main(args)
        return
    if not args.out:
        p.error("--out is required")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    from semfield.errors import SemfieldError

    try:
        parent_main(args)
    except SemfieldError as exc:
        sys.exit(f"bench_train: error: {exc}")


if __name__ == "__main__":
    main()
