"""Where to put samples along rays: box intersection, uniform bins, inverse-CDF resampling."""

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


def uniform_bins(near: torch.Tensor, far: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` equal bins per ray between ``near [R]`` and ``far [R]``: edges ``[R, n + 1]``."""
    steps = torch.linspace(0.0, 1.0, n + 1, device=near.device, dtype=near.dtype)
    return near[:, None] + (far - near)[:, None] * steps


def sample_pdf(edges: torch.Tensor, weights: torch.Tensor, n: int, stratified: bool,
               generator: torch.Generator | None = None, uniform_mix: float = 0.0) -> torch.Tensor:
    """Inverse-CDF sampling of ``n`` new bin edges per ray from a piecewise-constant density.

    Args:
        edges: bin edges ``[R, B + 1]`` (sorted along the ray).
        weights: non-negative bin weights ``[R, B]``; rays whose weights sum to 0 sample uniformly.
        n: number of samples (returned as ``n + 1`` edges whose midpoints are the samples).
        stratified: jitter the CDF positions (training) instead of using their centres (evaluation).
        uniform_mix: share of the samples spread by bin length rather than by weight, so that a surface
            hidden behind a wrong early estimate still gets samples.
    Returns:
        new sorted edges ``[R, n + 1]``, one per CDF stratum (consecutive pairs are the new bins).
    """
    R, B = weights.shape
    w = weights + 1e-6
    pdf = w / w.sum(dim=-1, keepdim=True)
    if uniform_mix > 0:
        length = (edges[:, 1:] - edges[:, :-1]).clamp(min=0)
        pdf = (1 - uniform_mix) * pdf + uniform_mix * length / length.sum(dim=-1, keepdim=True).clamp(min=1e-12)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(dim=-1).clamp(max=1.0)], dim=-1)
    cdf[:, -1] = 1.0
    base = torch.arange(n + 1, device=edges.device, dtype=edges.dtype)
    if stratified:
        jitter = torch.rand(R, n + 1, device=edges.device, dtype=edges.dtype, generator=generator)
    else:
        jitter = torch.full((R, n + 1), 0.5, device=edges.device, dtype=edges.dtype)
    u = (base + jitter) / (n + 1)  # sorted: one position per stratum
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, B)
    cdf_lo, cdf_hi = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    e_lo, e_hi = edges.gather(1, idx - 1), edges.gather(1, idx)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo).clamp(min=1e-12)).clamp(0.0, 1.0)
    return e_lo + frac * (e_hi - e_lo)
