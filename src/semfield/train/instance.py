"""Training the instance head: per-view 2D masks, contrastive batches, and the head's settings.

``TrainConfig.instance`` (None = no instance head) holds :class:`InstanceSettings` as a dict, e.g.
``{"masks": {"kind": "simulated"}, "dim": 16, "temperature": 0.1}``. Each iteration ``views_per_step``
training views with at least two masks are drawn, and in each ``pixels_per_view`` pixels: a share
``1 - uniform_share`` of them a mask drawn uniformly, then a pixel of its interior (at least ``interior_px``
pixels from any other mask; the whole mask when nothing is left of it), so small objects count as much as
the floor; the rest uniformly among the view's masked pixels. Interior-only mask draws sample every pixel of
a small object far more densely than the table around it: when they reached the mask borders, which a mask
generator places a pixel or two off at random, the few border pixels a mask wrongly claimed outweighed the
table's and objects grew a halo over the table. Border pixels now come only from the uniform draws, which
sample both sides of a border equally densely, so the field puts the border where most views do. Those rays
lead the iteration's ray batch (they also carry the photometric loss), the field renders the ``instance``
head for them with detached weights (no gradient reaches density or colour), and the contrastive loss of
:func:`semfield.panoptic.contrastive.instance_contrastive_loss` is added with weight ``weight``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from dataclasses import field as dc_field
from pathlib import Path

import numpy as np
import torch

from ..errors import SemfieldError
from ..field.grid_field import HeadConfig
from ..scene.images import load_rgb
from ..scene.types import Scene
from .balanced import group_rays
from .data import RayBank

INSTANCE_HEAD = "instance"  # the field head the contrastive loss trains


@dataclass
class InstanceSettings:
    """The instance head: its mask source, width and contrastive loss (see the module docstring).

    ``voxel_factor``: head voxel size relative to the density grid's; ``interior_px`` and ``uniform_share``:
    the pixel draws (see the module docstring).
    """

    masks: dict = dc_field(default_factory=lambda: {"kind": "simulated"})
    dim: int = 16
    voxel_factor: float = 1.0
    temperature: float = 0.1
    pull_weight: float = 0.5
    weight: float = 1.0
    views_per_step: int = 4
    pixels_per_view: int = 128
    interior_px: float = 3.0
    uniform_share: float = 0.5

    @classmethod
    def from_dict(cls, d: dict | None) -> InstanceSettings:
        if not isinstance(d, dict):
            raise SemfieldError(f"instance settings must be an object, got {d!r}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise SemfieldError(f"unknown instance settings: {', '.join(sorted(unknown))}")
        s = cls(**d)
        if (s.dim < 2 or s.temperature <= 0 or s.views_per_step < 1 or s.pixels_per_view < 2 or s.interior_px < 0
                or not 0.0 <= s.uniform_share <= 1.0):
            raise SemfieldError("instance settings: need dim >= 2, temperature > 0, views_per_step >= 1, "
                                "pixels_per_view >= 2, interior_px >= 0 and uniform_share in [0, 1] "
                                f"(got {asdict(s)})")
        return s

    def head(self) -> HeadConfig:
        return HeadConfig(dim=self.dim, latent=0, voxel_factor=self.voxel_factor, loss="contrastive", centre=False,
                          unit=True)

    @property
    def rays_per_step(self) -> int:
        return self.views_per_step * self.pixels_per_view


INIT_STD = 0.01  # instance grid values start random: at zero every feature, centre and gradient is zero


@torch.no_grad()
def init_instance_head(values: torch.Tensor, seed: int) -> None:
    """Fill the instance head's grid values ``[V, C]`` with N(0, INIT_STD^2) noise drawn from ``seed``."""
    gen = torch.Generator(device=values.device).manual_seed(seed + 7919)
    values.copy_(torch.randn(values.shape, generator=gen, device=values.device) * INIT_STD)


