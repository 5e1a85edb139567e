"""Same-process A/B of the DINOv2 head's settings on the distillation benchmark's scene.

    python bench/bench_distill.py --out bench/results/distill_default ...   # first: scene, warm cache, test maps
    python bench/compare_image_heads.py --bench bench/results/distill_default rgb new old rgb new_fr512 deg1

Trains each variant (360 iterations, training seed 0, label + DINOv2 teachers unless "rgb") one after the
other in this process, so they share the machine's state, and prints a JSON line per variant: training
seconds and the DINOv2 head's held-out cosine to its teacher (semfield.harness.fidelity, as bench_distill).
Variants: ``rgb`` (no teachers), ``new`` (the defaults: a view-dependent head), ``old`` (the earlier plain
32-wide head on the 2x grid), ``new_fr512`` (defaults with 512 feature rays), ``deg1`` (first degree).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_file

from semfield.field import HeadConfig
from semfield.harness import fidelity
from semfield.scene.load import load_scene
from semfield.settings import apply_overrides
from semfield.train.config import TrainConfig
from semfield.train.distill import prepare_teachers
from semfield.train.trainer import Trainer

TEACHERS = {"label": {"kind": "label"}, "dinov2": {"kind": "dinov2"}}
VARIANTS = {  # teachers, DINOv2 head (None: prepare_teachers' default), TrainConfig overrides
    "rgb": ({}, None, {}),
    "new": (TEACHERS, None, {}),
    "old": (TEACHERS, HeadConfig(dim=384, latent=32), {}),
    "new_fr512": (TEACHERS, None, {"feature_rays": 512}),
    "deg1": (TEACHERS, HeadConfig(dim=384, latent=16, voxel_factor=4.0, sh_degree=1, lr_factor=3.0), {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bench", type=Path, required=True, help="a bench_distill.py --out folder")
    parser.add_argument("--iterations", type=int, default=360)
    parser.add_argument("variants", nargs="+", choices=sorted(VARIANTS))
    args = parser.parse_args()
    scene = load_scene(args.bench / "scene")
    test = scene.split("test")
    stored = load_file(args.bench / "runs" / "test_teacher_features.safetensors")
    maps = {"dinov2": [stored[f"dinov2/{k}"] for k in range(len(test))]}
    for name in args.variants:
        teachers, head, sets = VARIANTS[name]
        config = apply_overrides(TrainConfig(), {"seed": 0, "iterations": args.iterations, "teachers": teachers,
                                                 **sets})
        if head is not None:
            config = replace(config, field=replace(config.field, heads={"dinov2": head}))
        config, targets = prepare_teachers(scene, config, cache_root=args.bench / "runs" / "feature_cache",
                                           progress=False)
        run_dir = Path(tempfile.mkdtemp(prefix=f"semfield_ab_{name}_"))
        try:
            trainer = Trainer(scene, run_dir, config, feature_targets=targets)
            trained = trainer.train(progress=False)
            cosine = (fidelity.head_fidelity(trainer.field, config.eval_render, test, maps)["dinov2"]["cosine"]
                      if teachers else None)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        print(json.dumps({"variant": name, "train_seconds": round(trained["train_seconds"], 1),
                          "dinov2_cosine": cosine}), flush=True)


if __name__ == "__main__":
    main()
