"""Simulated SAM masks from the ground truth of generated scenes ("simulated masks" in every report).

What a class-agnostic mask generator gives per view, made from the view's ground-truth instance and class
images, with the errors such generators make:

1. segments: one per object instance (instance id > 0) and one per stuff class in view (table, floor,
   wall: instance id 0); class 0 ("unlabelled") is left without a mask (-1);
2. split: with probability ``split_rate`` an object's mask is cut in two by a random line through its
   centroid (a part mask, e.g. a bottle's cap);
3. merge: with probability ``merge_rate`` an object's mask is merged with the object mask it shares most
   boundary with (neighbours segmented as one);
4. ragged boundaries: every pixel takes the segment of a pixel up to ``ragged_px`` away, by a smooth random
   displacement field (boundaries wobble, interiors stay);
5. segments smaller than ``min_pixels`` are dropped (-1), and the ids are randomly permuted per view, so no
   id means the same thing in two views.

Pure numpy, no I/O; the caller seeds ``rng`` per view.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["base_segments", "simulate_masks"]


def base_segments(instance: np.ndarray, semantic: np.ndarray, stuff_classes: Iterable[int],
                  void_class: int = 0) -> tuple[np.ndarray, list[bool]]:
    """Error-free segments: one per object and one per stuff class.

    Args:
        instance: ``[H, W]`` int ground-truth instance id (0 = no object).
        semantic: ``[H, W]`` int class id.
        stuff_classes: class ids that are stuff (their pixels with instance 0 form one segment per class).
        void_class: class with no segment.
    Returns:
        ``segments [H, W]`` int64 (-1 = none) and, per segment, whether it is an object.
    """
    seg = np.full(instance.shape, -1, dtype=np.int64)
    is_object: list[bool] = []
    for i in np.unique(instance[instance > 0]):
        seg[instance == i] = len(is_object)
        is_object.append(True)
    for c in sorted({int(c) for c in stuff_classes} - {void_class}):
        region = (instance <= 0) & (semantic == c)
        if region.any():
            seg[region] = len(is_object)
            is_object.append(False)
    return seg, is_object


def _split(seg: np.ndarray, k: int, new_id: int, rng: np.random.Generator) -> None:
    ys, xs = np.nonzero(seg == k)
    if ys.size < 2:
        return
    angle = rng.uniform(0.0, np.pi)
    side = (xs - xs.mean()) * np.cos(angle) + (ys - ys.mean()) * np.sin(angle) > 0
    seg[ys[side], xs[side]] = new_id


def _boundary_counts(seg: np.ndarray, n: int) -> np.ndarray:
    """``[n, n]`` counts of 4-neighbour pixel pairs with segments (a, b), symmetric."""
    counts = np.zeros((n, n), dtype=np.int64)
    for a, b in ((seg[:, :-1], seg[:, 1:]), (seg[:-1, :], seg[1:, :])):
        diff = (a != b) & (a >= 0) & (b >= 0)
        np.add.at(counts, (a[diff], b[diff]), 1)
    return counts + counts.T


def _smooth_offsets(shape: tuple[int, int], amplitude: float, cell: int, rng: np.random.Generator) -> np.ndarray:
    """Integer displacement ``[2, H, W]`` in [-amplitude, amplitude], bilinearly smooth over ``cell`` pixels."""
    H, W = shape
    gh, gw = H // cell + 2, W // cell + 2
    coarse = rng.uniform(-amplitude, amplitude, size=(2, gh, gw))
    y = np.arange(H) / cell
    x = np.arange(W) / cell
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    ay, ax = (y - y0)[:, None], (x - x0)[None, :]
    c = coarse
    top = c[:, y0][:, :, x0] * (1 - ax) + c[:, y0][:, :, x0 + 1] * ax
    bottom = c[:, y0 + 1][:, :, x0] * (1 - ax) + c[:, y0 + 1][:, :, x0 + 1] * ax
    return np.rint(top * (1 - ay) + bottom * ay).astype(np.int64)


def simulate_masks(instance: np.ndarray, semantic: np.ndarray, stuff_classes: Iterable[int],
                   rng: np.random.Generator, split_rate: float = 0.1, merge_rate: float = 0.1,
                   ragged_px: float = 1.5, min_pixels: int = 8, void_class: int = 0) -> np.ndarray:
    """One view's simulated masks (see the module docstring for every step).

    Args:
        instance, semantic: ``[H, W]`` ground-truth instance ids and class ids of the view.
        stuff_classes: stuff class ids.
        rng: this view's random generator.
        split_rate, merge_rate: per-object probabilities in [0, 1].
        ragged_px: largest boundary displacement in pixels (0 = exact boundaries).
        min_pixels: smaller segments are dropped.
        void_class: class id with no mask.
    Returns:
        ``[H, W]`` int64 segment ids ``0..K-1`` in random order, -1 where no mask.
    """
    seg, is_object = base_segments(np.asarray(instance), np.asarray(semantic), stuff_classes, void_class)
    objects = [k for k, obj in enumerate(is_object) if obj]
    n = len(is_object)
    for k in objects:  # every object draws both decisions, so one rate does not shift the other's draws
        split, merge = rng.random() < split_rate, rng.random() < merge_rate
        if split:
            _split(seg, k, n, rng)
            n += 1
        if merge:
            counts = _boundary_counts(seg, n)[k]
            counts[[j for j in range(n) if j >= len(is_object) or not is_object[j] or j == k]] = 0
            if counts.max(initial=0) > 0:
                seg[seg == k] = int(np.argmax(counts))
    if ragged_px > 0:
        H, W = seg.shape
        dy, dx = _smooth_offsets(seg.shape, ragged_px, cell=4, rng=rng)
        yy = np.clip(np.arange(H)[:, None] + dy, 0, H - 1)
        xx = np.clip(np.arange(W)[None, :] + dx, 0, W - 1)
        seg = seg[yy, xx]
    ids, counts = np.unique(seg[seg >= 0], return_counts=True)
    kept = ids[counts >= min_pixels]
    lut = np.full(n + 1, -1, dtype=np.int64)
    lut[kept] = rng.permutation(len(kept))
    return np.ascontiguousarray(np.where(seg >= 0, lut[seg], -1))
