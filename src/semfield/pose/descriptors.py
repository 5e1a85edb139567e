"""Image descriptors for coarse localisation, from a DINOv2-style teacher (CLS token + patch features).

Both descriptors are computed from the image first resized to a fixed ``size`` (the view bank's render size),
so a sharp photo and a small render of the same view look alike to the teacher.

- ``global``: the CLS token and the mean patch feature, each unit-normalised, concatenated ``[2 D]``:
  what the regressor reads.
- ``layout``: the patch features average-pooled to a ``grid × grid`` layout, each cell unit-normalised,
  flattened and scaled to unit length ``[grid² D]``: what retrieval compares (it keeps where things are in
  the picture, which a pooled or CLS embedding mostly forgets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ImageDescriptors", "describe_image", "resize_image"]


@dataclass
class ImageDescriptors:
    """``global_vec [2 D]``, ``layout_vec [grid² D]`` (both unit length) and ``patches [h, w, D]``."""

    global_vec: torch.Tensor
    layout_vec: torch.Tensor
    patches: torch.Tensor


def resize_image(image: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """``[H, W, 3]`` → ``[h, w, 3]`` with the long side ``size`` (same aspect), or exactly ``size = (h, w)``
    (antialiased bilinear)."""
    H, W = image.shape[:2]
    if isinstance(size, tuple):
        h, w = size
    else:
        scale = size / max(H, W)
        h, w = max(1, round(H * scale)), max(1, round(W * scale))
    if (h, w) == (H, W):
        return image.float()
    x = image.float().permute(2, 0, 1)[None]
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0].permute(1, 2, 0)


def describe_image(teacher, image: torch.Tensor, size: int, grid: int = 4) -> ImageDescriptors:
    """Descriptors of one image.

    Args:
        teacher: a teacher whose ``extract`` gives patch ``features [h, w, D]`` and a ``global_embedding [D]``
            (DINOv2); without a global embedding the mean patch feature stands in for it.
        image: ``[H, W, 3]`` in [0, 1].
        size: long side the image is resized to before the teacher sees it.
        grid: cells per side of the layout descriptor.
    Returns:
        :class:`ImageDescriptors`.
    """
    out = teacher.extract(resize_image(image, size).clamp(0.0, 1.0))
    patches = out.features.float()
    mean_patch = patches.reshape(-1, patches.shape[-1]).mean(0)
    cls = out.global_embedding.float() if out.global_embedding is not None else mean_patch
    global_vec = torch.cat([F.normalize(cls, dim=0), F.normalize(mean_patch, dim=0)]) / (2 ** 0.5)
    pooled = F.adaptive_avg_pool2d(patches.permute(2, 0, 1)[None], grid)[0]  # [D, g, g]
    cells = F.normalize(pooled.reshape(pooled.shape[0], -1).T, dim=-1)  # [g², D]
    layout_vec = cells.reshape(-1) / grid  # g² unit cells: norm g
    return ImageDescriptors(global_vec=global_vec, layout_vec=layout_vec, patches=patches)
