"""Where a field should spend its voxels: the outer box (all that is seen) and the focus box."""

from __future__ import annotations

import numpy as np

from .types import Scene


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


def scene_bounds(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Outer and focus boxes ``([2, 3], [2, 3])`` of a scene.

    Uses the scene's ``aabb`` (outer) and ground-truth ``focus_aabb`` when present. Otherwise the focus is a
    cube around the point the cameras look at, with half-size 0.6 × the median camera distance to it, and
    the outer box holds the cameras and the focus box, grown by that distance on every side. (Unbounded
    outdoor captures need a contracted background, which this does not model.)
    """
    c2w = np.stack([f.c2w for f in scene.frames])
    focus = None
    if scene.ground_truth and "focus_aabb" in scene.ground_truth:
        focus = np.asarray(scene.ground_truth["focus_aabb"], dtype=np.float64)
    if focus is None:
        centre = cameras_focus_point(c2w)
        radius = float(np.median(np.linalg.norm(c2w[:, :3, 3] - centre, axis=1)))
        focus = np.stack([centre - 0.6 * radius, centre + 0.6 * radius])
    if scene.aabb is not None:
        outer = np.asarray(scene.aabb, dtype=np.float64)
    else:
        radius = float(np.median(np.linalg.norm(c2w[:, :3, 3] - focus.mean(0), axis=1)))
        pts = np.concatenate([c2w[:, :3, 3], focus])
        outer = np.stack([pts.min(0) - radius, pts.max(0) + radius])
    focus = np.stack([np.maximum(focus[0], outer[0]), np.minimum(focus[1], outer[1])])
    return outer, focus


def pixel_footprint(scene: Scene, focus: np.ndarray, split: str = "train") -> float:
    """Median size (world units) of one pixel of the ``split`` cameras at the focus box centre."""
    centre = 0.5 * (focus[0] + focus[1])
    sizes = [np.linalg.norm(f.c2w[:3, 3] - centre) / np.sqrt(f.intrinsics.fx * f.intrinsics.fy)
             for f in scene.split(split)]
    return float(np.median(sizes)) if sizes else 0.0
