"""A dense grid whose cells are fine inside a focus box and coarse outside it, per axis.

Each axis is cut at four breakpoints ``outer_min ≤ focus_min < focus_max ≤ outer_max`` into three
segments, each mapped linearly onto a run of grid cells: the focus segment gets cells of size
``focus_voxel``, the two outer segments cells about ``outer_factor`` times larger. The grid stays one
continuous array (trilinear interpolation works across segment borders, no seams), and memory goes where
the pixels are: a 4 m room around a 2 m table costs a few times the table's voxels, not 8×.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AxisWarp:
    """Piecewise-linear map from one world axis to grid vertex coordinates.

    ``breaks`` = (outer_min, focus_min, focus_max, outer_max); ``cells`` = cells per segment. The grid has
    ``sum(cells) + 1`` vertices along this axis; vertex coordinate 0 is outer_min.
    """

    breaks: tuple[float, float, float, float]
    cells: tuple[int, int, int]

    @property
    def vertices(self) -> int:
        return sum(self.cells) + 1

    def finest(self) -> float:
        """Smallest cell size along this axis (world units)."""
        sizes = [(b - a) / c for a, b, c in zip(self.breaks[:-1], self.breaks[1:], self.cells) if c > 0]
        return min(sizes)


def make_axis(outer: tuple[float, float], focus: tuple[float, float], focus_voxel: float,
              outer_factor: float) -> AxisWarp:
    """Cut one axis: focus cells of ``focus_voxel``, outer cells of about ``focus_voxel * outer_factor``."""
    lo, hi = min(outer[0], focus[0]), max(outer[1], focus[1])
    f0, f1 = max(focus[0], lo), min(focus[1], hi)
    n_mid = max(1, math.ceil((f1 - f0) / focus_voxel))
    outer_voxel = focus_voxel * outer_factor
    n_lo = math.ceil((f0 - lo) / outer_voxel) if f0 - lo > 1e-9 else 0
    n_hi = math.ceil((hi - f1) / outer_voxel) if hi - f1 > 1e-9 else 0
    return AxisWarp((float(lo), float(f0), float(f1), float(hi)), (n_lo, n_mid, n_hi))


def world_to_vertex(x: torch.Tensor, axis: AxisWarp) -> torch.Tensor:
    """World coordinates ``[P]`` along one axis → continuous vertex coordinates ``[P]`` (0 … vertices-1).

    Points outside ``[outer_min, outer_max]`` map outside ``[0, vertices-1]``.
    """
    b0, b1, b2, b3 = axis.breaks
    n0, n1, n2 = axis.cells
    s1 = n1 / (b2 - b1)
    s0 = n0 / (b1 - b0) if n0 > 0 else s1  # an axis without an outer part extends the focus cells
    s2 = n2 / (b3 - b2) if n2 > 0 else s1
    # Sum of the three segments' clamped contributions: one pass each, no masks (hot in every render).
    u = x.clamp(b1, b2).sub_(b1).mul_(s1).add_(n0)
    u = u.add_(x.clamp(max=b1).sub_(b1).mul_(s0))
    return u.add_(x.clamp(min=b2).sub_(b2).mul_(s2))


def vertex_to_world(u: torch.Tensor, axis: AxisWarp) -> torch.Tensor:
    """Inverse of :func:`world_to_vertex` on ``[0, vertices-1]``: vertex coordinates ``[P]`` → world ``[P]``."""
    b0, b1, b2, b3 = axis.breaks
    n0, n1, n2 = axis.cells
    x = b1 + (u - n0) * ((b2 - b1) / n1)
    if n0 > 0:
        x = torch.where(u < n0, b0 + u * ((b1 - b0) / n0), x)
    if n2 > 0:
        x = torch.where(u > n0 + n1, b2 + (u - n0 - n1) * ((b3 - b2) / n2), x)
    return x


def trilinear_corners(points: torch.Tensor, axes: tuple[AxisWarp, AxisWarp, AxisWarp]):
    """Flat vertex indices and trilinear weights of the 8 grid corners around each point.

    Args:
        points: world points ``[P, 3]``.
        axes: the warp of the x, y and z axes; the grid is stored x-major: ``index = (i*ny + j)*nz + k``.
    Returns:
        idx ``[P, 8]`` int64, weights ``[P, 8]`` (sum to 1; differentiable w.r.t. points), and inside
        ``[P]`` bool (points within the outer box; outside points get weight 0 on vertex 0).
    """
    nx, ny, nz = (a.vertices for a in axes)
    coords = torch.stack([world_to_vertex(points[:, d], axes[d]) for d in range(3)], dim=-1)
    limits = torch.tensor([nx - 1, ny - 1, nz - 1], device=points.device, dtype=points.dtype)
    inside = ((coords >= 0) & (coords <= limits)).all(dim=-1)
    coords = torch.minimum(coords.clamp(min=0.0), limits)
    base = coords.detach().floor().clamp(max=limits - 1).clamp(min=0)
    frac = coords - base
    base = base.long()
    i, j, k = base.unbind(-1)
    fx, fy, fz = frac.unbind(-1)
    gx, gy, gz = 1 - fx, 1 - fy, 1 - fz
    s_i, s_j = ny * nz, nz
    i0 = (i * s_i + j * s_j + k)
    offs = torch.tensor([0, 1, s_j, s_j + 1, s_i, s_i + 1, s_i + s_j, s_i + s_j + 1], device=points.device)
    idx = i0[:, None] + offs
    w = torch.stack([gx * gy * gz, gx * gy * fz, gx * fy * gz, gx * fy * fz,
                     fx * gy * gz, fx * gy * fz, fx * fy * gz, fx * fy * fz], dim=-1)
    w = w * inside[:, None].to(w.dtype)
    # nz==1 or similar degenerate grids are not supported: every axis has >= 2 vertices.
    return idx.clamp_(0, nx * ny * nz - 1), w, inside
