"""Rendered head features of views, and a sample of them over the training views (what is clustered).

The instance head is trained on volume-rendered features (composited along each ray), so instances are
found on rendered features too (as PVLFF does), not on grid lookups at surface points. Each rendered pixel
also gets its surface point (the median depth back-projected), so the sample is a 3D point set as well.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm.auto import tqdm

from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..render.rays import image_rays
from ..scene.types import Frame


@dataclass
class RenderedSample:
    """Sampled rendered pixels: ``points [N, 3]`` (surface points), ``features[head] [N, D]``, ``view [N]``
    (index of the view in the list rendered)."""

    points: torch.Tensor
    features: dict[str, torch.Tensor]
    view: torch.Tensor


@torch.no_grad()
def render_view(fld: GridField, frame: Frame, opts: RenderOptions, heads: tuple[str, ...], stride: int = 1
                ) -> dict[str, torch.Tensor]:
    """Render ``heads`` at a view (every ``stride``-th pixel per axis): ``{head: [h, w, D], "points": [h, w, 3]}``."""
    intr = frame.intrinsics.scaled(1.0 / stride) if stride > 1 else frame.intrinsics
    c2w = torch.as_tensor(frame.c2w, dtype=torch.float32, device=fld.device_)
    out = render_image(fld, c2w, intr, replace(opts, heads=tuple(heads)), colour=False)
    origins, dirs, zpt = image_rays(c2w, intr)
    distance = out["median_depth"].reshape(-1) / zpt
    points = (origins + dirs * distance[:, None]).view(intr.height, intr.width, 3)
    return {"points": points, **{h: out[h] for h in heads}}


def sample_views(fld: GridField, frames: list[Frame], opts: RenderOptions, heads: tuple[str, ...], stride: int,
                 max_points: int, seed: int = 0, progress: bool = False) -> RenderedSample:
    """Render ``heads`` at ``frames`` (pixel ``stride``) and keep at most ``max_points`` random pixels."""
    rng = np.random.default_rng(seed)
    per_view = -(-max_points // max(1, len(frames)))
    points, feats, views = [], {h: [] for h in heads}, []
    for k, frame in enumerate(tqdm(frames, desc="render instance features", unit="view", disable=not progress)):
        out = render_view(fld, frame, opts, heads, stride)
        n = out["points"].shape[0] * out["points"].shape[1]
        pick = torch.as_tensor(np.sort(rng.choice(n, size=min(n, per_view), replace=False)))
        points.append(out["points"].reshape(n, 3)[pick])
        for h in heads:
            feats[h].append(out[h].reshape(n, -1)[pick])
        views.append(torch.full((pick.numel(),), k, dtype=torch.long))
    return RenderedSample(torch.cat(points), {h: torch.cat(v) for h, v in feats.items()}, torch.cat(views))
