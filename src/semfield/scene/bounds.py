"""Where a field should spend its voxels: the outer box (all that is seen) and the focus box.

Only what a capture gives is used: the cameras, surface points that a short coarse training pass finds in
the images, and points triangulated from image matches (:mod:`semfield.train.bounds_pass`). Ground truth
(a generated scene's ``scene.json``) is never read here. The functions are pure maths on arrays;
:class:`BoundsConfig` holds the settings (``TrainConfig.bounds``), including boxes a user sets explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .types import Scene

MODES = ("auto", "cameras")


@dataclass
class BoundsConfig:
    """How training finds its boxes (world units, ``[[xmin, ymin, zmin], [xmax, ymax, zmax]]``).

    ``outer`` / ``focus``: boxes set by the user (they win over everything else; a transforms.json
    ``semfield.aabb`` is a user-set outer box too). ``mode``: how the boxes not set are found — ``"auto"``
    (a coarse RGB pass of ``pass_iterations`` steps of ``pass_rays`` rays, at most the run's own, on a
    uniform grid of ``pass_resolution`` cells along the cameras' box's longest side, whose surface points,
    with points triangulated from image matches, give both boxes: see :func:`outer_from_rays` and
    :func:`choose_focus`) or ``"cameras"`` (:func:`camera_bounds`, nothing learnt). ``sample_rays``: how
    many training rays (evenly strided) the pass renders for surfaces.
    """

    mode: str = "auto"
    outer: list | None = None
    focus: list | None = None
    pass_iterations: int = 100
    pass_rays: int = 2048
    pass_resolution: int = 128
    sample_rays: int = 65536

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"bounds.mode must be one of {', '.join(MODES)} (got {self.mode!r})")
        for name in ("outer", "focus"):
            box = getattr(self, name)
            if box is not None:
                setattr(self, name, check_box(box, f"bounds.{name}").tolist())
        if min(self.pass_iterations, self.pass_rays, self.sample_rays, self.pass_resolution) < 1:
            raise ValueError("bounds.pass_iterations, pass_rays, pass_resolution and sample_rays must be >= 1")


def check_box(box, name: str) -> np.ndarray:
    """``box`` as a ``[2, 3]`` float array with finite min < max on every axis; ValueError naming ``name``."""
    try:
        arr = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be [[xmin, ymin, zmin], [xmax, ymax, zmax]]") from None
    if arr.shape != (2, 3) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be [[xmin, ymin, zmin], [xmax, ymax, zmax]] of finite numbers")
    if np.any(arr[1] <= arr[0]):
        raise ValueError(f"{name} must have min < max on every axis")
    return arr


def cameras_focus_point(c2w: np.ndarray) -> np.ndarray:
    """Least-squares point closest to all optical axes (the point the cameras look at): ``[3]``.

    Args:
        c2w: camera-to-world ``[N, 4, 4]`` (OpenCV axes: the optical axis is the third column).
    """
    origins, axes = c2w[:, :3, 3], c2w[:, :3, 2]
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(origins, axes):
        P = np.eye(3) - np.outer(d, d)
        A += P
        b += P @ o
    if np.linalg.cond(A) > 1e8:  # all axes parallel: fall back to a point in front of the cameras
        return origins.mean(0) + axes.mean(0) * 1.0
    return np.linalg.solve(A, b)


def outlier_cameras(c2w: np.ndarray, factor: float = 10.0) -> np.ndarray:
    """``[N]`` bool: cameras farther from the median camera centre (per axis) than ``factor`` × the cameras'
    median distance to it (a pose gone wrong in structure from motion). Fewer than 4 cameras: none.

    The median, not the point the cameras look at: one camera 10 km off pulls that least-squares point
    hundreds of metres its way."""
    if len(c2w) < 4:
        return np.zeros(len(c2w), dtype=bool)
    centres = c2w[:, :3, 3]
    distance = np.linalg.norm(centres - np.median(centres, axis=0), axis=1)
    return distance > factor * max(float(np.median(distance)), 1e-9)


def camera_bounds(c2w: np.ndarray, outer: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Outer and focus boxes ``([2, 3], [2, 3])`` from the cameras alone.

    The focus is a cube around the point the cameras look at, with half-size 0.6 × the median camera
    distance to it; the outer box (unless given) holds the cameras and the focus box, grown by that distance
    on every side. (Unbounded outdoor captures need a contracted background, which this does not model.)

    Args:
        c2w: ``[N, 4, 4]`` camera-to-world of the training cameras (OpenCV axes).
        outer: a user-set outer box ``[2, 3]``, kept as it is.
    """
    centre = cameras_focus_point(c2w)
    radius = float(np.median(np.linalg.norm(c2w[:, :3, 3] - centre, axis=1)))
    focus = np.stack([centre - 0.6 * radius, centre + 0.6 * radius])
    if outer is None:
        radius = float(np.median(np.linalg.norm(c2w[:, :3, 3] - focus.mean(0), axis=1)))
        pts = np.concatenate([c2w[:, :3, 3], focus])
        outer = np.stack([pts.min(0) - radius, pts.max(0) + radius])
    return np.asarray(outer, dtype=np.float64), clip_box(focus, outer)


