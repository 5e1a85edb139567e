"""Photometric hypotheses: where PnP has too few matches (small photos, a blurry field), compare pictures.

The view bank keeps a colour thumbnail of every view. A photo's thumbnail is compared with all of them by
normalised cross-correlation (each colour channel centred on its own mean, so a photo at another exposure
still correlates); the best views are candidate poses. Each candidate is moved by a short photometric
refinement with large steps (:data:`SEARCH_REFINE`), then scored by the correlation of a small render at
the moved pose with the photo: the best-scoring pose wins.

:func:`thumbnail` and :func:`thumbnail_candidates` are pure; :func:`photometric_search` renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..scene.types import Intrinsics
from .refine import RefineOptions, refine_pose_photometric

__all__ = ["SEARCH_REFINE", "SETTLE_REFINE", "PhotometricHypothesis", "photometric_search", "render_score", "thumbnail",
           "thumbnail_candidates", "thumbnail_size"]

SEARCH_REFINE = RefineOptions(iterations=30, rays=384, lr_rotation=3e-2, lr_translation=3e-2, lr_final_factor=0.1,
                              render=RenderOptions(step_voxels=2.0, max_samples=256))
"""Refinement that moves a hypothesis several degrees (Adam steps of up to ~1.7°) at a coarse sampling."""

SETTLE_REFINE = RefineOptions(iterations=60, rays=512, lr_rotation=1e-2, lr_translation=1e-2, lr_final_factor=0.05,
                              render=RenderOptions(step_voxels=2.0, max_samples=256))
"""Refinement that brings the winning hypothesis from a few degrees off to the fine refinement's reach."""


def thumbnail(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A picture as a correlation-ready vector.

    Args:
        image: ``[H, W, 3]`` in [0, 1].
        size: ``(height, width)`` of the thumbnail (antialiased bilinear resize; the aspect follows ``size``).
    Returns:
        ``[3 · h · w]``: each channel minus its mean, the whole scaled to unit length (zero for a flat image).
    """
    x = image.float().permute(2, 0, 1)[None]
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    x = (x - x.mean(dim=(1, 2), keepdim=True)).reshape(-1)
    norm = x.norm()
    # a flat image leaves rounding residue only: no pattern to correlate
    return x / norm if norm > 1e-4 * max(1, x.numel()) ** 0.5 else torch.zeros_like(x)


def thumbnail_size(intr: Intrinsics, long_side: int) -> tuple[int, int]:
    """``(height, width)`` of a thumbnail of an ``intr``-sized image with ``long_side`` pixels on the long side."""
    scale = long_side / max(intr.width, intr.height)
    return max(1, round(intr.height * scale)), max(1, round(intr.width * scale))


def thumbnail_candidates(bank_thumbs: torch.Tensor, photo_thumb: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` bank views whose thumbnails correlate best with the photo's, best first.

    Args:
        bank_thumbs: ``[B, F]`` unit thumbnails (:func:`thumbnail`).
        photo_thumb: ``[F]`` the photo's.
    """
    scores = bank_thumbs.float() @ photo_thumb.float()
    return torch.topk(scores, min(k, scores.numel())).indices.tolist()


def _device(fld: GridField) -> torch.device:
    return next(iter(fld.sparse_grids().values())).values.device


def render_score(fld: GridField, photo: torch.Tensor, intr: Intrinsics, c2w: np.ndarray, long_side: int,
                 render: RenderOptions) -> float:
    """Correlation in [-1, 1] of a ``long_side``-pixel render at ``c2w`` with the photo (both thumbnailed to it)."""
    small = intr.long_side_at_most(long_side)
    with torch.no_grad():
        rgb = render_image(fld, torch.as_tensor(c2w, dtype=torch.float32, device=_device(fld)), small,
                           render)["rgb"].float().cpu()
    size = (small.height, small.width)
    return float(thumbnail(rgb, size) @ thumbnail(photo, size))


@dataclass
class PhotometricHypothesis:
    """A candidate after the search: its ``name``, moved pose ``c2w [4, 4]`` and render ``score``."""

    name: str
    c2w: np.ndarray
    score: float


def photometric_search(fld: GridField, photo: torch.Tensor, intr: Intrinsics,
                       candidates: list[tuple[str, np.ndarray]], score_size: int = 32,
                       opts: RefineOptions = SEARCH_REFINE, seed: int = 0) -> list[PhotometricHypothesis]:
    """Move every candidate by a short photometric refinement and score it; best first.

    Args:
        fld: the trained field.
        photo: ``[H, W, 3]`` in [0, 1].
        intr: the photo's intrinsics.
        candidates: ``[(name, c2w [4, 4]), ...]``.
        score_size: long side of the scoring render.
        opts: the search's refinement settings.
        seed: pixel-sampling seed of each refinement.
    Returns:
        :class:`PhotometricHypothesis` list sorted by descending score.
    """
    out = []
    for name, c2w in candidates:
        moved, _ = refine_pose_photometric(fld, photo, intr, c2w, opts, seed=seed)
        out.append(PhotometricHypothesis(name, moved, render_score(fld, photo, intr, moved, score_size,
                                                                   opts.render)))
    return sorted(out, key=lambda h: -h.score)
