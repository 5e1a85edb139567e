"""Query-photo perturbations for robustness figures: another exposure, small occluders, another size.

Pure functions of an image ``[H, W, 3]`` in [0, 1] (torch); each returns the changed photo (and, for a
resize, the intrinsics that go with it).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..scene.types import Intrinsics

__all__ = ["VARIANTS", "add_occluders", "change_exposure", "resize_photo"]


def change_exposure(image: torch.Tensor, gain: float = 0.6, gamma: float = 1.2) -> torch.Tensor:
    """``clip(gain · image^gamma)``: a darker, more contrasted photo for gain < 1, gamma > 1."""
    return (gain * image.clamp(0, 1) ** gamma).clamp(0, 1)


def add_occluders(image: torch.Tensor, count: int = 3, side_frac: float = 0.15, seed: int = 0) -> torch.Tensor:
    """Paste ``count`` flat random-coloured squares of side ``side_frac`` of the short side at random places."""
    rng = np.random.default_rng(seed)
    out = image.clone()
    H, W = image.shape[:2]
    side = max(1, round(side_frac * min(H, W)))
    for _ in range(count):
        r, c = int(rng.integers(0, H - side + 1)), int(rng.integers(0, W - side + 1))
        out[r:r + side, c:c + side] = torch.as_tensor(rng.uniform(0, 1, size=3), dtype=out.dtype)
    return out


def resize_photo(image: torch.Tensor, intr: Intrinsics, factor: float) -> tuple[torch.Tensor, Intrinsics]:
    """The photo resized by ``factor`` (antialiased bilinear) and its intrinsics."""
    new = intr.scaled(factor)
    x = image.float().permute(2, 0, 1)[None]
    resized = F.interpolate(x, size=(new.height, new.width), mode="bilinear", align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).clamp(0, 1), new


VARIANTS = {
    "exposure": lambda img, intr: (change_exposure(img), intr),
    "occluders": lambda img, intr: (add_occluders(img), intr),
    "resized": lambda img, intr: resize_photo(img, intr, 2.0 / 3.0),
}
"""Named variants used by the benchmark: exposure (gain 0.6, gamma 1.2), three occluders of 15 % of the
short side, and the photo at 2/3 of its size."""
