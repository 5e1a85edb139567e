#!/usr/bin/env python
"""Camera pose estimation benchmark: locate held-out photos in trained runs with no initial guess.

    python bench/bench_pose.py --run RUN [RUN ...] --out DIR [--views test] [--threads 2] [--no-baseline]
                               [--variants ...] [--limit N]

Per stage (coarse regression, coarse retrieval, coarse + PnP, full) on the chosen views of every run: median
rotation / translation error, success at 5°/5 cm and 2°/2 cm, solver-returned rate, seconds per image
(PROTOCOLS.md), per run and pooled over all runs' views; the iNeRF baseline from ground truth perturbed by
(30°, 0.5 s) and (100°, 1 s); robustness to another exposure, occluders and another image size. Each run's
coarse model (view bank + regressor) is fitted once, cached in ``RUN/pose/`` and timed separately (a cached
fit reports the seconds it took when it was made). Writes ``DIR/results.json`` (``"benchmark": "pose"``:
figures, machine, command, code) and ``DIR/pose_views.png`` (the first run's first views).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when imported from elsewhere
from bench_train import command_line, git_info, machine_info

STAGES = ("coarse_regression", "coarse_retrieval", "coarse_pnp", "full")


def pooled_metrics(parts: list[dict[str, Any]], seconds: list[float]) -> dict[str, Any]:
    """Pose figures over the views of several runs, from each run's per-view errors.

    Args:
        parts: :func:`semfield.eval.pose.pose_metrics` results (``rot_deg`` and ``trans_cm`` per view, None
            where nothing was returned).
        seconds: seconds per image of every view (for the median).
    Returns:
        ``n``, ``returned_rate``, ``success_5deg_5cm``, ``success_2deg_2cm``, ``median_rot_deg``,
        ``median_trans_cm`` (medians over returned poses), ``seconds_per_image``.
    """
    rot = [r for p in parts for r in p["rot_deg"]]
    trans = [t for p in parts for t in p["trans_cm"]]
    returned = [(r, t) for r, t in zip(rot, trans, strict=True) if r is not None and t is not None]
    n = len(rot)

    def success(deg: float, cm: float) -> float:
        return sum(r < deg and t < cm for r, t in returned) / n if n else float("nan")

    def median(xs: list[float]) -> float:
        return float(statistics.median(xs)) if xs else float("nan")

    return {"n": n, "returned_rate": len(returned) / n if n else float("nan"),
            "success_5deg_5cm": success(5.0, 5.0), "success_2deg_2cm": success(2.0, 2.0),
            "median_rot_deg": median([r for r, _ in returned]), "median_trans_cm": median([t for _, t in returned]),
            "seconds_per_image": median(seconds)}


def pool_runs(runs: list[dict[str, Any]], variants: tuple[str, ...]) -> dict[str, Any]:
    """Figures over all views of ``runs`` (each an :func:`semfield.pose.evaluate.evaluate_views` result with
    ``per_view``). Stage times are medians over views; the variants' and baseline's runs keep no per-view
    times, so theirs are medians of the runs' medians (``seconds_pooling`` says so)."""
    from semfield.pose.evaluate import STAGE_SECONDS

    pooled: dict[str, Any] = {"stages": {}, "robustness": {}, "baseline": {},
                              "seconds_pooling": {"stages": "median over views",
                                                  "robustness, baseline": "median of the runs' medians"}}
    for name in STAGES:
        seconds = [sum(v["seconds"][k] for k in STAGE_SECONDS[name]) for r in runs for v in r["per_view"]]
        pooled["stages"][name] = pooled_metrics([r["stages"][name] for r in runs], seconds)
    for name in variants:
        pooled["robustness"][name] = pooled_metrics([r["robustness"][name] for r in runs],
                                                    [r["robustness"][name]["seconds_per_image"] for r in runs])
    for key, m in (runs[0].get("baseline") or {}).items():
        if isinstance(m, dict) and "rot_deg" in m:
            pooled["baseline"][key] = pooled_metrics([r["baseline"][key] for r in runs],
                                                     [r["baseline"][key]["seconds_per_image"] for r in runs])
    pooled["pnp_ok_rate"] = statistics.mean(r["stages"]["pnp_ok_rate"] for r in runs)
    pooled["photometric_rate"] = statistics.mean(r["stages"]["photometric_rate"] for r in runs)
    return pooled


