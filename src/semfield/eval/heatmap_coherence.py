"""How clean a relevancy heatmap is: whether what it marks is the queried object, in one piece.

Pure numpy/scipy, no I/O. For a relevancy map ``[H, W]`` (LERF relevancy, 0.5 = no more relevant than the
closest negative), the queried object's mask ``[H, W]`` and the pixels that see a surface ``[H, W]``:

- ``marked``: pixels that see a surface with relevancy above ``cut`` (0.5);
- ``precision``: the fraction of marked pixels inside the object's mask (1: nothing marked elsewhere);
- ``recall``: the fraction of the object's pixels that are marked;
- ``components``: connected regions (8-neighbourhood) of marked pixels of at least ``min_pixels`` pixels,
  and ``specks``: smaller ones (the salt and pepper of a noisy map). A clean map has one component per
  visible instance and no specks.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import SemfieldError

RELEVANCY_CUT = 0.5
MIN_COMPONENT_PIXELS = 16  # 4 x 4 pixels: below this a marked region is a speck


def heatmap_coherence(relevancy, mask, valid=None, cut: float = RELEVANCY_CUT,
                      min_pixels: int = MIN_COMPONENT_PIXELS) -> dict:
    """Coherence figures of one heatmap (see the module docstring); precision / recall are None when there
    is nothing to divide by.

    Example:
        >>> rel = np.zeros((8, 8)); rel[1:5, 1:5] = 0.9; rel[7, 7] = 0.9
        >>> mask = np.zeros((8, 8), bool); mask[1:5, 1:5] = True
        >>> out = heatmap_coherence(rel, mask)
        >>> out["precision"], out["recall"], out["components"], out["specks"]
        (0.9411764705882353, 1.0, 1, 1)
    """
    rel = np.asarray(relevancy, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    valid = np.ones_like(mask) if valid is None else np.asarray(valid, dtype=bool)
    if rel.ndim != 2 or mask.shape != rel.shape or valid.shape != rel.shape:
        raise SemfieldError(f"heatmap_coherence: relevancy, mask and valid must be [H, W] of one shape, got "
                            f"{rel.shape}, {mask.shape}, {valid.shape}")
    marked = (rel > cut) & valid
    labels, n = ndimage.label(marked, structure=np.ones((3, 3), dtype=bool))
    sizes = np.bincount(labels.reshape(-1), minlength=n + 1)[1:]
    n_marked, n_object = int(marked.sum()), int(mask.sum())
    hit = int((marked & mask).sum())
    return {"precision": hit / n_marked if n_marked else None, "recall": hit / n_object if n_object else None,
            "components": int((sizes >= min_pixels).sum()), "specks": int((sizes < min_pixels).sum()),
            "marked": n_marked}


def mean_coherence(records: list[dict]) -> dict:
    """Means over heatmaps of each figure (None values left out; None when none is left)."""
    out = {}
    for key in ("precision", "recall", "components", "specks"):
        vals = [r[key] for r in records if r.get(key) is not None]
        out[key] = float(np.mean(vals)) if vals else None
    out["n_maps"] = len(records)
    return out
