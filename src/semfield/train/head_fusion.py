"""Fuse the teachers' features of every training pixel into a head's grid, through the field's own rendering.

A head trained by gradient steps on a few thousand rays per iteration sees each of its vertices a few dozen
times, from noisy targets, and Adam leaves each vertex near its latest targets rather than their mean: the
"salt and pepper" of relevancy maps. Once the geometry is trained, the best a plain (view-independent)
head can do in the least-squares sense is close to the weighted mean of the targets of every ray that
reaches a vertex, weighted as rendering weighs it. That mean is computed here in one pass:

for every training ray ``r`` (every ``stride``-th pixel on each axis) with compositing weights ``w_ri`` at
samples ``x_ri`` (and the outer-box wall behind them with the ray's remaining transmittance, when the
background is the boundary), and each head vertex ``c`` with trilinear weight ``τ_c(x)``:

    z_c = (Σ_r Σ_i w_ri τ_c(x_ri) ẑ_r + λ z_c^old) / (Σ_r Σ_i w_ri τ_c(x_ri) + λ)

where ``ẑ_r = Aᵀ (f_r − mean − b)`` is the ray's target in the head's latent space: the teacher feature
``f_r`` at its pixel minus the head's constant terms (the teacher mean, the decoder's bias ``b``), projected on
the decoder's columns ``A``. Before the pass the decoder is re-based (:func:`set_decoder_basis`) on the
principal directions of the teacher's features averaged over surface cells (:func:`surface_basis`), so ``A``
has orthonormal columns and holds the directions the scene's classes span (the noise of single pixels spreads
over every direction). ``λ`` (``prior``, in units of one ray's weight) keeps the trained value where few rays
reach a vertex; vertices with less than ``min_weight`` are not reached, and those next to reached ones (behind
surfaces, inside objects) take their reached neighbours' mean (:func:`fill_unreached`). This is OpenScene's
2D→3D fusion with the field's soft visibility instead of a depth test, stored in the head's grid, so
rendering and point lookups both read the multi-view mean.

View-dependent heads (``sh_degree > 0``) and unit heads (the instance head) are left as trained.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_rays
from ..field.warp import trilinear_corners
from .data import RayBank
from .features import FeatureTargets

MIN_WEIGHT = 1e-3  # samples lighter than this add nothing worth a scatter


@dataclass(frozen=True)
class HeadFusionConfig:
    """``enabled``: fuse after training; ``stride``: every ``stride``-th pixel on each axis of every training
    image; ``basis_stride``: the same for the decoder's basis (:func:`surface_basis`); ``prior``: weight (in
    rays) of the trained value; ``min_weight``: the weight a vertex needs to count as reached;
    ``fill_steps``: how far (in vertices) unreached space is filled; ``chunk``: rays per render."""

    enabled: bool = True
    stride: int = 2
    basis_stride: int = 2
    prior: float = 1.0
    min_weight: float = 0.05
    fill_steps: int = 3
    chunk: int = 4096

    def __post_init__(self):
        if self.stride < 1 or self.chunk < 1 or self.prior < 0:
            raise ValueError(f"head fusion needs stride >= 1, chunk >= 1 and prior >= 0 (got {self.stride}, "
                             f"{self.chunk}, {self.prior})")


def fusable_heads(fld: GridField, names) -> list[str]:
    """The heads among ``names`` that fusion can set: view-independent and not unit-normalised."""
    return [n for n in names if n in fld.config.heads and fld.config.heads[n].sh_degree == 0
            and not fld.config.heads[n].unit]


def latent_targets(fld: GridField, name: str, features: torch.Tensor) -> torch.Tensor:
    """Teacher features ``[R, dim]`` → the head's latents ``[R, width]``: ``A^T (f − mean − b)``, exact when the
    decoder ``A`` has orthonormal columns (as :func:`set_decoder_basis` makes it)."""
    target = features - fld.head_mean(name)
    if name not in fld.head_decoders:
        return target
    dec = fld.head_decoders[name]
    return (target - dec.bias) @ dec.weight


@torch.no_grad()
def set_decoder_basis(fld: GridField, name: str, basis: torch.Tensor, centre: torch.Tensor) -> None:
    """Make head ``name``'s decoder ``f = basis z + centre`` (``basis [dim, width]`` orthonormal columns),
    re-expressing every vertex's latent in it (``z' = basis^T (A z + b − centre)``), so the head decodes
    (nearly) as before wherever fusion does not reach."""
    dec = fld.head_decoders[name]
    values = fld.heads[name].values
    for rows in torch.arange(values.shape[0], device=values.device).split(1 << 16):
        decoded = values[rows] @ dec.weight.T + dec.bias
        values[rows] = (decoded - centre) @ basis
    dec.weight.copy_(basis)
    dec.bias.copy_(centre)


def principal_basis(means: torch.Tensor, counts: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``width`` principal directions ``[dim, width]`` and the mean ``[dim]`` of ``means [K, dim]``
    weighted by ``counts [K]``."""
    w = counts.float() / counts.sum()
    centre = (means * w[:, None]).sum(dim=0)
    x = (means - centre) * w.sqrt()[:, None]
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return vh[:width].T.contiguous(), centre


