"""Training the instance head: per-view 2D masks, contrastive batches, and the head's settings.

``TrainConfig.instance`` (None = no instance head) holds :class:`InstanceSettings` as a dict, e.g.
``{"masks": {"kind": "simulated"}, "dim": 16, "temperature": 0.1}``. Each iteration ``views_per_step``
training views with at least two masks are drawn, and in each ``pixels_per_view`` pixels (a mask drawn
uniformly, then a pixel in it, so small objects count as much as the floor). Those rays lead the iteration's
ray batch (they also carry the photometric loss), the field renders the ``instance`` head for them with
detached weights (no gradient reaches density or colour), and the contrastive loss of
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

    ``voxel_factor``: head voxel size relative to the density grid's.
    """

    masks: dict = dc_field(default_factory=lambda: {"kind": "simulated"})
    dim: int = 16
    voxel_factor: float = 1.0
    temperature: float = 0.1
    pull_weight: float = 0.5
    weight: float = 1.0
    views_per_step: int = 4
    pixels_per_view: int = 128

    @classmethod
    def from_dict(cls, d: dict | None) -> InstanceSettings:
        if not isinstance(d, dict):
            raise SemfieldError(f"instance settings must be an object, got {d!r}")
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise SemfieldError(f"unknown instance settings: {', '.join(sorted(unknown))}")
        s = cls(**d)
        if s.dim < 2 or s.temperature <= 0 or s.views_per_step < 1 or s.pixels_per_view < 2:
            raise SemfieldError("instance settings: need dim >= 2, temperature > 0, views_per_step >= 1 and "
                                f"pixels_per_view >= 2 (got {asdict(s)})")
        return s

    def head(self) -> HeadConfig:
        return HeadConfig(dim=self.dim, latent=0, voxel_factor=self.voxel_factor, loss="contrastive", centre=False)

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

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A contrastive batch: ``(rays [K], group [K], view [K])`` with K = views x pixels; ``group`` indexes
        the (view, mask) pairs of all training views, ``view`` the batch's view slot."""
        s, device = self.settings, self.rays.device
        n_views = min(s.views_per_step, len(self.views))
        pick = torch.randperm(len(self.views), generator=generator, device=device)[:n_views]
        first, last = self.view_groups[pick, 0], self.view_groups[pick, 1]
        u = torch.rand(n_views, s.pixels_per_view, generator=generator, device=device)
        group = first[:, None] + (u * (last - first)[:, None]).long().minimum(last[:, None] - 1)
        v = torch.rand(n_views, s.pixels_per_view, generator=generator, device=device)
        within = (v * self.group_size[group]).long().minimum(self.group_size[group] - 1)
        rays = self.rays[self.group_start[group] + within]
        view = torch.arange(n_views, device=device)[:, None].expand(-1, s.pixels_per_view)
        return rays.reshape(-1), group.reshape(-1), view.reshape(-1)


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
