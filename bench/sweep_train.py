#!/usr/bin/env python
"""Training-settings sweep: the same scene trained with several variants of the settings, several seeds
each, several trainings at a time; one table of held-out figures per variant.

    python bench/sweep_train.py --scene bench/results/train_default/scene --out /tmp/sweep \\
        --variants bench/sweeps/quality.json --seeds 0 1 --parallel 4 --set device=cuda

``--variants`` is a JSON object: variant name -> list of ``key=value`` settings (as ``--set`` of
bench_train.py; ``[]`` is the default settings). ``--set`` applies to every variant (before its own).
Each training is one ``bench_train.py --child`` process (the same training and final evaluation as the
training benchmark, without the curve), so figures agree with BENCHMARKS.md. Running several at a time
suits a GPU (a 4096-ray batch leaves it mostly idle); on the 2-core CPU use ``--parallel 1``, and there
compare quality at a fixed number of iterations, not time (the budget default is large so that the
schedule, not the clock, ends each run).

Writes ``OUT/results.json`` (command, machine, code version, scene, every run's figures; rewritten as runs
finish, so an interrupted sweep keeps what it measured; bench/make_benchmarks_md.py turns it into a section
of BENCHMARKS.md) and ``OUT/sweep.md`` (mean over seeds per variant, with the spread).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

BENCH_TRAIN = Path(__file__).resolve().parent / "bench_train.py"
REGIONS = ("table", "objects", "floor", "wall")


def run_one(scene: Path, out: Path, name: str, seed: int, sets: list[str], budget: float,
            keep_checkpoint: bool = False) -> dict:
    """One training of variant ``name`` with training seed ``seed``; its figures (or the failure). The
    checkpoint (0.5-2 GB) is deleted unless ``keep_checkpoint``: a sweep of forty runs would fill a disk."""
    run_dir = out / "runs" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.s{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    result = run_dir / "bench_run.json"
    cmd = [sys.executable, str(BENCH_TRAIN), "--child", "--scene", str(scene / "transforms.json"),
           "--run-dir", str(run_dir), "--result", str(result), "--run-index", "0", "--train-seed", str(seed),
           "--budget", str(budget), "--eval-every-seconds", "1e9"]
    for s in sets:
        cmd += ["--set", s]
    began = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    row = {"variant": name, "seed": seed, "set": sets, "wall_seconds": time.perf_counter() - began}
    if not keep_checkpoint:
        for f in run_dir.glob("checkpoint.*"):
            f.unlink()
    if proc.returncode != 0 or not result.exists():
        row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return row
    r = json.loads(result.read_text(encoding="utf-8"))
    row.update({k: r["final"].get(k) for k in ("psnr_test", "ssim_test", "depth_abs_rel_test",
                                               "depth_abs_rel_fg_test")})
    row.update({"iterations": r["iterations"], "train_seconds": r["train_seconds"]})
    row["psnr_by_class"] = {k: v["psnr"] for k, v in (r.get("psnr_by_class") or {}).items()}
    return row


def table(rows: list[dict], order: list[str]) -> str:
    """Markdown: per variant, mean PSNR (min–max over seeds), mean region PSNRs, fg abs-rel, iterations, s."""
    lines = ["| variant | runs | PSNR mean | PSNR range | " + " | ".join(REGIONS) + " | fg abs-rel | it | train s |",
             "|---" * (7 + len(REGIONS)) + "|"]
    for name in order:
        ok = [r for r in rows if r["variant"] == name and "error" not in r]
        bad = [r for r in rows if r["variant"] == name and "error" in r]
        if not ok:
            if bad:
                lines.append(f"| {name} | failed: {bad[0]['error'][0][:80]} |")
            continue
        def mean(key: str, runs: list[dict] = ok) -> float:
            return statistics.fmean(r[key] for r in runs)

        p = [r["psnr_test"] for r in ok]
        regions = " | ".join(f"{statistics.fmean([r['psnr_by_class'].get(g, float('nan')) for r in ok]):.2f}"
                             for g in REGIONS)
        lines.append(f"| {name} | {len(ok)} | {mean('psnr_test'):.2f} | {min(p):.2f}–{max(p):.2f} | {regions} | "
                     f"{mean('depth_abs_rel_fg_test'):.4f} | {mean('iterations'):.0f} | {mean('train_seconds'):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scene", required=True, help="scene folder (holding transforms.json)")
    p.add_argument("--out", required=True, help="output folder (runs/, results.json, sweep.md)")
    p.add_argument("--variants", required=True, help="JSON file: variant name -> list of key=value settings")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    p.add_argument("--parallel", type=int, default=1, help="trainings at a time (default 1)")
    p.add_argument("--budget", type=float, default=1e6, help="max_seconds per training (default: none)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="setting for every variant")
    args = p.parse_args(argv)
    scene, out = Path(args.scene).absolute(), Path(args.out).absolute()
    if not (scene / "transforms.json").is_file():
        sys.exit(f"sweep_train: {scene}: no transforms.json")
    try:
        variants = json.loads(Path(args.variants).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        sys.exit(f"sweep_train: {args.variants}: {exc}")
    if not isinstance(variants, dict) or not all(isinstance(v, list) for v in variants.values()):
        sys.exit(f"sweep_train: {args.variants}: expected an object of name -> list of key=value strings")
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(BENCH_TRAIN.parent))
    import bench_train

    from semfield.atomic import atomic_write_json, atomic_write_text
    from semfield.errors import SemfieldError

    try:
        device = bench_train.build_config(0, args.budget, args.set).device  # a bad --set fails before any work
        for sets in variants.values():
            bench_train.build_config(0, args.budget, args.set + sets)
    except SemfieldError as exc:
        sys.exit(f"sweep_train: {exc}")
    gt = json.loads((scene / "scene.json").read_text(encoding="utf-8")) if (scene / "scene.json").exists() else {}
    header = {"benchmark": "sweep", "command": bench_train.command_line(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "git": bench_train.git_info(), "machine": bench_train.machine_info(device),
              "scene": bench_train.scene_description(scene / "transforms.json", gt.get("preset"), gt.get("seed")),
              "set": args.set, "seeds": args.seeds, "parallel": args.parallel, "variants": variants}
    jobs = [(name, seed, args.set + sets) for seed in args.seeds for name, sets in variants.items()]
    rows: list[dict] = []
    with ThreadPoolExecutor(max_workers=max(1, args.parallel)) as pool:
        futures = [pool.submit(run_one, scene, out, n, s, sets, args.budget,
                               args.keep_checkpoints) for n, s, sets in jobs]
        for fut in as_completed(futures):
            row = fut.result()
            rows.append(row)
            shown = row.get("error") or f"PSNR {row['psnr_test']:.2f} in {row['train_seconds']:.1f} s"
            print(f"[{len(rows)}/{len(jobs)}] {row['variant']} seed {row['seed']}: {shown}", flush=True)
            atomic_write_json(out / "results.json", {**header, "rows": rows})
            atomic_write_text(out / "sweep.md", table(rows, list(variants)))
    print((out / "sweep.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
