"""SPINE's geometric fidelity factor: does a rendered feature map keep the image's edges?

numpy, no I/O; torch tensors are accepted and read on the CPU. See PROTOCOLS.md ("Feature fidelity").

A feature map ``[H, W, D]`` is projected onto its 3 first principal components (fitted on its own valid
pixels), each component min-max scaled to [0, 1] over the valid pixels and the three averaged into one grey
image (the usual PCA picture of a feature map, made grey); the RGB image is made grey the same way (mean of
its channels). For each grey image the Sobel gradient norm is taken (3 × 3 kernels: ``[1, 2, 1] / 4``
smoothing across, central difference along, edge-replicated border; a 0 → 1 step gives 1 on both pixels
beside it, a ramp of slope ``s`` per pixel gives ``2 s``), and the *edge pixels* at threshold ``τ`` are the
valid pixels whose gradient norm exceeds ``τ``.

The factor at ``τ`` is (feature edge pixels) / (RGB edge pixels); :func:`geometric_fidelity` reports it
per threshold of :data:`THRESHOLDS` (0.1 … 0.8) and their mean over the thresholds where the RGB image has
edges. A feature map that changes as sharply as the image where the image changes scores about 1; a blurred
one (a coarse teacher, a field that smears across boundaries) loses its edge pixels at the high thresholds
and scores lower. This is our reading of SPINE's description (counts per threshold compared with the
image); the per-threshold counts are returned so other comparisons can be made from them. Mind that the
three components are averaged: features that vary along one direction only reach a third of the grey range.
"""

from __future__ import annotations

import numpy as np

from ..errors import SemfieldError
from .arrays import as_float

__all__ = ["THRESHOLDS", "geometric_fidelity", "pca_grey", "sobel_norm"]

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
_EPS = 1e-12


def _valid(valid, shape: tuple[int, int]) -> np.ndarray:
    if valid is None:
        return np.ones(shape, dtype=bool)
    v = np.asarray(valid.cpu() if hasattr(valid, "cpu") else valid).astype(bool)
    if v.shape != shape:
        raise SemfieldError(f"valid mask has shape {v.shape}, expected {shape}")
    return v


def pca_grey(features, valid=None) -> np.ndarray:
    """Grey image ``[H, W]`` in [0, 1] from ``features [H, W, D]``: the mean of its first three principal
    components (fewer when D < 3), each min-max scaled over the ``valid [H, W]`` pixels (0 outside).

    Example:
        >>> f = np.zeros((1, 3, 4)); f[0, :, 0] = [0.0, 1.0, 2.0]  # one direction of variation
        >>> np.round(pca_grey(f), 3).tolist()  # component 1 scaled to [0, 1]; components 2, 3 are constant
        [[0.0, 0.167, 0.333]]
    """
    f = as_float(features, "features")
    if f.ndim != 3:
        raise SemfieldError(f"features must be [H, W, D], got shape {f.shape}")
    v = _valid(valid, f.shape[:2])
    grey = np.zeros(f.shape[:2])
    x = f[v]
    if len(x) < 2:
        return grey
    mean = x.mean(axis=0)
    # principal axes from the [D, D] scatter matrix of the centred rows (an SVD of the [N, D] rows costs
    # ~20x more at 192² x 384, and centring a copy of them costs more than the product)
    eigval, eigvec = np.linalg.eigh(x.T @ x - len(x) * np.outer(mean, mean))
    axes = eigvec[:, np.argsort(-eigval, kind="stable")[: min(3, x.shape[1])]].T  # [k, D]
    # sign fixed so each axis's largest loading is positive (deterministic)
    axes = axes * np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    comps = x @ axes.T - mean @ axes.T  # [N, k]
    lo, hi = comps.min(axis=0), comps.max(axis=0)
    scaled = (comps - lo) / np.maximum(hi - lo, _EPS)
    scaled[:, hi - lo <= _EPS] = 0.0
    grey[v] = scaled.sum(axis=1) / 3.0
    return grey


def sobel_norm(grey) -> np.ndarray:
    """Sobel gradient norm ``[H, W]`` of ``grey [H, W]`` (scale in the module docstring).

    Example:
        >>> g = np.zeros((3, 4)); g[:, 2:] = 1.0  # a 0 -> 1 step between columns 1 and 2
        >>> sobel_norm(g).tolist()[1]
        [0.0, 1.0, 1.0, 0.0]
    """
    g = as_float(grey, "grey")
    if g.ndim != 2:
        raise SemfieldError(f"grey image must be [H, W], got shape {g.shape}")
    p = np.pad(g, 1, mode="edge")
    smooth_rows = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4.0  # [H, W + 2]: smoothed across rows
    gx = smooth_rows[:, 2:] - smooth_rows[:, :-2]
    smooth_cols = (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4.0  # [H + 2, W]
    gy = smooth_cols[2:] - smooth_cols[:-2]
    return np.hypot(gx, gy)


def geometric_fidelity(features, rgb, valid=None, thresholds=THRESHOLDS) -> dict:
    """SPINE's geometric fidelity factor of ``features [H, W, D]`` against ``rgb [H, W, 3]``.

    Args:
        valid: ``[H, W]`` bool, the pixels compared (e.g. where the render hits a surface); all by default.
    Returns:
        ``{"thresholds": [...], "feature_edges": [...], "rgb_edges": [...], "ratio": [...],
        "factor": mean ratio}``; a ratio is None where the RGB image has no edge pixel at that threshold, and
        ``factor`` is None when no threshold has one.

    Example:
        >>> rgb = np.zeros((4, 6, 3)); rgb[:, 3:] = 1.0  # one vertical edge: 8 edge pixels at any threshold
        >>> f = np.zeros((4, 6, 8)); f[:, 3:, 0] = 5.0  # the same edge, one direction of variation:
        >>> r = geometric_fidelity(f, rgb)  # its grey step is 1/3 (one of three components), gradient 1/3
        >>> r["feature_edges"], r["factor"]
        ([8, 8, 8, 0, 0, 0, 0, 0], 0.375)
    """
    f, c = as_float(features, "features"), as_float(rgb, "rgb")
    if c.ndim != 3 or f.ndim != 3 or f.shape[:2] != c.shape[:2]:
        raise SemfieldError(f"features {f.shape} and rgb {c.shape} must be [H, W, D] and [H, W, 3] of one size")
    v = _valid(valid, f.shape[:2])
    edges_f = sobel_norm(pca_grey(f, v))
    edges_c = sobel_norm(c.mean(axis=-1))
    n_f = [int(((edges_f > t) & v).sum()) for t in thresholds]
    n_c = [int(((edges_c > t) & v).sum()) for t in thresholds]
    ratio = [a / b if b else None for a, b in zip(n_f, n_c)]
    kept = [r for r in ratio if r is not None]
    return {"thresholds": list(thresholds), "feature_edges": n_f, "rgb_edges": n_c, "ratio": ratio,
            "factor": float(np.mean(kept)) if kept else None}
