"""Mask sources for the instance field: simulated SAM masks, DINOv2-cluster segments, the mask cache, and the
contrastive batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.panoptic.mask_source import masks_cached
from semfield.panoptic.masks_dino import dino_segments
from semfield.panoptic.masks_simulated import base_segments, simulate_masks
from semfield.train.instance import InstanceMasks, InstanceSettings, mask_interiors


def _toy_view():
    """A 40 x 40 view: floor (class 1) top half, table (class 2) bottom half, objects 1 and 2 (class 5, 6)."""
    inst = np.zeros((40, 40), dtype=np.int64)
    sem = np.ones((40, 40), dtype=np.int64)
    sem[20:] = 2
    inst[5:15, 5:15], sem[5:15, 5:15] = 1, 5
    inst[25:35, 10:30], sem[25:35, 10:30] = 2, 6
    inst[25:35, 30:36], sem[25:35, 30:36] = 3, 6  # touches object 2
    sem[0:2, :] = 0  # unlabelled strip: no mask
    return inst, sem


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Share of ``a``'s masked pixels where the best one-to-one relabelling of ``a`` equals ``b`` (greedy)."""
    hits = 0
    used = set()
    for i in np.unique(a[a >= 0]):
        ids, counts = np.unique(b[(a == i) & (b >= 0)], return_counts=True)
        for j, c in sorted(zip(ids, counts, strict=True), key=lambda t: -t[1]):
            if j not in used:
                used.add(j)
                hits += c
                break
    return hits / int((a >= 0).sum())


def test_base_segments_objects_and_stuff():
    inst, sem = _toy_view()
    seg, is_object = base_segments(inst, sem, stuff_classes=[1, 2])
    assert is_object == [True, True, True, False, False]
    assert (seg[0:2] == -1).all()  # unlabelled
    assert len(np.unique(seg[5:15, 5:15])) == 1 and seg[10, 10] == 0
    assert seg[10, 30] == 3 and seg[38, 2] == 4


def test_simulated_masks_without_errors_are_a_permutation_of_the_truth():
    inst, sem = _toy_view()
    seg, _ = base_segments(inst, sem, [1, 2])
    ids = set()
    for seed in range(4):
        sim = simulate_masks(inst, sem, [1, 2], np.random.default_rng(seed), split_rate=0, merge_rate=0,
                             ragged_px=0, min_pixels=1)
        assert sim.flags["C_CONTIGUOUS"]
        assert _agreement(seg, sim) == 1.0
        ids.add(int(sim[10, 10]))
    assert len(ids) > 1  # the id of one object changes between views


def test_simulated_split_merge_and_ragged_errors():
    inst, sem = _toy_view()
    seg, _ = base_segments(inst, sem, [1, 2])
    split = simulate_masks(inst, sem, [1, 2], np.random.default_rng(0), split_rate=1, merge_rate=0, ragged_px=0,
                           min_pixels=1)
    assert len(np.unique(split[5:15, 5:15])) == 2  # every object in two parts
    assert len(np.unique(split[split >= 0])) == 3 * 2 + 2
    merged = simulate_masks(inst, sem, [1, 2], np.random.default_rng(0), split_rate=0, merge_rate=1, ragged_px=0,
                            min_pixels=1)
    assert merged[30, 20] == merged[30, 33]  # objects 2 and 3 touch: one mask
    assert merged[10, 10] != merged[30, 20]  # object 1 has no object neighbour: alone
    ragged = simulate_masks(inst, sem, [1, 2], np.random.default_rng(0), split_rate=0, merge_rate=0, ragged_px=2,
                            min_pixels=1)
    agree = _agreement(seg, ragged)
    assert 0.85 < agree < 1.0  # boundaries moved, interiors kept
    assert ragged[10, 10] == ragged[9, 9]


def test_dino_segments_follow_feature_regions():
    # A 6 x 6 patch map with two feature regions (left third vs the rest) on a 60 x 60 image.
    feats = np.zeros((6, 6, 8), dtype=np.float32)
    feats[:, :2, 0] = 1.0
    feats[:, 2:, 1] = 1.0
    image = np.full((60, 60, 3), 0.5, dtype=np.float32)
    image[:, :20] = [0.9, 0.1, 0.1]
    seg = dino_segments(feats, image, n_clusters=2, position_weight=0.0, min_pixels=10)
    assert seg.shape == (60, 60) and (seg >= 0).all()
    assert len(np.unique(seg[:, :15])) == 1 and len(np.unique(seg[:, 25:])) == 1
    assert seg[30, 5] != seg[30, 50]


