"""Pictures of query answers: relevancy overlays and segmentation maps with a legend (pure, no I/O)."""

from __future__ import annotations

import numpy as np

from .pictures import _label_strip, to_uint8, turbo

RELEVANCY_CUT = 0.5  # LERF: below this a pixel is no more relevant than a negative phrase


def relevancy_overlay(image: np.ndarray, relevancy: np.ndarray, cut: float = RELEVANCY_CUT) -> np.ndarray:
    """The image dimmed to grey where relevancy < ``cut``, overlaid with turbo colours above it.

    Args:
        image: ``[H, W, 3]`` float in [0, 1] or uint8. relevancy: ``[H, W]`` in [0, 1].
    Returns:
        uint8 ``[H, W, 3]``; colour runs from blue at ``cut`` to red at 1.
    """
    img = to_uint8(image).astype(np.float64) / 255.0
    rel = np.asarray(relevancy, dtype=np.float64)
    if rel.shape != img.shape[:2]:
        raise ValueError(f"relevancy {rel.shape} does not match the image {img.shape[:2]}")
    grey = img.mean(axis=-1, keepdims=True).repeat(3, axis=-1) * 0.6
    hot = rel >= cut
    colour = turbo((rel - cut) / max(1.0 - cut, 1e-6))
    out = np.where(hot[..., None], 0.35 * img + 0.65 * colour, grey)
    return to_uint8(out)


def palette(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 distinct colours (golden-ratio hues, fixed lightness)."""
    hues = (np.arange(n) * 0.618033988749895) % 1.0
    k = (np.array([5.0, 3.0, 1.0])[None, :] + hues[:, None] * 6.0) % 6.0
    rgb = 0.85 - 0.6 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (rgb * 255.0 + 0.5).astype(np.uint8)


def label_picture(labels: np.ndarray, names: list[str], image: np.ndarray | None = None,
                  alpha: float = 0.6) -> np.ndarray:
    """A label map ``[H, W]`` (index into ``names``, -1 = none: black) coloured, optionally blended over
    ``image``, with a legend strip per label below it: uint8 ``[H + 14 * len(names), W, 3]``."""
    labels = np.asarray(labels)
    colours = palette(len(names))
    out = np.zeros((*labels.shape, 3), dtype=np.float64)
    valid = (labels >= 0) & (labels < len(names))
    out[valid] = colours[labels[valid]] / 255.0
    if image is not None:
        img = to_uint8(image).astype(np.float64) / 255.0
        out = np.where(valid[..., None], alpha * out + (1 - alpha) * img, img * 0.3)
    rows = [to_uint8(out)]
    width = labels.shape[1]
    for name, colour in zip(names, colours, strict=True):
        strip = _label_strip("", width).copy()
        strip[2:-2, 2:10] = colour
        strip[:, 12:] = _label_strip(name, max(1, width - 12))[:, : max(0, width - 12)]
        rows.append(strip)
    return np.concatenate(rows, axis=0)
