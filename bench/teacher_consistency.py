#!/usr/bin/env python
"""Teacher consistency: the most a view-independent feature head could reach against each teacher.

    python bench/teacher_consistency.py --out bench/results/teacher_consistency --scene bench/results/distill_default/scene \\
        --cache bench/results/distill_default/runs/feature_cache

For each teacher (default: the distillation benchmark's, DINOv2 and the simulated label teacher, and DINOv2
with test-time averaging over the mirrored image, two sub-patch shifts per axis, and both) it extracts
(or reads from ``--cache``) the teacher's maps of every training and test image of a generated scene, then
with the scene's ground-truth depth (semfield.eval.teacher_consistency):

- **cross-view consistency**: every cell centre of a test view is lifted to 3D and looked up in each
  training view that sees it; ``pair_cosine`` compares the test view's feature with one training view's,
  ``mean_view_cosine`` with the mean over the training views that see it (what a head fitted with a squared
  loss converges to: the ceiling of the benchmark's "feature cosine to the teacher");
- **view-dependent ceiling**: the same against the training views' mean weighted by how close their viewing
  direction at the point is to the test view's (``direction_weighted_cosine`` per kappa): what a head
  whose features vary smoothly with the viewing direction could reach;
- **rank ceiling**: the cosine a head storing a ``k``-wide latent with a linear decoder could reach (the
  training maps' top ``k`` principal directions), for several ``k``.

Writes ``OUT/results.json`` (bench/make_benchmarks_md.py adds it to BENCHMARKS.md) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import command_line, git_info, machine_info, scene_description

# DINOv2 plain and with each test-time averaging (semfield.teachers.dinov2: sub-patch shifts, mirror), which
# costs 2-8x the plain extraction (cold: ~15 min on a 2-core CPU for the default scene's 56 images in all).
TEACHERS = {"dinov2": {"kind": "dinov2"}, "dinov2_flip": {"kind": "dinov2", "flip": True},
            "dinov2_j2": {"kind": "dinov2", "jitter": 2}, "dinov2_j2f": {"kind": "dinov2", "jitter": 2, "flip": True},
            "label": {"kind": "label"}}
RANKS = (8, 16, 32, 64, 128)
DIRECTION_KAPPAS = (10.0, 30.0, 100.0)
"""Sharpness of the viewing-direction weights (``exp(kappa (cos a - 1))``; 30 halves a view's weight at ~11°)."""


def measure(scene, name: str, spec: dict, cache: Path | None) -> dict:
    import numpy as np
    import torch

    from semfield.errors import SemfieldError
    from semfield.eval.teacher_consistency import Camera, cross_view_consistency, rank_ceiling
    from semfield.scene.images import load_rgb
    from semfield.teachers.cache import extract_cached
    from semfield.teachers.registry import build_teacher
    from semfield.train.evaluate import load_depth
    from semfield.train.features import FeatureTargets

    train, test = scene.split("train"), scene.split("test")
    frames = train + test
    images = [torch.from_numpy(np.ascontiguousarray(load_rgb(f.image_path))) for f in frames]
    teacher = build_teacher(name, spec, scene)
    start = time.perf_counter()
    maps = [o.features.float() for o in extract_cached(teacher, images, frames, cache_root=cache, progress=False)]
    extract_seconds = time.perf_counter() - start

    def camera(f) -> Camera:
        k = f.intrinsics
        return Camera(torch.as_tensor(f.c2w, dtype=torch.float64), k.fx, k.fy, k.cx, k.cy, k.width, k.height)

    depths = []
    for f in frames:
        depth = load_depth(f, scene)
        if depth is None:
            raise SemfieldError(f"view {f.name} has no ground-truth depth (a generated scene is needed)", scene.source)
        depths.append(torch.as_tensor(depth, dtype=torch.float64))
    cams = [camera(f) for f in frames]
    n = len(train)
    sources = FeatureTargets(maps[:n], [(c.width, c.height) for c in cams[:n]])
    per_view = []
    for t in range(n, len(frames)):
        res = cross_view_consistency(maps[t], cams[t], depths[t], sources, cams[:n], depths[:n],
                                     direction_kappas=DIRECTION_KAPPAS)
        per_view.append({"view": frames[t].name, **res})
    dim = maps[0].shape[-1]
    ranks = rank_ceiling(torch.cat([m.reshape(-1, dim) for m in maps[:n]]),
                         torch.cat([m.reshape(-1, dim) for m in maps[n:]]), [k for k in RANKS if k < dim])
    ok = [v for v in per_view if v["points"] > 0]
    return {"teacher": name, "spec": spec, "dim": dim, "map_hw": list(maps[0].shape[:2]),
            "extract_seconds": extract_seconds,
            "pair_cosine": statistics.fmean(v["pair_cosine"] for v in ok) if ok else None,
            "mean_view_cosine": statistics.fmean(v["mean_view_cosine"] for v in ok) if ok else None,
            "views_per_point": statistics.fmean(v["views_per_point"] for v in ok) if ok else None,
            "direction_weighted_cosine": {str(k): statistics.fmean(v["direction_weighted_cosine"][str(k)] for v in ok)
                                          for k in DIRECTION_KAPPAS} if ok else {},
            "rank_ceiling": {str(k): v for k, v in ranks.items()}, "per_view": per_view}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (results.json)")
    p.add_argument("--scene", required=True, help="a generated scene (with ground-truth depth)")
    p.add_argument("--cache", help="teacher feature cache (default: semfield's)")
    p.add_argument("--teachers", default=json.dumps(TEACHERS), help="JSON: name -> teacher spec")
    args = p.parse_args(argv)
    from semfield.atomic import atomic_write_json
    from semfield.errors import SemfieldError
    from semfield.scene.load import load_scene

    try:
        scene = load_scene(Path(args.scene))
        teachers = json.loads(args.teachers)
        if not isinstance(teachers, dict) or not all(isinstance(v, dict) for v in teachers.values()):
            raise ValueError(f"--teachers: expected a JSON object of name -> teacher spec, got {args.teachers!r}")
        rows = [measure(scene, name, spec, Path(args.cache) if args.cache else None)
                for name, spec in teachers.items()]
    except (SemfieldError, ValueError) as exc:
        sys.exit(f"teacher_consistency: {exc}")
    gt = scene.ground_truth or {}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"benchmark": "teacher_consistency", "command": command_line(), "git": git_info(),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info("cpu"),
               "scene": scene_description(scene.source, gt.get("preset"), gt.get("seed")), "ranks": list(RANKS),
               "teachers": rows}
    atomic_write_json(out / "results.json", results)
    for r in rows:
        ranks = ", ".join(f"rank {k}: {v:.3f}" for k, v in r["rank_ceiling"].items())
        print(f"{r['teacher']}: pair cosine {r['pair_cosine']:.3f}, mean-of-views cosine {r['mean_view_cosine']:.3f} "
              f"({r['views_per_point']:.1f} views per point); {ranks}")
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main()
