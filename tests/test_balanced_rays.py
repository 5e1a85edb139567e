"""Segment-balanced ray sampling and the teacher-feature segments it draws from (semfield.train.balanced)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semfield.train.balanced import BalancedRays, group_rays, spherical_kmeans, teacher_segments
from semfield.train.features import FeatureTargets

W, H = 8, 8


class FakeBank:
    """The RayBank attributes the sampler reads: every pixel of ``views`` W x H views, in row-major order."""

    def __init__(self, views: int):
        ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
        pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).float() + 0.5
        self.pixel = pix.repeat(views, 1)
        self.image_index = torch.arange(views, dtype=torch.int32).repeat_interleave(W * H)
        self.rgb = torch.zeros(views * W * H, 3)

    def __len__(self) -> int:
        return self.rgb.shape[0]


def _two_segments(small: int) -> np.ndarray:
    """Segment 1 is the first ``small`` pixels of the top row, segment 0 the rest."""
    seg = np.zeros((H, W), dtype=np.int64)
    seg[0, :small] = 1
    return seg


def test_small_segment_gets_half_the_rays():
    bank = FakeBank(1)
    sampler = BalancedRays([_two_segments(4)], bank, min_pixels=1)
    rays = sampler.sample(20_000, torch.Generator().manual_seed(0))
    in_small = (rays < 4).float().mean().item()  # rays 0..3 are the top row's first 4 pixels
    assert 0.47 < in_small < 0.53
    assert set(rays[rays < 4].tolist()) == {0, 1, 2, 3}


def test_segments_below_min_pixels_are_never_drawn():
    bank = FakeBank(2)
    sampler = BalancedRays([_two_segments(4), _two_segments(8)], bank, min_pixels=5)
    assert sampler.n_groups == 3  # view 0: only the large segment; view 1: both
    rays = sampler.sample(5_000, torch.Generator().manual_seed(1))
    assert not bool(((rays >= 0) & (rays < 4)).any())
    assert bool(((rays >= 64) & (rays < 72)).any())


def test_group_rays_skips_unlabelled_pixels_and_checks_the_view_count():
    bank = FakeBank(1)
    seg = _two_segments(4)
    seg[7] = -1
    rays, start, size, view_groups = group_rays([seg], bank)
    assert size.tolist() == [52, 4] and start.tolist() == [0, 52] and view_groups == [(0, 2)]
    assert not bool((rays >= 56).any())
    with pytest.raises(ValueError, match="2 segment maps for 1 training views"):
        group_rays([seg, seg], bank)


def test_spherical_kmeans_finds_separated_directions():
    gen = torch.Generator().manual_seed(0)
    axes = torch.eye(3)
    x = axes.repeat_interleave(50, dim=0) + 0.05 * torch.randn(150, 3, generator=gen)
    centres = spherical_kmeans(x, 3, gen)
    assert torch.allclose(centres.abs().amax(dim=0), torch.ones(3), atol=0.01)


def test_teacher_segments_follow_the_teachers_regions_in_every_view():
    """Teacher A splits each view left/right; teacher B is constant: two clusters = the two halves, with the
    same id in both views (one scene-wide clustering)."""
    left_right = torch.zeros(4, 4, 2)
    left_right[:, :2, 0] = 1.0
    left_right[:, 2:, 1] = 1.0
    constant = torch.ones(2, 2, 5)
    a = FeatureTargets([left_right, left_right], [(W, H), (W, H)])
    b = FeatureTargets([constant, constant], [(W, H), (W, H)])
    maps = teacher_segments([a, b], FakeBank(2), [(W, H), (W, H)], clusters=2, seed=0)
    for seg in maps:
        assert seg.shape == (H, W)
        assert len(np.unique(seg[:, :3])) == 1 and len(np.unique(seg[:, 5:])) == 1
        assert seg[0, 0] != seg[0, 7]
    assert maps[0][0, 0] == maps[1][0, 0]