def _pictures(run, frames, located, opts) -> list:
    import torch

    from semfield.export.pictures import error_map, side_by_side
    from semfield.field.renderer import render_image
    from semfield.scene.images import load_rgb

    rows = []
    for frame, res in list(zip(frames, located))[:4]:
        photo = load_rgb(frame.image_path)
        tiles, labels = [photo], [frame.name.split("/")[-1]]
        for stage in ("regression", "retrieval", "refined"):
            pose = res.stages[stage]
            if pose is None:
                continue
            with torch.no_grad():
                img = render_image(run.field, torch.as_tensor(pose, dtype=torch.float32), frame.intrinsics,
                                   opts.render)["rgb"].numpy()
            tiles.append(img)
            labels.append(stage)
        tiles.append(error_map(tiles[-1], photo, vmax=0.5))
        labels.append("|photo - final|")
        rows.append(side_by_side(tiles, labels))
    return rows


def _print_row(name: str, m: dict[str, Any]) -> None:
    print(f"{name:<26} {m['success_5deg_5cm']:8.3f} {m['success_2deg_2cm']:8.3f} {m['median_rot_deg']:9.3f} "
          f"{m['median_trans_cm']:8.2f} {m['returned_rate']:9.3f} {m['seconds_per_image']:7.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path, nargs="+")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--views", default="test", choices=("test", "train"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--variants", nargs="*", default=None, help="robustness variants (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N views of each run")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from semfield.atomic import atomic_write_json
    from semfield.errors import SemfieldError
    from semfield.export.pictures import save_picture, stack_rows
    from semfield.pose.evaluate import evaluate_views
    from semfield.pose.locate import LocateOptions
    from semfield.pose.robustness import VARIANTS
    from semfield.run import load_run, load_run_scene, read_run_config

    start = time.perf_counter()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    git = git_info()  # before this run writes anything into the tree
    opts = LocateOptions()
    variants = tuple(VARIANTS) if args.variants is None else tuple(args.variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"bench_pose: unknown variant(s) {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    try:  # every run folder is checked before the first run is benchmarked (its field is loaded in turn)
        for run_dir in args.run:
            read_run_config(run_dir)
    except SemfieldError as exc:
        sys.exit(f"bench_pose: {exc}")
    runs: list[dict[str, Any]] = []
    rows = []
    for run_dir in args.run:
        try:
            run = load_run(run_dir)
            scene = load_run_scene(run)
        except SemfieldError as exc:
            sys.exit(f"bench_pose: {exc}")
        frames = scene.split(args.views)[: args.limit]
        result = evaluate_views(run, scene, frames, opts, baseline=not args.no_baseline, variants=variants,
                                progress=True, keep_results=True)
        located = result.pop("results")
        if not rows:
            rows = _pictures(run, frames, located, opts)
        result["per_view"] = [{"name": f.name, **r.to_json()} for f, r in zip(frames, located)]
        result["run"] = str(run_dir)
        result["generator_version"] = (scene.ground_truth or {}).get("generator_version", 1 if scene.ground_truth else None)
        runs.append(result)
        print(f"{run_dir}: " + ", ".join(f"{k} {result['summary'][k]:.3g}" for k in result["summary"]), flush=True)
    pooled = pool_runs(runs, variants)
    args.out.mkdir(parents=True, exist_ok=True)
    if rows:
        save_picture(args.out / "pose_views.png", stack_rows(rows))
    versions = {r["generator_version"] for r in runs}
    results = {"benchmark": "pose", "command": command_line(), "started": started, "git": git,
               "generator_version": versions.pop() if len(versions) == 1 else None,
               "machine": machine_info("cpu"), "views": args.views, "threads": args.threads,
               "locate_options": {k: v for k, v in vars(opts).items() if isinstance(v, int | float | bool | str)},
               "pooled": pooled, "runs": runs, "wall_seconds": time.perf_counter() - start}
    atomic_write_json(args.out / "results.json", results)
    print(f"{'pooled over ' + str(pooled['stages']['full']['n']) + ' views':<26} {'succ5/5':>8} {'succ2/2':>8} "
          f"{'med rot°':>9} {'med cm':>8} {'returned':>9} {'s/img':>7}")
    for name in STAGES:
        _print_row(name, pooled["stages"][name])
    for group in ("robustness", "baseline"):
        for name, m in pooled[group].items():
            _print_row(f"{group}:{name}", m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
