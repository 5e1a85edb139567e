"""Head fusion (semfield.train.head_fusion): the teacher's features of every training pixel averaged into a
head's grid through the field's rendering weights, on a field with a known opaque wall."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from semfield.field import FieldConfig, GridField, HeadConfig
from semfield.field.renderer import RenderOptions, render_rays
from semfield.train.features import FeatureTargets
from semfield.train.head_fusion import (
    HeadFusionConfig,
    fill_unreached,
    fusable_heads,
    fuse_heads,
    principal_basis,
)

OUTER = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
WALL_X = 0.3  # an opaque slab at x in [0.3, 0.5]
DIM, SIDE, VIEWS = 6, 16, 6


def wall_field(heads) -> GridField:
    fld = GridField(FieldConfig(focus_voxel=0.05, heads=heads), outer_aabb=OUTER, focus_aabb=OUTER)
    pts = fld.vertex_positions(fld.axes)
    slab = (pts[:, 0] >= WALL_X) & (pts[:, 0] <= WALL_X + 0.2)
    fld.density.values[slab] = fld.raw_for_sigma(400.0)
    fld.density.values[~slab] = fld.raw_for_sigma(1e-4)
    fld.occupancy_ready = True
    fld.refresh_occupancy()
    return fld


def camera_bank():
    """Rays of ``VIEWS`` pinhole views from x = -0.8 looking along +x at the wall (pixels centred at +0.5)."""
    origins, dirs, index, pixels = [], [], [], []
    ys, xs = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    px = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).float() + 0.5
    for v in range(VIEWS):
        o = torch.tensor([-0.8, 0.08 * (v - VIEWS / 2), 0.05 * (v % 3 - 1)])
        d = torch.stack([torch.ones(SIDE * SIDE), (px[:, 0] - SIDE / 2) / SIDE, (px[:, 1] - SIDE / 2) / SIDE], -1)
        d = F.normalize(d, dim=-1)
        origins.append(o.expand(SIDE * SIDE, 3))
        dirs.append(d)
        index.append(torch.full((SIDE * SIDE,), v, dtype=torch.int32))
        pixels.append(px)
    dirs = torch.cat(dirs)
    return SimpleNamespace(origins=torch.cat(origins), dirs=dirs, z_per_t=dirs[:, 0].clone(),
                           image_index=torch.cat(index), pixel=torch.cat(pixels))


def targets_of(maps) -> FeatureTargets:
    return FeatureTargets(maps, [(SIDE, SIDE)] * len(maps))


OPTS = RenderOptions(step_voxels=0.5, max_samples=256, background="0.5")


def rendered(fld, bank, name):
    out = render_rays(fld, bank.origins, bank.dirs, bank.z_per_t, replace(OPTS, heads=(name,)))
    return out[name], out["acc"]


def test_a_constant_teacher_is_rendered_back_exactly():
    fld = wall_field({"h": HeadConfig(dim=DIM, latent=3)})
    torch.manual_seed(0)
    fld.heads["h"].values.normal_()  # whatever training left
    f = F.normalize(torch.randn(DIM), dim=0)
    bank = camera_bank()
    report = fuse_heads(fld, bank, {"h": targets_of([f.expand(4, 4, DIM)] * VIEWS)}, OPTS,
                        HeadFusionConfig(stride=1, prior=0.0))
    assert report["heads"] == ["h"] and report["vertices"]["h"] > 0
    feats, acc = rendered(fld, bank, "h")
    hit = acc > 0.99
    assert hit.float().mean() > 0.9
    assert float(F.cosine_similarity(feats[hit].detach(), f[None]).min()) > 1 - 1e-5
    # a point on the wall's face reads the same feature (its inside corners were filled)
    point = torch.tensor([[WALL_X + 0.01, 0.0, 0.0]])
    torch.testing.assert_close(fld.feature("h", point)[0], f, atol=1e-3, rtol=0)


def test_fusion_averages_noise_over_the_views():
    """Two classes (left and right half of every view) under per-view noise four times their norm: one view's
    target is mostly noise, the fused head is close to the class features."""
    fld = wall_field({"h": HeadConfig(dim=32, latent=8)})
    gen = torch.Generator().manual_seed(1)
    a, b = F.normalize(torch.randn(2, 32, generator=gen), dim=1)
    maps = []
    for _ in range(VIEWS):
        clean = torch.cat([a.expand(8, 4, 32), b.expand(8, 4, 32)], dim=1)
        maps.append(clean + 4.0 / math.sqrt(32) * torch.randn(8, 8, 32, generator=gen))
    bank = camera_bank()
    fuse_heads(fld, bank, {"h": targets_of(maps)}, OPTS, HeadFusionConfig(stride=1, prior=0.0))
    feats, acc = rendered(fld, bank, "h")
    left = (bank.pixel[:, 0] < SIDE / 2 - 2) & (acc > 0.99)
    right = (bank.pixel[:, 0] > SIDE / 2 + 2) & (acc > 0.99)
    single = F.cosine_similarity(targets_of(maps).sample(bank.image_index, bank.pixel)[left], a[None]).mean()
    fused = F.cosine_similarity(feats[left], a[None]).mean()
    assert single < 0.4 and fused > 0.7
    assert F.cosine_similarity(feats[right], b[None]).mean() > 0.7


def test_view_dependent_and_unit_heads_are_left_as_trained():
    heads = {"v": HeadConfig(dim=4, latent=2, sh_degree=1), "u": HeadConfig(dim=4, unit=True), "p": HeadConfig(dim=4)}
    fld = wall_field(heads)
    assert fusable_heads(fld, ["v", "u", "p"]) == ["p"]
    before = {n: fld.heads[n].values.clone() for n in ("v", "u")}
    maps = [torch.ones(4, 4, 4)] * VIEWS
    fuse_heads(fld, camera_bank(), {n: targets_of(maps) for n in heads}, OPTS, HeadFusionConfig(stride=2))
    for n, v in before.items():
        assert torch.equal(fld.heads[n].values, v)


def test_fill_reaches_only_the_given_number_of_steps():
    values = torch.zeros(5 * 3 * 3, 2)  # x-major: the x = k plane is rows 9k to 9k + 8
    values[:9] = torch.tensor([2.0, 4.0])
    reached = torch.zeros(45, dtype=torch.bool)
    reached[:9] = True
    assert fill_unreached(values, reached, (5, 3, 3), steps=2) == 18
    torch.testing.assert_close(values[:27], torch.tensor([[2.0, 4.0]] * 27))
    assert torch.equal(values[27:], torch.zeros(18, 2))


def test_principal_basis_spans_the_weighted_directions():
    means = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.1, 0.0]])
    basis, centre = principal_basis(means, torch.tensor([10, 10, 1]), 1)
    assert basis.shape == (3, 1)
    assert abs(abs(float(basis[0, 0])) - 1.0) < 1e-3
    torch.testing.assert_close(centre, torch.tensor([0.0, 0.1 / 21, 0.0]))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="stride"):
        HeadFusionConfig(stride=0)
