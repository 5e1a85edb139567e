"""The instance head in training: it never moves geometry, its settings are part of a run's config, and runs
without it keep their configs (resume, checkpoints) as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.field.grid_field import FieldConfig, GridField
from semfield.field.renderer import RenderOptions, render_rays
from semfield.panoptic.contrastive import instance_contrastive_loss
from semfield.train.config import TrainConfig
from semfield.train.instance import INSTANCE_HEAD, InstanceSettings, init_instance_head


def _field_with_instance_head() -> GridField:
    settings = InstanceSettings(dim=8)
    config = FieldConfig(focus_voxel=0.1, heads={INSTANCE_HEAD: settings.head()}, density_init_alpha=0.2)
    outer = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    fld = GridField(config, outer, outer * 0.5)
    init_instance_head(fld.heads[INSTANCE_HEAD].values, seed=0)
    return fld


def test_instance_loss_reaches_the_instance_grid_only():
    fld = _field_with_instance_head()
    gen = torch.Generator().manual_seed(0)
    origins = torch.zeros(64, 3) + torch.tensor([0.0, 0.0, -0.9])
    dirs = torch.nn.functional.normalize(torch.randn(64, 3, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 1.0]),
                                         dim=-1)
    out = render_rays(fld, origins, dirs, torch.ones(64), RenderOptions(heads=(INSTANCE_HEAD,)), centred_heads=True)
    group = torch.arange(64) % 4
    loss = instance_contrastive_loss(out[INSTANCE_HEAD], group, torch.zeros(64, dtype=torch.long), 0.1,
                                     pull_weight=0.5)
    loss.backward()
    assert float(fld.heads[INSTANCE_HEAD].grad.abs().sum()) > 0
    assert float(fld.density.grad.abs().sum()) == 0.0
    assert float(fld.color.grad.abs().sum()) == 0.0
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0.0 for p in fld.color_mlp.parameters())


def test_instance_head_starts_random_and_reproducible():
    a, b = _field_with_instance_head(), _field_with_instance_head()
    values = a.heads[INSTANCE_HEAD].values
    assert float(values.std()) == pytest.approx(0.01, rel=0.1)
    torch.testing.assert_close(values, b.heads[INSTANCE_HEAD].values)


def test_config_without_instance_is_unchanged_for_saved_runs():
    cfg = TrainConfig()
    saved = cfg.to_dict()
    assert saved["instance"] is None
    old = {k: v for k, v in saved.items() if k != "instance"}  # a run saved before instance heads existed
    assert cfg.same_learning(old)
    assert TrainConfig.from_dict(old).instance is None
    with_instance = TrainConfig(instance={"masks": {"kind": "simulated"}})
    assert with_instance.learning_differences(old) == ["instance"]
    assert TrainConfig.from_dict(with_instance.to_dict()).instance == {"masks": {"kind": "simulated"}}


def test_instance_settings_build_the_head():
    s = InstanceSettings.from_dict({"dim": 12, "temperature": 0.2})
    head = s.head()
    assert (head.dim, head.latent, head.centre) == (12, 0, False)
    assert s.rays_per_step == s.views_per_step * s.pixels_per_view
    with pytest.raises(SemfieldError, match="must be an object"):
        InstanceSettings.from_dict("simulated")
