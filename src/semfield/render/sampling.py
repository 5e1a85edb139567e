"""Where rays meet the scene box (the marching itself is in semfield.field.renderer.sample_steps)."""

from __future__ import annotations

import torch


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, aabb: torch.Tensor, near_min: float = 0.0):
    """Entry and exit distances of rays through an axis-aligned box.

    Args:
        origins, dirs: ``[R, 3]`` (dirs need not be unit length; t is in units of ``|dirs|``).
        aabb: ``[2, 3]`` min and max corners.
        near_min: entry distances are clamped to at least this.
    Returns:
        near ``[R]``, far ``[R]``, hit ``[R]`` bool (far > near). Rays that miss get near = far.
    """
    safe = torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (aabb[0] - origins) / safe
    t1 = (aabb[1] - origins) / safe
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=near_min)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    far = torch.where(hit, far, near)
    return near, far, hit
