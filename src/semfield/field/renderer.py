"""Render rays through a GridField by occupancy-grid marching.

1. Candidate samples at a fixed step along each ray (``step_voxels`` times the field's current voxel size,
   jittered within each step when training), between the ray's entry into and exit from the outer box.
2. Candidates in empty space — where the field's max-pooled density (a conservative occupancy grid) gives
   an opacity below ``occupied_alpha`` per voxel — are skipped: no grid lookup at all. Each ray's occupied
   candidates are packed to the front of a ``[R, S]`` block (S = the most any ray has, a few times fewer
   than the candidates), so compositing never touches empty space.
3. The density of the occupied candidates is read without gradient to find how far each ray still sees;
   only the samples with transmittance above ``min_transmittance`` are read again with autograd, so the
   gradient scatter is paid at the ray's first surface, not behind it.
4. Colour (and feature heads) are evaluated only at seen samples with opacity above ``min_alpha``.
Whatever passes every sample ends on the background (``RenderOptions.background``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..render.composite import alpha_from_density, expected_depth, median_depth, weights_from_alpha
from ..render.sampling import ray_aabb
from .grid_field import GridField


@dataclass
class RenderOptions:
    step_voxels: float = 1.5
    max_samples: int = 384
    near: float = 0.05
    occupied_alpha: float = 5e-3
    min_transmittance: float = 1e-3
    min_alpha: float = 1e-4
    heads: tuple[str, ...] = ()
    # What a ray that passes every sample ends on: "boundary" (the outer box wall, coloured by the colour
    # grid: a skybox for open captures), "random" (a random colour per ray: training of closed scenes,
    # which forces surfaces to be opaque), or a grey level "0.5".
    background: str = "boundary"
    # Training only (stratified rays), for the heads whose HeadConfig.roulette is on: a sample whose
    # compositing weight w is below head_roulette is kept with probability w / head_roulette and then
    # weighs head_roulette ("Russian roulette"): each ray's rendered feature keeps its expectation, and the
    # head looks up and updates fewer samples (the thin tails in front of and behind a surface). 0: off.
    head_roulette: float = 0.01


def sample_steps(near: torch.Tensor, far: torch.Tensor, step: float, max_samples: int, stratified: bool,
                 generator: torch.Generator | None = None):
    """Fixed-size steps from ``near`` to ``far`` (``[R]``), at most ``max_samples`` per ray.

    Returns:
        t ``[R, S]`` sample distances (step midpoints, jittered when ``stratified``), deltas ``[R, S]``
        (0 past ``far``), with S = min(max_samples, ceil(max(far - near) / step)).
    """
    R = near.shape[0]
    span = (far - near).clamp(min=0)
    S = max(1, min(max_samples, math.ceil(float(span.detach().max()) / step) if R else 1))
    step_r = torch.maximum(span / S, torch.full_like(span, step))  # rays longer than S steps stretch
    k = torch.arange(S, device=near.device, dtype=near.dtype)
    start = near[:, None] + k * step_r[:, None]
    if stratified:
        jitter = torch.rand(R, S, device=near.device, dtype=near.dtype, generator=generator)
    else:
        jitter = torch.full((R, S), 0.5, device=near.device, dtype=near.dtype)
    t = start + jitter * step_r[:, None]
    end = torch.minimum(start + step_r[:, None], far[:, None])
    deltas = (end - start).clamp(min=0)
    t = torch.minimum(t, far[:, None])
    return t, deltas


def pack_occupied(occupied: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Where each ray's occupied candidates go when they are packed to the front of a narrower block.

    Args:
        occupied: ``[R, C]`` bool, candidate samples worth evaluating.
    Returns:
        ``src [N]`` flat candidate indices (row-major in ``[R, C]``) of the occupied ones, ``dst [N]`` their
        flat indices in the packed ``[R, S]`` block (same order: rays, then along the ray), and ``S`` (the
        most occupied candidates of any ray; at least 1).

    >>> src, dst, S = pack_occupied(torch.tensor([[False, True, True], [True, False, False]]))
    >>> src.tolist(), dst.tolist(), S
    ([1, 2, 3], [0, 1, 2], 2)
    """
    R, C = occupied.shape
    S = max(1, int(occupied.sum(dim=1).max())) if R else 1
    src = occupied.reshape(-1).nonzero().squeeze(1)
    rank = occupied.cumsum(dim=1).reshape(-1)[src] - 1  # position along the ray among the occupied ones
    return src, (src // C) * S + rank, S


def render_rays(fld: GridField, origins: torch.Tensor, dirs: torch.Tensor, z_per_t: torch.Tensor,
                opts: RenderOptions, stratified: bool = False, generator: torch.Generator | None = None,
                head_rays: int | None = None, centred_heads: bool = False, colour: bool = True,
                roulette_generator: torch.Generator | None = None):
    """Volume-render rays.

    Args:
        origins, dirs: ``[R, 3]`` ray origins and unit directions (world).
        z_per_t: ``[R]`` planar depth per unit ray distance (from :func:`semfield.render.rays.rays_from_pixels`).
        opts: sampling settings and heads to render.
        stratified: jitter samples (training).
        head_rays: render the heads for the first ``head_rays`` rays only (default: all).
        centred_heads: leave the teachers' mean features out of the heads (what training compares).
        colour: False skips the colour MLP (``rgb`` is then zero): depth-only renders, e.g. of a query's view.
        roulette_generator: draws the heads' Russian roulette (default: ``generator``). Training passes its
            own, so that turning the roulette on or off leaves the rays and the geometry the same.
    Returns:
        dict with ``rgb [R, 3]``, ``depth [R]`` (planar, camera z), ``distance [R]`` (along the ray),
        ``median_depth [R]``, ``median_distance [R]`` (where the accumulated weight reaches 1/2),
        ``acc [R]`` (opacity of the samples, without the boundary), ``far [R]`` (where the ray leaves the outer
        box: the boundary background), ``weights [R, S]``, ``alpha [R, S]``,
        ``t [R, S]``, ``deltas [R, S]`` (the occupied samples of each ray in order, padded at ``far`` with
        zero intervals; S = the most occupied samples of any ray, see :func:`pack_occupied`),
        ``samples`` (counts of candidate, occupied, seen and coloured samples), and one ``[R_h, dim]`` entry per head
        in ``opts.heads`` (``R_h`` = min(R, head_rays)). Head features are composited with detached weights: they never move geometry.
    """
    R = origins.shape[0]
    aabb = torch.as_tensor(fld.outer_aabb, device=origins.device, dtype=origins.dtype)
    near, far, _ = ray_aabb(origins, dirs, aabb, near_min=opts.near)
    t_cand, deltas_cand = sample_steps(near, far, opts.step_voxels * fld.voxel, opts.max_samples, stratified,
                                       generator)
    n_cand = t_cand.shape[1]
    pts = (origins[:, None, :] + dirs[:, None, :] * t_cand[..., None]).reshape(-1, 3)

    with torch.no_grad():
        # occupied: the pooled density makes one voxel more opaque than occupied_alpha, whatever the step
        # (compared on raw values: no activation on the many candidates; all candidates lie in the box).
        raw_min = fld.raw_for_sigma(-math.log1p(-opts.occupied_alpha) / fld.voxel)
        occupied = deltas_cand.reshape(-1) > 0
        if fld.occupancy_ready:
            occupied &= fld.pooled_raw(pts) > raw_min
        src, occ, S = pack_occupied(occupied.view(R, n_cand))
    # Empty candidates have zero opacity and change no weight, depth or loss: only the occupied ones are
    # kept (``occ``: their packed positions, ``src``: their candidate indices); padding sits at ``far``.
    t = far.detach()[:, None].expand(R, S).reshape(-1).index_put((occ,), t_cand.reshape(-1)[src]).view(R, S)
    deltas = torch.zeros(R * S, device=pts.device, dtype=pts.dtype).index_put(
        (occ,), deltas_cand.reshape(-1)[src]).view(R, S)
    with torch.no_grad():
        idx, w, _ = fld.corners(pts[src])
        sig_occ = fld.activate_density(fld.density.lookup_nograd(idx, w).squeeze(-1))
        sigma_ng = torch.zeros(R * S, device=pts.device, dtype=pts.dtype).index_copy_(0, occ, sig_occ)
        _, _, trans_ng = weights_from_alpha(alpha_from_density(sigma_ng.view(R, S), deltas),
                                            return_transmittance=True)
        seen_sub = (trans_ng.reshape(-1)[occ] > opts.min_transmittance).nonzero().squeeze(1)
    seen, seen_src = occ[seen_sub], src[seen_sub]
    if pts.requires_grad:  # rays that need gradients (pose refinement): corners through autograd
        idx, w, _ = fld.corners(pts[seen_src])
    else:
        idx, w = idx[seen_sub], w[seen_sub]
    if torch.is_grad_enabled():
        # Samples behind a saturated ray have ~zero gradient: only the seen ones go through autograd.
        sigma = sigma_ng.index_put((seen,), fld.sigma(idx, w)).view(R, S)
    else:
        sigma = sigma_ng.view(R, S)
    alpha = alpha_from_density(sigma, deltas)
    weights, t_final = weights_from_alpha(alpha)

    # Colour where the ray still sees and the sample is not empty. A sample with high transmittance but
    # tiny alpha keeps its colour, or it could never grow into a surface.
    colour_sub = (alpha.detach().reshape(-1)[seen] > opts.min_alpha).nonzero().squeeze(1)
    keep, keep_src = seen[colour_sub], seen_src[colour_sub]
    acc = weights.sum(dim=-1)
    if not colour:
        rgb = torch.zeros(R, 3, device=origins.device, dtype=weights.dtype)
    else:
        rgb_s = fld.rgb(idx[colour_sub], w[colour_sub], dirs[keep // S])
        rgb_all = torch.zeros(R * S, 3, device=origins.device, dtype=rgb_s.dtype).index_copy(0, keep, rgb_s)
        rgb = torch.einsum("rs,rsc->rc", weights, rgb_all.view(R, S, 3))
        if opts.background == "boundary":
            far_pts = origins + dirs * (far - 1e-4)[:, None]
            fidx, fw, _ = fld.corners(far_pts)
            rgb = rgb + t_final[:, None] * fld.rgb(fidx, fw, dirs)
        elif opts.background == "random":
            bg = torch.rand(R, 3, device=origins.device, dtype=rgb.dtype, generator=generator)
            rgb = rgb + t_final[:, None] * bg
        else:
            rgb = rgb + t_final[:, None] * float(opts.background)
    distance = expected_depth(weights, t, far)
    median = median_depth(weights.detach(), t, far)
    out = {"rgb": rgb, "depth": distance * z_per_t, "distance": distance, "acc": acc, "far": far,
           "median_depth": median * z_per_t, "median_distance": median,
           "weights": weights, "alpha": alpha, "t": t, "deltas": deltas,
           "samples": {"candidates": R * n_cand, "occupied": int(occ.numel()), "seen": int(seen.numel()),
                       "coloured": int(keep.numel())}}
    if opts.heads:
        n_head = R if head_rays is None else min(R, head_rays)
        head_sub = (keep < n_head * S).nonzero().squeeze(1)  # the first n_head rays carry features
        hk, hk_src = keep[head_sub], keep_src[head_sub]
        wd = weights.detach().reshape(-1)[hk]
        every = thinned = (hk, hk_src, wd)  # (packed positions, candidate indices, weights) a head reads
        if stratified and opts.head_roulette > 0 and any(fld.config.heads[n].roulette for n in opts.heads):
            chance = (wd / opts.head_roulette).clamp(max=1.0)
            draw = torch.rand(chance.shape, device=chance.device,
                              generator=generator if roulette_generator is None else roulette_generator)
            kept = (draw < chance).nonzero().squeeze(1)
            thinned = (hk[kept], hk_src[kept], wd[kept] / chance[kept])
        out["samples"]["head"] = int(hk.numel())
        out["samples"]["head_thinned"] = int(thinned[0].numel())
        weight_h = acc.detach()[:n_head]
        if opts.background == "boundary":
            weight_h = weight_h + t_final.detach()[:n_head]
        for name in opts.heads:
            hk, hk_src, wd = thinned if fld.config.heads[name].roulette else every
            # The decoder is affine, so compositing latents and decoding once per ray equals decoding
            # every sample: sum_i w_i (A z_i + b) = A (sum_i w_i z_i) + b * acc.
            # A view-dependent head's latents mix by the ray's direction, which every sample of the ray
            # shares: they too are composited first and mixed once per ray.
            # (hk is in packed order, rays then along the ray, as the compositing needs)
            comp = fld.composite_head_values(name, pts[hk_src], wd, hk // S, n_head)
            if opts.background == "boundary":  # the outer box is a surface: walls seen through it get features
                far_pts = origins[:n_head] + dirs[:n_head] * (far[:n_head] - 1e-4)[:, None]
                comp = comp + t_final.detach()[:n_head, None] * fld.head_values(name, far_pts)
            latent = fld.view_latent(name, comp, dirs[:n_head])
            out[name] = fld.decode_head(name, latent, weight_h, centred=centred_heads)
    return out


@torch.no_grad()
def render_image(fld: GridField, c2w: torch.Tensor, intr, opts: RenderOptions, chunk: int = 8192,
                 colour: bool = True):
    """Render a whole image: dict of ``[H, W, C]`` (``rgb``, heads) and ``[H, W]`` (``depth``, ``acc``).

    ``chunk`` rays at a time: with 768 samples per ray (evaluation settings) a chunk's per-sample tensors
    take ~350 MB at 8192 rays, which is what sets a training process's peak memory. ``colour``: see
    :func:`render_rays`.
    """
    from ..render.rays import image_rays

    origins, dirs, zpt = image_rays(c2w, intr)
    parts: dict[str, list[torch.Tensor]] = {}
    for s in range(0, origins.shape[0], chunk):
        out = render_rays(fld, origins[s:s + chunk], dirs[s:s + chunk], zpt[s:s + chunk], opts, colour=colour)
        for k in ("rgb", "depth", "median_depth", "acc", *opts.heads):
            parts.setdefault(k, []).append(out[k])
    H, W = intr.height, intr.width
    return {k: torch.cat(v).view(H, W, -1).squeeze(-1) if k in ("depth", "median_depth", "acc") else torch.cat(v).view(H, W, -1)
            for k, v in parts.items()}