def clip_box(box: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """``box`` ``[2, 3]`` cut to ``limit`` ``[2, 3]``; an axis left empty keeps a sliver at the nearer side."""
    lo = np.clip(box[0], limit[0], limit[1])
    hi = np.clip(box[1], limit[0], limit[1])
    eps = 1e-3 * (limit[1] - limit[0])
    hi = np.maximum(hi, np.minimum(lo + eps, limit[1]))
    lo = np.minimum(lo, hi - eps)
    return np.stack([lo, hi])


def percentile_box(points: np.ndarray, tail: float) -> np.ndarray:
    """Per-axis ``[tail, 100 - tail]`` percentile box ``[2, 3]`` of ``points`` ``[N, 3]`` (N ≥ 1)."""
    return np.stack([np.percentile(points, tail, axis=0), np.percentile(points, 100.0 - tail, axis=0)])


def outer_from_rays(surface: np.ndarray, exits: np.ndarray, cameras: np.ndarray, limit: np.ndarray,
                    pad: float, sparse: np.ndarray | None = None, tail: float = 1.0, sparse_tail: float = 0.5,
                    min_sparse: int = 200) -> np.ndarray:
    """The outer box: the smallest box that holds the cameras and what the training rays saw, grown by
    ``pad`` and cut to ``limit`` (the box the rays were traced in).

    What the rays saw: the coarse pass's surface points (less a ``tail`` % of strays per side) and, when
    there are at least ``min_sparse`` of them, the points triangulated from image matches (less
    ``sparse_tail`` %): they find the walls and far surfaces that a short pass leaves to the box's boundary.
    Without them, every ray that found no surface counts where it left ``limit`` (``exits``): such a ray
    needs the box out to there.

    Args:
        surface: ``[S, 3]`` surface points of rays that ended on a surface.
        exits: ``[E, 3]`` where the other rays left ``limit``.
        cameras: ``[C, 3]`` camera centres (always inside).
        limit: ``[2, 3]``; pad: margin on every side (world units).
        sparse: ``[P, 3]`` triangulated points, or None.
    """
    seen = [cameras]
    if len(surface):
        seen.append(percentile_box(surface, tail))
    if sparse is not None and len(sparse) >= min_sparse:
        seen.append(percentile_box(sparse, sparse_tail))
    else:
        seen.append(exits)
    seen = np.concatenate(seen)
    return clip_box(np.stack([seen.min(0) - pad, seen.max(0) + pad]), limit)


def focus_candidates(points: np.ndarray, need: np.ndarray, pad: float, tail: float = 1.0,
                     steps: int = 20) -> list[np.ndarray]:
    """Nested candidate focus boxes ``[2, 3]``: for each quantile q of the needed voxel size, the percentile box
    (``tail`` % per side, grown by ``pad``) of the surface points that need voxels at most that fine.

    Args:
        points: ``[N, 3]`` surface points; need: ``[N]`` the voxel size each point's pixel asks for.
    """
    out = []
    for q in np.linspace(1.0 / steps, 1.0, steps):
        chosen = points[need <= np.quantile(need, q)]
        if len(chosen):
            box = percentile_box(chosen, tail)
            out.append(np.stack([box[0] - pad, box[1] + pad]))
    return out


def resolution_deficit(points: np.ndarray, need: np.ndarray, box: np.ndarray, voxel: float,
                       outer_factor: float) -> float:
    """Mean over points of ``max(0, log(voxel there / voxel needed))``: how much coarser than its pixels the
    grid is where the training pixels look, if the focus box is ``box`` with voxels of ``voxel`` and
    everything outside gets ``outer_factor`` times larger ones.

    Args:
        points: ``[N, 3]``; need: ``[N]`` (world units); box: ``[2, 3]``.
    """
    inside = np.all((points >= box[0]) & (points <= box[1]), axis=1)
    have = np.where(inside, voxel, voxel * outer_factor)
    return float(np.mean(np.maximum(0.0, np.log(have / need))))


def choose_focus(points: np.ndarray, need: np.ndarray, voxel_of: Callable[[np.ndarray], float],
                 outer_factor: float, pad: float, limit: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """The focus box of least :func:`resolution_deficit` among :func:`focus_candidates`.

    A larger box holds more of the pixels at focus resolution, but under a fixed vertex budget its voxels
    grow (``voxel_of(box)``: the final voxel size training would use for that box): the best box is where
    most pixels look closely — the table and what stands on it, or the furniture of a room.

    Returns:
        the box ``[2, 3]`` (cut to ``limit``), and one ``{box, voxel, deficit}`` per candidate (diagnostics).
    """
    best, table = None, []
    for box in focus_candidates(points, need, pad):
        box = clip_box(box, limit)
        voxel = float(voxel_of(box))
        deficit = resolution_deficit(points, need, box, voxel, outer_factor)
        table.append({"box": box.round(4).tolist(), "voxel": voxel, "deficit": deficit})
        if best is None or deficit < best[0] - 1e-12:
            best = (deficit, box)
    if best is None:
        raise ValueError("no surface points to place the focus box on")
    return best[1], table


def pixel_footprint(scene: Scene, focus: np.ndarray, split: str = "train") -> float:
    """Median size (world units) of one pixel of the ``split`` cameras at the focus box centre."""
    centre = 0.5 * (focus[0] + focus[1])
    sizes = [np.linalg.norm(f.c2w[:3, 3] - centre) / np.sqrt(f.intrinsics.fx * f.intrinsics.fy)
             for f in scene.split(split)]
    return float(np.median(sizes)) if sizes else 0.0
