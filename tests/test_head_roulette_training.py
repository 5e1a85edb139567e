"""The heads' Russian roulette in training: its own random stream (the rays and the geometry stay those of a
run without it), saved in the checkpoint for resuming."""

from __future__ import annotations

from dataclasses import replace

import torch
from analytic_scene import make_analytic_scene

from semfield.field.grid_field import HeadConfig
from semfield.scene.load import load_scene
from semfield.train.config import TrainConfig
from semfield.train.features import FeatureTargets
from semfield.train.trainer import Trainer

HEAD = "feat"


def _trainer(scene, run_dir, roulette: float, iterations: int) -> Trainer:
    config = TrainConfig(iterations=iterations, batch_rays=512, feature_rays=256, checkpoint_every=1000, seed=3,
                         threads=2, occupancy_warmup=0.0)
    config.render = replace(config.render, head_roulette=roulette)
    config.field.density_init_alpha = 0.05  # a fog that the heads see from the first step
    config.field.heads = {HEAD: HeadConfig(dim=4, latent=0, voxel_factor=2.0, loss="cosine", centre=False,
                                           roulette=True)}
    frames = scene.split("train")
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(8, 8, 4, generator=g) for _ in frames]
    targets = {HEAD: FeatureTargets(maps, [(f.intrinsics.width, f.intrinsics.height) for f in frames])}
    return Trainer(scene, run_dir, config, feature_targets=targets)


def _train(scene, run_dir, roulette: float, iterations: int) -> Trainer:
    trainer = _trainer(scene, run_dir, roulette, iterations)
    trainer.train(progress=False)
    return trainer


def test_roulette_leaves_the_geometry_and_resumes(tmp_path):
    scene = load_scene(make_analytic_scene(tmp_path / "scene", n_train=6, n_test=1, size=32))
    off = _train(scene, tmp_path / "off", 0.0, 6)
    on = _train(scene, tmp_path / "on", 0.5, 6)  # a high threshold: most head samples are in play
    assert on.last_samples["head_thinned"] < on.last_samples["head"]
    assert off.last_samples["head_thinned"] == off.last_samples["head"]
    # the same rays, so the same density and colour; only the head differs
    assert torch.equal(on.field.density.values, off.field.density.values)
    assert torch.equal(on.field.color.values, off.field.color.values)
    assert not torch.equal(on.field.heads[HEAD].values, off.field.heads[HEAD].values)
    # the roulette's stream is saved with the checkpoint and restored on resuming
    later = _trainer(scene, tmp_path / "on", 0.5, 9)
    assert not torch.equal(later.roulette_generator.get_state(), on.roulette_generator.get_state())  # fresh
    assert later.resume_or_start()
    assert torch.equal(later.roulette_generator.get_state(), on.roulette_generator.get_state())
    assert torch.equal(later.generator.get_state(), on.generator.get_state())
