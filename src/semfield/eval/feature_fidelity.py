"""Feature fidelity: how close a field's rendered feature map is to its teacher's map of the same image.

numpy, no I/O; torch tensors are accepted and read on the CPU.

The teacher's map has its own grid (a ViT gives one vector per patch): teacher cell ``[i, j]`` of an
``h × w`` map of an ``H × W`` image covers rows ``[i H / h, (i + 1) H / h)`` and columns
``[j W / w, (j + 1) W / w)`` (as :class:`semfield.teachers.base.TeacherOutput` states). So the rendered map
``[H, W, D]`` is first **area-averaged onto the teacher's grid**: each rendered pixel weighs by the area it
shares with the cell, which is exact for any ratio ``H / h`` (integer or not) through an area matrix
(:func:`area_weights`). Then the cosine between the pooled and the teacher feature is averaged over cells.

A ``valid [H, W]`` mask (e.g. pixels whose ray hit a surface) restricts the average to valid pixels: a
cell's pooled feature averages its valid area only, and a cell whose valid fraction is below
:data:`MIN_VALID_FRACTION` is left out.

Two figures, report both:

- :func:`feature_cosine` — the raw cosine.
- :func:`centred_feature_cosine` — the cosine after subtracting the teacher map's mean feature (over all its
  cells) from both maps. DINOv2 features share a large common component, so any two of its patches have a
  high raw cosine and the raw figure is optimistic; the centred one asks whether the field reproduces how
  the features *vary* across the image.
"""

from __future__ import annotations

import numpy as np

from ..errors import SemfieldError
from .arrays import as_float

__all__ = ["MIN_VALID_FRACTION", "area_pool", "area_weights", "centred_feature_cosine", "feature_cosine"]

MIN_VALID_FRACTION = 0.5
_EPS = 1e-12


def area_weights(n_out: int, n_in: int) -> np.ndarray:
    """``[n_out, n_in]`` area matrix: entry ``[i, p]`` is the length of pixel ``[p, p + 1)`` inside cell
    ``[i n_in / n_out, (i + 1) n_in / n_out)``, divided by the cell's length (so each row sums to 1).

    Example:
        >>> area_weights(2, 3).tolist()  # cells [0, 1.5) and [1.5, 3)
        [[0.6666666666666666, 0.3333333333333333, 0.0], [0.0, 0.3333333333333333, 0.6666666666666666]]
    """
    if n_out < 1 or n_in < 1:
        raise SemfieldError(f"area_weights: sizes must be >= 1, got {n_out} and {n_in}")
    edges = np.arange(n_out + 1, dtype=np.float64) * (n_in / n_out)
    px = np.arange(n_in, dtype=np.float64)
    overlap = np.minimum(edges[1:, None], px[None] + 1) - np.maximum(edges[:-1, None], px[None])
    return np.clip(overlap, 0.0, None) / (n_in / n_out)


def area_pool(values, h: int, w: int, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """Area-average ``values [H, W, D]`` onto an ``h × w`` grid, over the valid pixels only.

    Args:
        values: ``[H, W, D]`` map.
        h, w: output grid.
        valid: optional ``[H, W]`` bool; None = every pixel valid.

    Returns:
        ``(pooled [h, w, D], valid_fraction [h, w])``: the mean of each cell's valid area (zeros where the
        cell has none) and the share of the cell's area that is valid.

    Example:
        >>> pooled, frac = area_pool(np.arange(4.0).reshape(1, 4, 1), 1, 2, valid=[[True, True, True, False]])
        >>> pooled[..., 0].tolist(), frac.tolist()
        ([[0.5, 2.0]], [[1.0, 0.5]])
    """
    x = as_float(values, "area_pool values")
    if x.ndim != 3 or x.shape[0] == 0 or x.shape[1] == 0:
        raise SemfieldError(f"area_pool: values must be a non-empty [H, W, D], got {x.shape}")
    H, W, _ = x.shape
    m = np.ones((H, W)) if valid is None else as_float(valid, "area_pool valid", dtype=bool).astype(float)
    if m.shape != (H, W):
        raise SemfieldError(f"area_pool: valid must be [{H}, {W}], got {m.shape}")
    ah, aw = area_weights(h, H), area_weights(w, W)
    frac = ah @ m @ aw.T  # [h, w]
    rows = np.tensordot(ah, x * m[..., None], axes=(1, 0))  # [h, W, D]: pooled along the rows first
    sums = np.matmul(aw, rows)  # [h, w, D]: then along the columns
    pooled = np.divide(sums, frac[..., None], out=np.zeros_like(sums), where=frac[..., None] > _EPS)
    return pooled, frac


def _cell_cosines(rendered, teacher, valid, centre: bool) -> np.ndarray:
    """Cosines ``[K]`` of the kept cells between the pooled rendered map and the teacher map."""
    t = as_float(teacher, "feature fidelity teacher")
    r = as_float(rendered, "feature fidelity rendered")
    if t.ndim != 3 or t.shape[0] == 0 or t.shape[1] == 0:
        raise SemfieldError(f"feature fidelity: teacher map must be a non-empty [h, w, D], got {t.shape}")
    if r.ndim != 3 or r.shape[-1] != t.shape[-1]:
        raise SemfieldError(f"feature fidelity: rendered map must be [H, W, {t.shape[-1]}], got {r.shape}")
    pooled, frac = area_pool(r, t.shape[0], t.shape[1], valid)
    keep = frac >= MIN_VALID_FRACTION - 1e-9  # exact halves count as kept despite float rounding
    a, b = pooled[keep], t[keep]  # [K, D]
    if centre:
        mean = t.reshape(-1, t.shape[-1]).mean(axis=0)
        a, b = a - mean, b - mean
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return (a * b).sum(axis=-1) / np.maximum(norms, _EPS)


def feature_cosine(rendered, teacher, valid=None) -> float:
    """Mean cosine over teacher cells between ``rendered [H, W, D]`` area-pooled to the teacher's grid and
    ``teacher [h, w, D]``; ``valid [H, W]`` bool (optional) as in the module docstring.

    Returns:
        the mean cosine in [-1, 1]; NaN when no cell is kept. A zero vector has cosine 0 with anything.

    Example:
        >>> t = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # [1, 2, 2]
        >>> r = np.array([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])  # [1, 4, 2]
        >>> feature_cosine(r, t)  # cell 0 matches (1), cell 1 is orthogonal (0)
        0.5
    """
    cos = _cell_cosines(rendered, teacher, valid, centre=False)
    return float(cos.mean()) if cos.size else float("nan")


def centred_feature_cosine(rendered, teacher, valid=None) -> float:
    """As :func:`feature_cosine`, after subtracting the teacher map's mean feature ``[D]`` (over all its
    cells) from both the pooled rendered map and the teacher map.

    Example:
        >>> t = np.array([[[2.0, 1.0], [2.0, -1.0]]])  # mean [2, 0]: centred [0, 1] and [0, -1]
        >>> r = np.array([[[2.0, 1.0], [2.0, 1.0]]])  # centred [0, 1] twice
        >>> feature_cosine(r, t) > 0.5, centred_feature_cosine(r, t)
        (True, 0.0)
    """
    cos = _cell_cosines(rendered, teacher, valid, centre=True)
    return float(cos.mean()) if cos.size else float("nan")
