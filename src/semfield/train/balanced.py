"""Segment-balanced ray sampling: draw a segment of a view uniformly, then a pixel in it.

Drawn uniformly over pixels, the feature rays are mostly floor, walls and table: a small object gets a few
rays per iteration and its head features are pulled towards its large neighbours (a mug's label features
end up closer to "table" than to "mug"). Drawing a (view, segment) pair uniformly and then a pixel inside it
gives every segment the same share, whatever its size.

Segments come from a 2D source: the instance masks of the panoptic head (:mod:`.instance`), or, without
them, clusters of the teachers' own feature maps (:func:`teacher_segments`): no ground truth is used.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .data import RayBank
from .features import FeatureTargets

DEFAULT_CLUSTERS = 16
MIN_SEGMENT_PIXELS = 32  # smaller segments (teacher noise) are left to the uniformly drawn rays
KMEANS_SAMPLES = 20_000
KMEANS_ITERATIONS = 20


def group_rays(segments: list[np.ndarray], bank: RayBank, min_pixels: int = 1):
    """The training rays of every (view, segment) pair, grouped.

    Args:
        segments: one ``[H_k, W_k]`` int map per training view (RayBank order), -1 = no segment.
        bank: the training rays (to find each pixel's ray).
        min_pixels: segments with fewer rays are left out.

    Returns:
        ``(rays [M], group_start [G], group_size [G], view_groups)``: the grouped rays (by view, then segment),
        where each group starts and its size, and per view the ``(first, last)`` group range (last exclusive).
    """
    if len(segments) != int(bank.image_index.max()) + 1:
        raise ValueError(f"{len(segments)} segment maps for {int(bank.image_index.max()) + 1} training views")
    widths = torch.tensor([s.shape[1] for s in segments])
    offsets = torch.cumsum(torch.tensor([0] + [s.size for s in segments]), 0)
    idx = bank.image_index.long().cpu()
    pix = bank.pixel.cpu().floor().long()
    flat = offsets[idx] + pix[:, 1] * widths[idx] + pix[:, 0]
    ray_of_pixel = torch.full((int(offsets[-1]),), -1, dtype=torch.long)
    ray_of_pixel[flat] = torch.arange(idx.shape[0])
    rays, group_start, group_size, view_groups = [], [], [], []
    n_rays = 0
    for k, seg in enumerate(segments):
        seg_t = torch.as_tensor(np.asarray(seg).reshape(-1), dtype=torch.long)
        r = ray_of_pixel[offsets[k]:offsets[k + 1]]
        keep = (seg_t >= 0) & (r >= 0)
        order = torch.argsort(seg_t[keep], stable=True)
        _, counts = torch.unique_consecutive(seg_t[keep][order], return_counts=True)
        big = counts >= min_pixels
        members = torch.repeat_interleave(big, counts)
        view_rays, counts = r[keep][order][members], counts[big]
        rays.append(view_rays)
        starts = n_rays + torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), counts[:-1]]), 0)
        view_groups.append((len(group_size), len(group_size) + len(counts)))
        group_start += starts.tolist()
        group_size += counts.tolist()
        n_rays += int(counts.sum())
    device = bank.rgb.device
    return (torch.cat(rays).to(device), torch.tensor(group_start, dtype=torch.long, device=device),
            torch.tensor(group_size, dtype=torch.long, device=device), view_groups)


class BalancedRays:
    """Draws training rays segment-balanced over all views: a (view, segment) pair uniformly, then a ray in it.

    Args:
        segments: one ``[H_k, W_k]`` int map per training view (RayBank order), -1 = no segment.
        bank: the training rays.
        min_pixels: smaller segments are never drawn.
    """

    def __init__(self, segments: list[np.ndarray], bank: RayBank, min_pixels: int = MIN_SEGMENT_PIXELS):
        self.rays, self.group_start, self.group_size, _ = group_rays(segments, bank, min_pixels)
        if self.group_size.numel() == 0:
            raise ValueError("no segment is large enough to sample from")

    @property
    def n_groups(self) -> int:
        return int(self.group_size.numel())

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Ray indices ``[n]`` into the bank."""
        device = self.rays.device
        group = torch.randint(0, self.n_groups, (n,), generator=generator, device=device)
        u = torch.rand(n, generator=generator, device=device)
        within = (u * self.group_size[group]).long().minimum(self.group_size[group] - 1)
        return self.rays[self.group_start[group] + within]


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1, eps=1e-8)


def _view_features(targets: list[FeatureTargets], bank: RayBank, view: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every teacher's unit feature at the pixels of one view's rays, concatenated: ``([R, sum D], pixel [R, 2])``."""
    sel = (bank.image_index == view).nonzero().squeeze(1)
    pixel = bank.pixel[sel]
    index = bank.image_index[sel]
    return torch.cat([_unit(t.sample(index, pixel)) for t in targets], dim=-1), pixel


def spherical_kmeans(x: torch.Tensor, k: int, generator: torch.Generator,
                     iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Unit centroids ``[k', D]`` (k' <= k) of rows ``x [N, D]`` by cosine k-means, k-means++ seeded.
    ``generator`` lives on ``x``'s device."""
    x = _unit(x)
    k = min(k, x.shape[0])
    centres = [x[torch.randint(0, x.shape[0], (1,), generator=generator, device=x.device)]]
    for _ in range(k - 1):  # k-means++: far points are likelier seeds
        dist = (1.0 - (x @ torch.cat(centres).T).amax(dim=1)).clamp(min=0)
        if float(dist.sum()) <= 0:
            break
        centres.append(x[torch.multinomial(dist, 1, generator=generator)])
    c = torch.cat(centres)
    for _ in range(iterations):
        assign = (x @ c.T).argmax(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        used = torch.bincount(assign, minlength=c.shape[0]) > 0
        c = torch.where(used[:, None], _unit(sums), c)
    return c


@torch.no_grad()
def teacher_segments(targets: list[FeatureTargets], bank: RayBank, image_sizes: list[tuple[int, int]],
                     clusters: int = DEFAULT_CLUSTERS, seed: int = 0) -> list[np.ndarray]:
    """Segments of the training views from the teachers' own features: each pixel's concatenated unit teacher
    features (bilinear at the pixel centre, as the feature loss samples them) are clustered by cosine k-means
    over the whole scene (so one cluster means one thing in every view).

    Args:
        targets: the teachers' maps (the field heads' training targets).
        bank: the training rays; image_sizes: ``(W_k, H_k)`` of each training view.
        clusters: k of the k-means; seed: for the sample and the seeding.

    Returns:
        one ``[H_k, W_k]`` int map of cluster ids per training view (-1 where no ray, e.g. a masked pixel).
    """
    gen = torch.Generator(device=bank.rgb.device).manual_seed(seed + 4099)
    n = len(bank)
    pick = torch.randint(0, n, (min(KMEANS_SAMPLES, n),), generator=gen, device=bank.rgb.device)
    sample = torch.cat([_unit(t.sample(bank.image_index[pick], bank.pixel[pick])) for t in targets], dim=-1)
    centres = spherical_kmeans(sample, clusters, gen)
    maps = []
    for view, (w, h) in enumerate(image_sizes):
        feats, pixel = _view_features(targets, bank, view)
        seg = np.full((h, w), -1, dtype=np.int64)
        xy = pixel.floor().long().cpu().numpy()
        seg[xy[:, 1], xy[:, 0]] = (feats @ centres.T).argmax(dim=1).cpu().numpy()
        maps.append(seg)
    return maps