class _CountingSource:
    kind = "counting"
    uses_frame = False

    def __init__(self):
        self.calls = 0

    def settings(self):
        return {"kind": self.kind}

    def masks(self, image, frame):
        self.calls += 1
        seg = np.zeros(image.shape[:2], dtype=np.int64)
        seg[:, image.shape[1] // 2:] = 1
        return np.asfortranarray(seg)  # the cache must not depend on memory order


def test_mask_cache_round_trip(tmp_path):
    src = _CountingSource()
    images = [torch.rand(12, 10, 3), torch.rand(12, 10, 3)]
    first = masks_cached(src, images, cache_root=tmp_path, progress=False)
    again = masks_cached(src, images, cache_root=tmp_path, progress=False)
    assert src.calls == 2
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a[0, 9] == 1 and a[11, 0] == 0


class _Bank:
    """The parts of a RayBank the sampler reads: ``views`` views of ``h x w`` pixels, every pixel a ray."""

    def __init__(self, views: int = 2, h: int = 4, w: int = 3):
        idx, pix = [], []
        for k in range(views):
            for y in range(h):
                for x in range(w):
                    idx.append(k)
                    pix.append((x + 0.5, y + 0.5))
        self.image_index = torch.tensor(idx, dtype=torch.int32)
        self.pixel = torch.tensor(pix)
        self.rgb = torch.zeros(len(idx), 3)


def test_contrastive_batches_sample_masks_of_one_view():
    bank = _Bank()
    seg0 = np.array([[0, 0, 1], [0, 0, 1], [-1, 2, 2], [-1, 2, 2]])
    seg1 = np.zeros((4, 3), dtype=np.int64)  # one mask: nothing to contrast, never drawn
    masks = InstanceMasks([seg0, seg1], bank, InstanceSettings(views_per_step=2, pixels_per_view=300))
    assert masks.views == [0]
    rays, group, view = masks.sample(torch.Generator().manual_seed(0))
    assert rays.shape == group.shape == view.shape == (300,)
    assert (bank.image_index[rays] == 0).all()
    y, x = (bank.pixel[rays, 1] - 0.5).long(), (bank.pixel[rays, 0] - 0.5).long()
    drawn = torch.as_tensor(seg0)[y, x]
    assert (drawn >= 0).all()
    # groups are the view's masks (these have no interior: their interior draws take any of their pixels)
    counts = torch.bincount(group, minlength=3)
    assert counts.min() > 60
    for gid in range(3):
        assert len(torch.unique(drawn[group == gid])) == 1


def test_mask_interiors_keep_pixels_away_from_other_masks():
    seg = np.full((12, 12), 2, dtype=np.int64)
    seg[3:9, 3:9] = 0
    seg[5, 10] = 1  # a one-pixel mask: no interior, kept whole
    seg[0, :] = -1  # no mask: a border like any other
    inner = mask_interiors(seg, 1.5)
    assert (inner[4:8, 4:8] == 0).all() and (inner[3, 3:9] == -1).all() and (inner[2, 3:9] == -1).all()
    assert inner[5, 10] == 1 and (inner[4:7, 9:12][inner[4:7, 9:12] != 1] == -1).all()
    assert (inner[1] == -1).all() and inner[11, 0] == 2  # the image border is not a mask border
    np.testing.assert_array_equal(mask_interiors(seg, 0.0), seg)


def test_contrastive_batches_draw_interiors_and_borders_without_bias():
    """Interior draws keep interior_px from every border; the uniform draws sample a small object's border
    band as densely per pixel as the table's band around it (the bias that grew halos round objects)."""
    seg = np.ones((30, 30), dtype=np.int64)
    seg[10:20, 10:20] = 0  # a 10 x 10 object on a 900-pixel table
    settings = InstanceSettings(views_per_step=1, pixels_per_view=40000, interior_px=2.0, uniform_share=0.5)
    masks = InstanceMasks([seg], _Bank(1, 30, 30), settings)
    pixel, group, _ = masks.sample(torch.Generator().manual_seed(0))
    y, x = pixel // 30, pixel % 30
    view_seg = torch.as_tensor(seg)
    assert (view_seg[y, x] == group).all()  # every pixel keeps its own mask
    inner, uniform = slice(0, 20000), slice(20000, None)
    assert (torch.as_tensor(mask_interiors(view_seg.numpy(), 2.0))[y[inner], x[inner]] >= 0).all()
    counts = torch.bincount(group[inner], minlength=2)
    assert abs(int(counts[0]) - 10000) < 300  # interiors: each mask half of the draws
    rate = torch.bincount(pixel[uniform], minlength=900).float().view(30, 30) / 20000 * 900  # 1 = uniform
    inside_band = rate[10:20, 10:20].clone()
    inside_band[2:8, 2:8] = float("nan")
    outside_band = rate[8:22, 8:22].clone()
    outside_band[2:12, 2:12] = float("nan")
    assert abs(float(inside_band.nanmean()) - 1.0) < 0.1 and abs(float(outside_band.nanmean()) - 1.0) < 0.1


def test_instance_settings_reject_bad_values():
    with pytest.raises(SemfieldError):
        InstanceSettings.from_dict({"temperature": 0})
    with pytest.raises(SemfieldError):
        InstanceSettings.from_dict({"colour": 1})
    with pytest.raises(SemfieldError):
        InstanceSettings.from_dict({"uniform_share": 1.5})
