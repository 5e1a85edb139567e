"""3D localization of a queried object from relevancy on surface points: a best point and a 3D box.

numpy + scipy (``cKDTree``), no I/O; torch tensors are accepted and read on the CPU.

The recipe (:func:`localize`):

1. **Best point**: among the ``top_k`` most relevant points, the one whose neighbours within ``vote_radius``
   (about an object's size) carry the most relevancy is the mode; the best point is the coordinate-wise
   median of the top points around it. A single stray point, or a second cluster among the top points,
   cannot drag it (a mean lands between two clusters), and the median keeps it on the object where the
   top points of a small or hollow object reach a little into its support (measured: see
   ``semfield.query.engine``).
2. **Relevant set**: points with ``relevancy >= threshold`` (0.5, LERF's cut), and optionally also
   ``>= relative · max(relevancy)``.
3. **Object**: the connected component of the relevant set containing the relevant point nearest to the best
   point, where points closer than ``radius`` are connected (DBSCAN-like radius clustering with
   min_samples = 1). ``radius`` defaults to ``radius_factor ×`` the median nearest-neighbour spacing of the
   points.
4. **Box**: per-axis ``percentiles`` (2 %, 98 %) of that component: robust to a few stray member points.

When no point passes the threshold the result has ``found=False``, the best point, a cube of side ``radius``
around it, and ``n_points=0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from ..errors import SemfieldError
from ..eval.arrays import as_float

__all__ = ["Localization", "localize", "point_spacing"]

_SPACING_SAMPLE = 20000


@dataclass(frozen=True)
class Localization:
    """Result of :func:`localize`.

    Attributes:
        point: ``[3]`` best point (scene units).
        box: ``[2, 3]`` axis-aligned box, rows (min corner, max corner).
        score: max relevancy inside the object's component (the global max when ``found`` is False).
        n_points: number of points in the object's component (0 when not found).
        found: False when no point passed the threshold (then ``box`` is a tiny cube around ``point``).
    """

    point: np.ndarray
    box: np.ndarray
    score: float
    n_points: int
    found: bool


def point_spacing(points: np.ndarray) -> float:
    """Median nearest-neighbour distance of ``points [N, 3]`` (on at most 20000 evenly spaced queries).

    Example:
        >>> point_spacing(np.array([[0.0, 0, 0], [0.1, 0, 0], [0.3, 0, 0]]))
        0.1
    """
    pts = as_float(points, "point_spacing points")
    if pts.shape[0] < 2:
        return 0.0
    queries = pts[np.unique(np.linspace(0, len(pts) - 1, min(len(pts), _SPACING_SAMPLE)).astype(np.int64))]
    dist, _ = cKDTree(pts).query(queries, k=2)
    return float(np.median(dist[:, 1]))


def _best_point(pts: np.ndarray, rel: np.ndarray, top_k: int, vote_radius: float) -> np.ndarray:
    """Coordinate-wise median of the top points within ``vote_radius`` of their relevancy-weighted mode."""
    top = np.argsort(-rel, kind="stable")[: min(top_k, len(pts))]
    p, w = pts[top], np.clip(rel[top], 0.0, None)
    near = np.linalg.norm(p[:, None] - p[None], axis=-1) <= vote_radius  # [k, k]
    mode = int(np.argmax(near @ w))  # ties: the more relevant point (top is sorted)
    return np.median(p[near[mode]], axis=0)


def _component(pts: np.ndarray, seed: int, radius: float) -> np.ndarray:
    """Indices of the points connected to ``pts[seed]`` by hops shorter than ``radius``."""
    tree = cKDTree(pts)
    visited = np.zeros(len(pts), dtype=bool)
    visited[seed] = True
    frontier = np.array([seed])
    while frontier.size:
        hits = tree.query_ball_point(pts[frontier], r=radius, return_sorted=False)
        cand = np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits]))
        frontier = cand[~visited[cand]]
        visited[frontier] = True
    return np.flatnonzero(visited)


def localize(
    points,
    relevancy,
    threshold: float = 0.5,
    relative: float | None = None,
    top_k: int = 16,
    radius: float | None = None,
    radius_factor: float = 3.0,
    vote_radius: float | None = None,
    vote_factor: float = 8.0,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> Localization:
    """Best 3D point and axis-aligned box of the object a relevancy field points at (see module docstring).

    Args:
        points: ``[N, 3]`` surface points (e.g. back-projected depth or a mesh's vertices).
        relevancy: ``[N]`` relevancy of each point (e.g. :func:`~semfield.query.lerf_relevancy`).
            Rows with a non-finite point or relevancy are dropped.
        threshold: absolute cut; points at or above it are relevant.
        relative: optional extra cut relative to the max, e.g. 0.9 keeps ``r >= 0.9 · max(r)``.
        top_k: number of most relevant points that vote for the best point.
        radius: connection distance of the clustering (scene units); default ``radius_factor ×``
            :func:`point_spacing`.
        radius_factor: see ``radius``.
        vote_radius: neighbourhood of the best point's vote (scene units); default ``vote_factor ×``
            :func:`point_spacing` (8 × ~1.3 cm on the default scene's surface cloud).
        vote_factor: see ``vote_radius``.
        percentiles: lower/upper per-axis percentiles of the component giving the box.

    Returns:
        :class:`Localization`.

    Example:
        >>> pts = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [5.0, 0, 0]])
        >>> loc = localize(pts, np.array([0.9, 0.9, 0.9, 0.2]), radius=0.15, percentiles=(0, 100))
        >>> loc.point.round(3).tolist(), loc.box.round(3).tolist(), loc.n_points
        ([0.1, 0.0, 0.0], [[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]], 3)
    """
    pts = as_float(points, "localize points")
    rel = as_float(relevancy, "localize relevancy")
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise SemfieldError(f"localize: points must be [N, 3], got {pts.shape}")
    if rel.shape != (pts.shape[0],):
        raise SemfieldError(f"localize: relevancy must be [{pts.shape[0]}], got {rel.shape}")
    lo, hi = percentiles
    if not 0.0 <= lo <= hi <= 100.0 or top_k < 1:
        raise SemfieldError(
            f"localize: need 0 <= percentiles <= 100 (ascending) and top_k >= 1, got {percentiles}, {top_k}"
        )
    ok = np.isfinite(pts).all(axis=1) & np.isfinite(rel)
    pts, rel = pts[ok], rel[ok]
    if len(pts) == 0:
        raise SemfieldError("localize: no point with a finite position and relevancy")
    spacing = point_spacing(pts) if radius is None or vote_radius is None else 0.0
    radius = max(float(radius_factor * spacing if radius is None else radius), 1e-9)
    vote_radius = float(vote_factor * spacing if vote_radius is None else vote_radius)

    best = _best_point(pts, rel, top_k, vote_radius)
    keep = rel >= threshold
    if relative is not None:
        keep &= rel >= relative * rel.max()
    if not keep.any():
        box = np.stack([best - radius / 2, best + radius / 2])
        return Localization(point=best, box=box, score=float(rel.max()), n_points=0, found=False)

    kept, kept_rel = pts[keep], rel[keep]
    _, seed = cKDTree(kept).query(best)
    members = _component(kept, int(seed), radius)
    box = np.percentile(kept[members], [lo, hi], axis=0)
    return Localization(
        point=best, box=box, score=float(kept_rel[members].max()), n_points=int(members.size), found=True
    )
