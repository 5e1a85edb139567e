"""Localization metrics: LERF 2D accuracy, the LangSplat smoothed variant (labelled apart), 3D box checks.

numpy, no I/O; torch tensors are accepted and read on the CPU.
See PROTOCOLS.md (the project's evaluation protocols).

**Pixel and box convention.** A relevancy map is ``[H, W]``; pixel (row ``i``, column ``j``) covers
``[j, j+1) × [i, i+1)`` and its centre is ``(x, y) = (j + 0.5, i + 0.5)`` (semfield's intrinsics convention).
A 2D box ``[x0, y0, x1, y1]`` is in continuous pixel coordinates (x along the width); with
``convention="centers"`` (default) the pixel is inside when ``x0 <= j + 0.5 < x1`` and ``y0 <= i + 0.5 < y1``
(half-open, so adjacent boxes share no pixel and an integer box ``[0, 0, W, H]`` holds exactly the image).
``convention="indices"`` is the rule of LangSplat's released evaluation: corners are reordered, then
``x0 <= j <= x1`` and ``y0 <= i <= y1`` on integer indices (closed).

**Detections.**

- ``"lerf"``: the single highest-relevancy pixel of the raw map (first in row-major order on ties).
- ``"langsplat"``: the map ``0.5 · (box30(r) + r)`` as PROTOCOLS states, where ``box30`` is a 30 × 30 mean
  filter with OpenCV ``filter2D`` semantics (anchor at offset 15, BORDER_REFLECT_101); every pixel tied for
  the max counts (a hit if any of them is in a box), as in LangSplat's code. Note: LangSplat's released
  ``lerf_localization`` takes the argmax of the smoothed map alone; ``raw_weight=0`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import SemfieldError
from .arrays import as_float

__all__ = [
    "argmax_pixel",
    "box_filter",
    "box_iou_3d",
    "langsplat_localization_hit",
    "langsplat_smoothed",
    "lerf_localization_hit",
    "localization_accuracy",
    "pixels_in_boxes",
    "point_in_box",
]

LANGSPLAT_KERNEL = 30


def _map(relevancy, name: str) -> np.ndarray:
    r = as_float(relevancy, name)
    if r.ndim != 2 or r.size == 0:
        raise SemfieldError(f"{name}: relevancy map must be a non-empty [H, W], got {r.shape}")
    return r


def _boxes(boxes, name: str) -> np.ndarray:
    b = as_float(boxes, name)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim not in (1, 2) or b.shape[-1] != 4:
        raise SemfieldError(f"{name}: boxes must be [B, 4] as [x0, y0, x1, y1], got {b.shape}")
    return b.reshape(-1, 4)


def pixels_in_boxes(cols, rows, boxes, convention: str = "centers") -> np.ndarray:
    """Whether each pixel (column ``cols[k]``, row ``rows[k]``) lies in any box (see module docstring).

    Args:
        cols: ``[K]`` integer column indices j.
        rows: ``[K]`` integer row indices i.
        boxes: ``[B, 4]`` boxes ``[x0, y0, x1, y1]``.
        convention: ``"centers"`` (half-open, pixel centres) or ``"indices"`` (LangSplat, closed, indices).

    Returns:
        ``[K]`` bool.

    Example:
        >>> pixels_in_boxes([1, 2], [0, 0], [[0, 0, 2, 1]]).tolist()
        [True, False]
        >>> pixels_in_boxes([1, 2], [0, 0], [[0, 0, 2, 1]], convention="indices").tolist()
        [True, True]
    """
    j = np.atleast_1d(as_float(cols, "pixels_in_boxes cols"))[:, None]
    i = np.atleast_1d(as_float(rows, "pixels_in_boxes rows"))[:, None]
    b = _boxes(boxes, "pixels_in_boxes")
    if convention == "centers":
        x, y = j + 0.5, i + 0.5
        inside = (b[:, 0] <= x) & (x < b[:, 2]) & (b[:, 1] <= y) & (y < b[:, 3])
    elif convention == "indices":
        x0, x1 = np.minimum(b[:, 0], b[:, 2]), np.maximum(b[:, 0], b[:, 2])
        y0, y1 = np.minimum(b[:, 1], b[:, 3]), np.maximum(b[:, 1], b[:, 3])
        inside = (x0 <= j) & (j <= x1) & (y0 <= i) & (i <= y1)
    else:
        raise SemfieldError(f"pixels_in_boxes: convention must be 'centers' or 'indices', got {convention!r}")
    return inside.any(axis=1)


def argmax_pixel(relevancy) -> tuple[int, int]:
    """``(col, row)`` of the highest value of ``relevancy [H, W]``, first in row-major order on ties.

    Example:
        >>> argmax_pixel(np.array([[0.1, 0.9], [0.9, 0.2]]))
        (1, 0)
    """
    r = _map(relevancy, "argmax_pixel")
    row, col = np.unravel_index(int(np.argmax(r)), r.shape)
    return int(col), int(row)


def box_filter(image, size: int = LANGSPLAT_KERNEL) -> np.ndarray:
    """Mean over a ``size × size`` window, as ``cv2.filter2D(image, -1, ones((size, size)) / size²)``.

    OpenCV semantics: the anchor is the kernel centre ``a = size // 2``, so output ``[i, j]`` averages rows
    ``i - a .. i - a + size - 1`` (and columns alike), and the border is BORDER_REFLECT_101 (``dcb|abcd``).

    Args:
        image: ``[H, W]`` float map.
        size: window side (LangSplat: 30).

    Returns:
        ``[H, W]`` float64.

    Example:
        >>> box_filter(np.array([[0.0, 3.0, 0.0]]), size=3).tolist()
        [[2.0, 1.0, 2.0]]
    """
    r = _map(image, "box_filter")
    if size < 1:
        raise SemfieldError(f"box_filter: size must be >= 1, got {size}")
    a = size // 2
    out = r
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (a, size - 1 - a)
        p = np.pad(out, pad, mode="reflect") if out.shape[axis] > 1 else np.pad(out, pad, mode="edge")
        c = np.cumsum(p, axis=axis)
        c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
        n = out.shape[axis]
        out = (np.take(c, np.arange(size, size + n), axis=axis) - np.take(c, np.arange(n), axis=axis)) / size
    return out


def langsplat_smoothed(relevancy, size: int = LANGSPLAT_KERNEL, raw_weight: float = 0.5) -> np.ndarray:
    """LangSplat detection map ``(1 - raw_weight) · box_filter(r, size) + raw_weight · r`` ``[H, W]``.

    Example:
        >>> langsplat_smoothed(np.array([[0.0, 3.0, 0.0]]), size=3).tolist()
        [[1.0, 2.0, 1.0]]
    """
    r = _map(relevancy, "langsplat_smoothed")
    return (1.0 - raw_weight) * box_filter(r, size) + raw_weight * r


def lerf_localization_hit(relevancy, boxes, convention: str = "centers") -> bool:
    """LERF protocol: is the highest-relevancy pixel of ``relevancy [H, W]`` inside any of ``boxes [B, 4]``?

    Example:
        >>> lerf_localization_hit(np.array([[0.1, 0.9]]), [[1, 0, 2, 1]])
        True
    """
    col, row = argmax_pixel(relevancy)
    return bool(pixels_in_boxes([col], [row], boxes, convention)[0])


def langsplat_localization_hit(
    relevancy, boxes, size: int = LANGSPLAT_KERNEL, raw_weight: float = 0.5, convention: str = "centers"
) -> bool:
    """LangSplat variant: is any maximum of :func:`langsplat_smoothed` inside any of ``boxes [B, 4]``?

    Example:
        >>> r = np.array([[0.9, 0.9, 0.9, 0.0, 1.0]])  # a lone spike beside a broad plateau
        >>> lerf_localization_hit(r, [[0, 0, 2, 1]]), langsplat_localization_hit(r, [[0, 0, 2, 1]], size=3)
        (False, True)
    """
    s = langsplat_smoothed(relevancy, size, raw_weight)
    rows, cols = np.nonzero(s == s.max())
    return bool(pixels_in_boxes(cols, rows, boxes, convention).any())


def localization_accuracy(
    relevancy_maps: Sequence, boxes: Sequence, variant: str = "lerf", convention: str = "centers", **kwargs
) -> float:
    """Localization accuracy = hits / queries over (view, query) pairs.

    Args:
        relevancy_maps: ``Q`` maps ``[H, W]`` (one per (test view, query)), or one ``[Q, H, W]`` array.
        boxes: ``Q`` arrays ``[B_q, 4]``: the ground-truth boxes of that query's object in that view
            (a query with no box is a miss).
        variant: ``"lerf"`` or ``"langsplat"`` (report them under their names; never mix them).
        convention: box convention, see the module docstring.
        **kwargs: ``size`` / ``raw_weight`` of the LangSplat variant.

    Returns:
        accuracy in [0, 1]; NaN when there is no query.

    Example:
        >>> localization_accuracy([np.eye(2), np.eye(2)], [[[0, 0, 1, 1]], [[1, 0, 2, 1]]])
        0.5
    """
    if len(relevancy_maps) != len(boxes):
        raise SemfieldError(f"localization_accuracy: {len(relevancy_maps)} maps but {len(boxes)} box lists")
    if variant == "lerf":
        if kwargs:
            raise SemfieldError(f"localization_accuracy: the lerf variant takes no {sorted(kwargs)}")
        hits = [lerf_localization_hit(r, b, convention) for r, b in zip(relevancy_maps, boxes, strict=True)]
    elif variant == "langsplat":
        hits = [
            langsplat_localization_hit(r, b, convention=convention, **kwargs)
            for r, b in zip(relevancy_maps, boxes, strict=True)
        ]
    else:
        raise SemfieldError(f"localization_accuracy: variant must be 'lerf' or 'langsplat', got {variant!r}")
    return float(np.mean(hits)) if hits else float("nan")


def _box3(box, name: str) -> np.ndarray:
    b = as_float(box, name)
    if b.shape != (2, 3):
        raise SemfieldError(f"{name}: a 3D box must be [2, 3] (min corner, max corner), got {b.shape}")
    if (b[0] > b[1]).any():
        raise SemfieldError(f"{name}: box min corner {b[0].tolist()} exceeds max corner {b[1].tolist()}")
    return b


def point_in_box(point, box, margin: float = 0.0):
    """Whether ``point [3]`` (or each of ``[..., 3]``) lies in the closed box ``[2, 3]`` grown by ``margin``.

    Returns:
        bool for one point, ``[...]`` bool array otherwise.

    Example:
        >>> box = np.array([[0.0, 0, 0], [1, 1, 1]])
        >>> point_in_box([1.05, 0.5, 0.5], box), point_in_box([1.05, 0.5, 0.5], box, margin=0.1)
        (False, True)
    """
    p = as_float(point, "point_in_box point")
    b = _box3(box, "point_in_box box")
    if p.shape[-1:] != (3,):
        raise SemfieldError(f"point_in_box: point must be [..., 3], got {p.shape}")
    inside = ((b[0] - margin <= p) & (p <= b[1] + margin)).all(axis=-1)
    return bool(inside) if inside.ndim == 0 else inside


def box_iou_3d(a, b) -> float:
    """Intersection over union of two axis-aligned 3D boxes ``[2, 3]`` (0 when the union has no volume).

    Example:
        >>> box_iou_3d([[0, 0, 0], [2, 1, 1]], [[1, 0, 0], [3, 1, 1]])
        0.3333333333333333
    """
    a = _box3(a, "box_iou_3d a")
    b = _box3(b, "box_iou_3d b")
    inter = float(np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0.0, None)))
    union = float(np.prod(a[1] - a[0]) + np.prod(b[1] - b[0])) - inter
    return inter / union if union > 0 else 0.0