class InstanceMasks:
    """Segment maps of the training views, indexed by training ray, and the contrastive batch sampler.

    Args:
        segments: one ``[H_k, W_k]`` int map per training view (RayBank order), -1 = no mask.
        bank: the training rays (to find each masked pixel's ray).
        settings: batch sizes.
    """

    def __init__(self, segments: list[np.ndarray], bank: RayBank, settings: InstanceSettings):
        self.settings = settings
        self.rays, self.group_start, self.group_size, view_groups = group_rays(segments, bank)
        device = self.rays.device
        self.views = [k for k, (a, b) in enumerate(view_groups) if b - a >= 2]
        if not self.views:
            raise SemfieldError("no training view has two or more instance masks: nothing to contrast")
        self.view_groups = torch.tensor([view_groups[k] for k in self.views], dtype=torch.long, device=device)
        self.group_of_ray = torch.repeat_interleave(torch.arange(len(self.group_size), device=device),
                                                    self.group_size)  # [M] group of each grouped ray
        interiors = [mask_interiors(seg, settings.interior_px) for seg in segments]
        self.inner_rays, self.inner_start, self.inner_size, inner_groups = group_rays(interiors, bank)
        if inner_groups != view_groups:  # every mask keeps at least its own pixels, so the groups match
            raise AssertionError("mask interiors lost a mask")

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A contrastive batch: ``(rays [K], group [K], view [K])`` with K = views x pixels; ``group`` indexes
        the (view, mask) pairs of all training views, ``view`` the batch's view slot."""
        s, device = self.settings, self.rays.device
        n_views = min(s.views_per_step, len(self.views))
        pick = torch.randperm(len(self.views), generator=generator, device=device)[:n_views]
        first, last = self.view_groups[pick, 0], self.view_groups[pick, 1]
        n_uniform = round(s.pixels_per_view * s.uniform_share)
        n_inner = s.pixels_per_view - n_uniform
        # interior draws: a mask uniformly, then a pixel of its interior
        u = torch.rand(n_views, n_inner, generator=generator, device=device)
        inner_group = first[:, None] + (u * (last - first)[:, None]).long().minimum(last[:, None] - 1)
        v = torch.rand(n_views, n_inner, generator=generator, device=device)
        within = (v * self.inner_size[inner_group]).long().minimum(self.inner_size[inner_group] - 1)
        inner_rays = self.inner_rays[self.inner_start[inner_group] + within]
        # uniform draws: any masked pixel of the view (a view's groups are contiguous in ``rays``)
        lo = self.group_start[first]
        hi = self.group_start[last - 1] + self.group_size[last - 1]
        w = torch.rand(n_views, n_uniform, generator=generator, device=device)
        index = lo[:, None] + (w * (hi - lo)[:, None]).long().minimum(hi[:, None] - 1)
        rays = torch.cat([inner_rays, self.rays[index]], dim=1)
        group = torch.cat([inner_group, self.group_of_ray[index]], dim=1)
        view = torch.arange(n_views, device=device)[:, None].expand(-1, s.pixels_per_view)
        return rays.reshape(-1), group.reshape(-1), view.reshape(-1)


def mask_interiors(segments: np.ndarray, radius: float) -> np.ndarray:
    """``[H, W]`` segment map with each mask cut to its interior: the pixels with no pixel of another value
    (another mask, or -1) within ``radius`` pixels (a disc; image borders do not count). A mask with no
    interior pixel keeps all its pixels; ``radius`` 0 changes nothing.

    Example:
        >>> seg = np.zeros((5, 7), dtype=np.int64); seg[:, 4:] = 1
        >>> mask_interiors(seg, 1.0)
        array([[ 0,  0,  0, -1, -1,  1,  1],
               [ 0,  0,  0, -1, -1,  1,  1],
               [ 0,  0,  0, -1, -1,  1,  1],
               [ 0,  0,  0, -1, -1,  1,  1],
               [ 0,  0,  0, -1, -1,  1,  1]])
    """
    from scipy import ndimage

    seg = np.asarray(segments, dtype=np.int64)
    r = int(np.floor(radius))
    if r < 1:
        return seg.copy()
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disc = xx ** 2 + yy ** 2 <= radius ** 2
    low = ndimage.minimum_filter(seg, footprint=disc, mode="nearest")
    high = ndimage.maximum_filter(seg, footprint=disc, mode="nearest")
    out = np.where((low == seg) & (high == seg), seg, -1)
    for k in np.setdiff1d(np.unique(seg[seg >= 0]), np.unique(out[out >= 0])):
        out[seg == k] = k  # nothing left of a thin mask: all of it
    return out


def prepare_instance(scene: Scene, config, cache_root: str | Path | None = None, progress: bool = True):
    """The config with the instance head added to ``field.heads`` and the training views' segment maps
    (RayBank order), from the mask source named in ``config.instance``; ``(config, None)`` without one."""
    from ..panoptic.mask_source import build_mask_source, masks_cached

    if config.instance is None:
        return config, None
    settings = InstanceSettings.from_dict(config.instance)
    if INSTANCE_HEAD in config.teachers:
        raise SemfieldError(f"a teacher is named {INSTANCE_HEAD!r}: that head name is the instance field's")
    source = build_mask_source(settings.masks, scene, device=config.device, cache_root=cache_root)
    frames = scene.split("train")
    images = [torch.from_numpy(np.ascontiguousarray(load_rgb(f.image_path))) for f in frames]
    segments = masks_cached(source, images, frames, cache_root=cache_root, progress=progress)
    heads = dict(config.field.heads)
    heads[INSTANCE_HEAD] = settings.head()
    return replace(config, field=replace(config.field, heads=heads)), segments