def strided_rays(bank: RayBank, stride: int) -> torch.Tensor:
    """Indices ``[M]`` of the bank's rays whose pixel lies on every ``stride``-th row and column."""
    px = (bank.pixel - 0.5).round().long()
    return torch.nonzero((px[:, 0] % stride == 0) & (px[:, 1] % stride == 0)).squeeze(1)


@torch.no_grad()
def surface_basis(fld: GridField, bank: RayBank, targets: FeatureTargets, opts: RenderOptions, name: str,
                  config: HeadFusionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The principal directions ``[dim, width]`` and mean ``[dim]`` of the teacher's features averaged over
    surface cells (two head voxels wide): every ``basis_stride``-th pixel's feature goes to the cell of its
    ray's median-depth point. Averaging over the views first keeps the per-view noise, which spreads over
    every direction, from outweighing the few directions the scene's classes span."""
    cell = 2.0 * fld.final_voxel * fld.config.heads[name].voxel_factor
    keys, rays = [], []
    for sel in strided_rays(bank, config.basis_stride).split(config.chunk):
        out = render_rays(fld, bank.origins[sel], bank.dirs[sel], bank.z_per_t[sel], opts, colour=False)
        hit = out["acc"] > 0.5
        p = bank.origins[sel][hit] + bank.dirs[sel][hit] * out["median_distance"][hit, None]
        keys.append(torch.floor(p / cell).long())
        rays.append(sel[hit])
    rays = torch.cat(rays)
    _, inverse, counts = torch.unique(torch.cat(keys), dim=0, return_inverse=True, return_counts=True)
    sums = torch.zeros(counts.shape[0], targets.dim, device=bank.origins.device)
    for part in torch.arange(rays.shape[0], device=rays.device).split(config.chunk * 4):  # features chunk by chunk
        r = rays[part]
        sums.index_add_(0, inverse[part], targets.sample(bank.image_index[r], bank.pixel[r]) - fld.head_mean(name))
    return principal_basis(sums / counts[:, None], counts, fld.config.heads[name].width)


@torch.no_grad()
def fuse_heads(fld: GridField, bank: RayBank, targets: dict[str, FeatureTargets], opts: RenderOptions,
               config: HeadFusionConfig = HeadFusionConfig(), progress: bool = False) -> dict:
    """Set each fusable head's grid to the rendering-weighted mean of its teacher's targets (module docstring).

    Args:
        fld: the trained field (its head grids are overwritten in place).
        bank: the training rays; targets: each head's teacher maps (as training uses them).
        opts: render options (the training's, without heads).
    Returns:
        ``{"heads": [...], "rays": M, "vertices": {head: vertices reached}, "filled": {head: vertices filled}}``.
    """
    from tqdm.auto import tqdm

    names = fusable_heads(fld, targets)
    report: dict = {"heads": names, "rays": 0, "vertices": {}, "filled": {}}
    if not names:
        return report
    rays = strided_rays(bank, config.stride)
    report["rays"] = int(rays.numel())
    opts = replace(opts, heads=())
    grids = {n: fld.heads[n] for n in names}
    num = {n: torch.zeros_like(grids[n].values) for n in names}
    den = {n: torch.zeros(grids[n].values.shape[0], device=fld.device_) for n in names}
    for n in names:
        if n in fld.head_decoders:
            basis, centre = surface_basis(fld, bank, targets[n], opts, n, config)
            set_decoder_basis(fld, n, basis, centre)
    for sel in tqdm(rays.split(config.chunk), desc="fuse heads", unit="chunk", disable=not progress):
        o, d, zpt = bank.origins[sel], bank.dirs[sel], bank.z_per_t[sel]
        out = render_rays(fld, o, d, zpt, opts, colour=False)
        w, t = out["weights"], out["t"]
        ray, s = torch.nonzero(w > MIN_WEIGHT, as_tuple=True)
        pts = o[ray] + d[ray] * t[ray, s, None]
        wts = w[ray, s]
        if opts.background == "boundary":  # the outer box is a surface with features too
            rest = (1.0 - out["acc"]).clamp(min=0)
            wall = torch.nonzero(rest > MIN_WEIGHT).squeeze(1)
            ray = torch.cat([ray, wall])
            pts = torch.cat([pts, o[wall] + d[wall] * (out["far"][wall] - 1e-4)[:, None]])
            wts = torch.cat([wts, rest[wall]])
        for n in names:
            f = latent_targets(fld, n, targets[n].sample(bank.image_index[sel], bank.pixel[sel]))
            idx, tw, _ = trilinear_corners(pts, fld.head_axes[n])
            cw = (tw * wts[:, None]).reshape(-1)
            flat = idx.reshape(-1)
            den[n].index_add_(0, flat, cw)
            num[n].index_add_(0, flat, f[ray].repeat_interleave(idx.shape[1], dim=0) * cw[:, None])
    for n in names:
        values = grids[n].values
        reached = den[n] > config.min_weight
        rows = reached.nonzero().squeeze(1)
        values[rows] = (num[n][rows] + config.prior * values[rows]) / (den[n][rows] + config.prior)[:, None]
        del num[n]
        filled = fill_unreached(values, reached, tuple(a.vertices for a in fld.head_axes[n]), config.fill_steps)
        report["vertices"][n] = int(reached.sum())
        report["filled"][n] = filled
    return report


@torch.no_grad()
def fill_unreached(values: torch.Tensor, reached: torch.Tensor, shape: tuple[int, int, int], steps: int) -> int:
    """Give vertices no ray reached (behind surfaces, inside objects) the mean of their reached neighbours
    (3 x 3 x 3), growing ``steps`` vertices into the unreached space; returns how many were filled.

    A point lookup on a surface mixes the corners on both sides of it; the inside ones would otherwise keep
    whatever training left there (a head's decoder bias, for a vertex never updated).
    ``values [V, C]`` in x-major vertex order over ``shape``; ``reached [V]`` bool."""
    known = reached.clone()
    nx, ny, nz = shape
    filled = 0
    for _ in range(steps):
        mask = known.to(values.dtype).view(1, 1, nx, ny, nz)
        weight = F.avg_pool3d(mask, 3, stride=1, padding=1)[0, 0].reshape(-1)
        grow = (~known) & (weight > 0)
        if not bool(grow.any()):
            break
        rows = grow.nonzero().squeeze(1)
        sums = torch.zeros(rows.shape[0], values.shape[1], dtype=values.dtype, device=values.device)
        for c in range(0, values.shape[1], 8):  # a few channels at a time: the pool is over the whole grid
            chunk = (values[:, c:c + 8] * known[:, None]).T.reshape(1, -1, nx, ny, nz)
            sums[:, c:c + 8] = F.avg_pool3d(chunk, 3, stride=1, padding=1)[0].reshape(chunk.shape[1], -1).T[rows]
        values[rows] = sums / weight[rows, None]
        known[rows] = True
        filled += int(rows.numel())
    return filled
