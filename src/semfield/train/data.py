"""Training rays: every pixel of every training image, precomputed once."""

from __future__ import annotations

import numpy as np
import torch

from ..render.rays import image_rays
from ..scene.images import load_rgb
from ..scene.types import Frame


class RayBank:
    """All rays and colours of a set of frames.

    Attributes:
        origins, dirs: ``[N, 3]``; z_per_t ``[N]``; rgb ``[N, 3]`` in [0, 1]; image_index ``[N]`` int;
        pixel ``[N, 2]`` the ray's pixel centre (x, y) in its image, in pixels (centres at +0.5).
    """

    def __init__(self, frames: list[Frame], device: torch.device):
        origins, dirs, zpt, rgbs, image_index, pixels = [], [], [], [], [], []
        for i, f in enumerate(frames):
            k = f.intrinsics
            rgb = load_rgb(f.image_path, expect_size=(k.width, k.height))
            c2w = torch.as_tensor(f.c2w, dtype=torch.float32)
            o, d, z = image_rays(c2w, k)
            keep = torch.ones(o.shape[0], dtype=torch.bool)
            if f.mask_path is not None:
                from ..scene.images import load_uint

                keep = torch.as_tensor(load_uint(f.mask_path, expect_size=(k.width, k.height)) > 0).reshape(-1)
            ys, xs = torch.meshgrid(torch.arange(k.height), torch.arange(k.width), indexing="ij")
            pixels.append(torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)[keep].float() + 0.5)
            origins.append(o[keep])
            dirs.append(d[keep])
            zpt.append(z[keep])
            rgbs.append(torch.as_tensor(np.ascontiguousarray(rgb)).reshape(-1, 3)[keep])
            image_index.append(torch.full((int(keep.sum()),), i, dtype=torch.int32))
        self.origins = torch.cat(origins).to(device)
        self.dirs = torch.cat(dirs).to(device)
        self.z_per_t = torch.cat(zpt).to(device)
        self.rgb = torch.cat(rgbs).to(device)
        self.image_index = torch.cat(image_index).to(device)
        self.pixel = torch.cat(pixels).to(device)

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Indices ``[n]`` of a random batch of rays."""
        return torch.randint(0, len(self), (n,), generator=generator, device=self.rgb.device)

    def batch(self, n: int, generator: torch.Generator):
        """A random batch of ``n`` rays: (origins, dirs, z_per_t, rgb)."""
        sel = self.sample(n, generator)
        return self.origins[sel], self.dirs[sel], self.z_per_t[sel], self.rgb[sel]
