#!/usr/bin/env python
"""Camera pose estimation benchmark: locate held-out photos in a trained run with no initial guess.

    python bench/bench_pose.py --run RUN --out DIR [--views test] [--threads 1] [--no-baseline] [--variants ...]

Per stage (coarse regression, coarse retrieval, coarse + PnP, full) on the chosen views: median rotation /
translation error, success at 5°/5 cm and 2°/2 cm, solver-returned rate, seconds per image (PROTOCOLS.md);
the iNeRF baseline from ground truth perturbed by (30°, 0.5 s) and (100°, 1 s); robustness to another
exposure, occluders and another image size. The coarse model's fit (view bank + regressor) is cached in
``RUN/pose/`` and timed separately (a cached fit reports the seconds it took when it was made).
Writes ``DIR/results.json`` (figures, machine, command) and ``DIR/pose_views.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--views", default="test", choices=("test", "train"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--variants", nargs="*", default=None, help="robustness variants (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N views")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from semfield.atomic import atomic_write_json
    from semfield.export.pictures import error_map, save_picture, side_by_side, stack_rows
    from semfield.field.renderer import render_image
    from semfield.machine import machine_info
    from semfield.pose.evaluate import evaluate_views
    from semfield.pose.locate import LocateOptions
    from semfield.pose.robustness import VARIANTS
    from semfield.run import load_run, load_run_scene
    from semfield.scene.images import load_rgb

    start = time.perf_counter()
    run = load_run(args.run)
    scene = load_run_scene(run)
    frames = scene.split(args.views)[: args.limit]
    opts = LocateOptions()
    variants = tuple(VARIANTS) if args.variants is None else tuple(args.variants)
    result = evaluate_views(run, scene, frames, opts, baseline=not args.no_baseline, variants=variants,
                            progress=True, keep_results=True)
    located = result.pop("results")
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
    args.out.mkdir(parents=True, exist_ok=True)
    if rows:
        save_picture(args.out / "pose_views.png", stack_rows(rows))
    result["per_view"] = [{"name": f.name, **r.to_json()} for f, r in zip(frames, located)]
    result["machine"] = machine_info()  # torch_threads: --threads
    result["command"] = " ".join(["python", *sys.argv])
    result["views"] = args.views
    result["wall_seconds"] = time.perf_counter() - start
    atomic_write_json(args.out / "results.json", result)
    stages = result["stages"]
    print(f"{'stage':<18} {'succ5/5':>8} {'succ2/2':>8} {'med rot°':>9} {'med cm':>8} {'returned':>9} {'s/img':>7}")
    for name in ("coarse_regression", "coarse_retrieval", "coarse_pnp", "full"):
        m = stages[name]
        print(f"{name:<18} {m['success_5deg_5cm']:8.3f} {m['success_2deg_2cm']:8.3f} {m['median_rot_deg']:9.3f} "
              f"{m['median_trans_cm']:8.2f} {m['returned_rate']:9.3f} {m['seconds_per_image']:7.2f}")
    for group in ("robustness", "baseline"):
        for name, m in (result.get(group) or {}).items():
            if isinstance(m, dict) and "success_5deg_5cm" in m:
                print(f"{group + ':' + name:<18} {m['success_5deg_5cm']:8.3f} {m['success_2deg_2cm']:8.3f} "
                      f"{m['median_rot_deg']:9.3f} {m['median_trans_cm']:8.2f} {m['returned_rate']:9.3f} "
                      f"{m['seconds_per_image']:7.2f}")
    print(json.dumps(result["fit"]))
    print(json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
