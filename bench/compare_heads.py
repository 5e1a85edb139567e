"""Same-process A/B of feature-head settings on the distillation benchmark's scene.

    python bench/bench_distill.py --out bench/results/distill_default ...   # first: scene, warm cache, test maps
    python bench/compare_heads.py --bench bench/results/distill_default --out bench/results/heads_ab \\
        rgb view_dino shared shared_label4 rgb

Trains each variant (360 iterations, training seed 0, label + DINOv2 teachers unless "rgb") one after the
other in this process, so they share the machine's state (times of different variants are comparable; the
RGB variant is the baseline of each ratio: the median of its runs), and evaluates each on the test views:
every head's held-out cosine to its teacher (semfield.harness.fidelity, the label head also against the
noise-free label teacher), and the text queries' localization (semfield.harness.localization, as
bench_distill). Prints a JSON line per variant; with ``--out``, writes ``OUT/results.json``
(bench/make_benchmarks_md.py adds it to BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts
from bench_train import command_line, git_info, machine_info, scene_description

from semfield.atomic import atomic_write_json
from semfield.field import HeadConfig
from semfield.harness import fidelity, localization
from semfield.query.engine import QueryEngine
from semfield.run import load_run
from semfield.scene.load import load_scene
from semfield.settings import apply_overrides
from semfield.train.config import TrainConfig
from semfield.train.distill import IMAGE_HEAD, prepare_teachers
from semfield.train.trainer import Trainer

TEACHERS = {"label": {"kind": "label"}, "dinov2": {"kind": "dinov2"}}
PLAIN_DINO = HeadConfig(dim=384, latent=32)  # the DINOv2 head before view dependence (stop 19)
VIEW_DINO = HeadConfig(dim=384, **IMAGE_HEAD)  # per-channel Adam moments, no roulette (the defaults)
LABEL = HeadConfig(dim=384, latent=32, loss="cosine", centre=False)  # prepare_teachers' text-aligned head
SHARED = {"dinov2": replace(VIEW_DINO, shared_moments=True), "label": replace(LABEL, shared_moments=True)}
ROULETTE_ALL = {name: replace(head, roulette=True) for name, head in SHARED.items()}
# name: (description, teachers, heads set explicitly (others: prepare_teachers' defaults), TrainConfig overrides)
VARIANTS = {
    "rgb": ("RGB only", {}, {}, {}),
    "defaults": ("the current defaults", TEACHERS, {}, {}),
    "plain_dino": ("DINOv2 head plain: 32-wide, grid 2x the density's (the head before view dependence)",
                   TEACHERS, {"dinov2": PLAIN_DINO, "label": LABEL}, {}),
    "view_dino": ("DINOv2 head view-dependent (second degree, 16-wide, grid 4x, 3x rates), per-channel Adam",
                  TEACHERS, {"dinov2": VIEW_DINO, "label": LABEL}, {}),
    "shared": ("view_dino, both heads' grids with one Adam second moment per latent", TEACHERS, SHARED, {}),
    "shared_label4": ("shared, the label head's grid 4x the density's (not 2x)",
                      TEACHERS, {**SHARED, "label": replace(SHARED["label"], voxel_factor=4.0)}, {}),
    "roulette01": ("shared, both heads' samples below weight 0.01 thinned by Russian roulette (render.head_roulette)",
                   TEACHERS, ROULETTE_ALL, {"render.head_roulette": 0.01}),
    "roulette003": ("shared, both heads' samples below weight 0.003 thinned by Russian roulette",
                    TEACHERS, ROULETTE_ALL, {"render.head_roulette": 0.003}),
    "roulette01_image": ("shared, the DINOv2 head's samples below weight 0.01 thinned by Russian roulette",
                         TEACHERS, {**SHARED, "dinov2": replace(SHARED["dinov2"], roulette=True)},
                         {"render.head_roulette": 0.01}),
    "view_dino_fr512": ("view_dino with 512 feature rays (not 1024)", TEACHERS,
                        {"dinov2": VIEW_DINO, "label": LABEL}, {"feature_rays": 512}),
}


def evaluate(run_dir: Path, scene, maps) -> dict:
    """Held-out cosine of every head to its teacher(s) and the text queries' localization accuracies."""
    run = load_run(run_dir)
    test = scene.split("test")
    scores = fidelity.head_fidelity(run.field, run.config.eval_render, test, maps)
    text = localization.accuracies_by_kind(localization.evaluate_text(QueryEngine(run, scene), scene.ground_truth,
                                                                     test))
    return {"cosine": {name: s["cosine"] for name, s in scores.items()},
            "text": {kind: {k: acc[k] for k in ("loc3d", "loc2d_lerf", "box_iou")} for kind, acc in text.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, required=True, help="a bench_distill.py --out folder")
    parser.add_argument("--out", type=Path, help="write OUT/results.json")
    parser.add_argument("--iterations", type=int, default=360)
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    args = parser.parse_args()
    maps_file = args.bench / "runs" / "test_teacher_features.safetensors"
    if not maps_file.exists():
        sys.exit(f"compare_heads: {maps_file} not found: run bench/bench_distill.py --out {args.bench} first")
    scene = load_scene(args.bench / "scene")
    test = scene.split("test")
    stored = load_file(maps_file)
    names = dict.fromkeys(k.rsplit("/", 1)[0] for k in sorted(stored))  # "dinov2", "label", "label:noise_free"
    maps = {name: [stored[f"{name}/{k}"] for k in range(len(test))] for name in names}
    gt = scene.ground_truth
    rows = []
    for name in args.variants:
        description, teachers, heads, sets = VARIANTS[name]
        config = apply_overrides(TrainConfig(), {"seed": 0, "iterations": args.iterations, "teachers": teachers,
                                                 **sets})
        config = replace(config, field=replace(config.field, heads=heads))
        config, targets = prepare_teachers(scene, config, cache_root=args.bench / "runs" / "feature_cache",
                                           progress=False)
        run_dir = Path(tempfile.mkdtemp(prefix=f"semfield_ab_{name}_"))
        try:
            trainer = Trainer(scene, run_dir, config, feature_targets=targets)
            trained = trainer.train(progress=False)
            scores = evaluate(run_dir, scene, maps) if teachers else {}
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        row = {"variant": name, "train_seconds": round(trained["train_seconds"], 1), **scores}
        rows.append({**row, "description": description,
                     "heads": {h: asdict(c) for h, c in config.field.heads.items()}, "set": sets})
        print(json.dumps(row), flush=True)
    rgb = [r["train_seconds"] for r in rows if r["variant"] == "rgb"]
    for row in rows:
        row["ratio"] = round(row["train_seconds"] / statistics.median(rgb), 3) if rgb else None
    if args.out:
        atomic_write_json(args.out / "results.json", {
            "benchmark": "head_ab", "command": command_line(), "machine": machine_info(), "git": git_info(),
            "scene": scene_description(scene.source, gt.get("preset"), gt.get("seed")), "iterations": args.iterations,
            "rows": rows,
            "notes": ["simulated teacher: the label head distils the simulated label teacher (bench_distill)",
                      ("one training per variant (seed 0), in this process one after the other; the ratio "
                      "divides by the median of this process's RGB-only trainings")]})


if __name__ == "__main__":
    main()
