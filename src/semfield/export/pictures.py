"""Pictures for humans: colorized depth, error maps and labelled contact sheets (numpy only, PNG output).

Every function takes and returns numpy arrays; images are ``[H, W, 3]`` float in [0, 1] or uint8, and
results are uint8 ``[H, W, 3]``. Writing goes through :func:`semfield.scene.images.save_rgb` (atomic).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..scene.images import save_rgb

# Polynomial approximation of Google's Turbo colormap (Ruofei Du, 2019): coefficients of 1, x, ..., x^5.
_TURBO = np.array([
    [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
    [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
    [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
])

LABEL_HEIGHT = 14
GAP = 2


def turbo(x: np.ndarray) -> np.ndarray:
    """Turbo colormap of values ``[...]`` in [0, 1] (clipped): float ``[..., 3]`` in [0, 1].

    Example:
        >>> turbo(np.array([0.0, 1.0])).round(2)
        array([[0.14, 0.09, 0.11],
               [0.57, 0.05, 0.  ]])
    """
    x = np.clip(np.nan_to_num(np.asarray(x, dtype=np.float64)), 0.0, 1.0)
    powers = np.stack([x**k for k in range(6)], axis=-1)
    return np.clip(powers @ _TURBO.T, 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 1|3|4]``, float in [0, 1] or uint8 → uint8 ``[H, W, 3]``."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an [H, W] or [H, W, 1|3|4] image, got shape {arr.shape}")
    arr = arr[..., :3]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return arr


def depth_range(depth: np.ndarray) -> tuple[float, float]:
    """Robust ``(near, far)`` of the valid (finite, > 0) values of ``depth [...]``: 2nd / 98th percentile."""
    d = np.asarray(depth, dtype=np.float64)
    valid = d[np.isfinite(d) & (d > 0)]
    if valid.size == 0:
        return 0.0, 1.0
    near, far = np.percentile(valid, [2.0, 98.0])
    if far - near < 1e-6:
        far = near + 1e-6
    return float(near), float(far)


def colorize_depth(depth: np.ndarray, near: float | None = None, far: float | None = None) -> np.ndarray:
    """Depth ``[H, W]`` → uint8 ``[H, W, 3]`` (Turbo: near red, far blue); 0 / negative / NaN depth is black.

    ``near`` / ``far`` default to the 2nd / 98th percentile of the valid depths; give the same values to
    compare two depth maps (e.g. rendered and ground truth).
    """
    d = np.asarray(depth, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"colorize_depth: expected [H, W] depth, got shape {d.shape}")
    lo, hi = depth_range(d)
    near = lo if near is None else float(near)
    far = hi if far is None else float(far)
    t = 1.0 - (d - near) / max(far - near, 1e-9)
    rgb = turbo(0.05 + 0.95 * np.clip(t, 0.0, 1.0))  # skip Turbo's near-black end: black means "no depth"
    rgb[~(np.isfinite(d) & (d > 0))] = 0.0
    return to_uint8(rgb)


def error_map(pred: np.ndarray, gt: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Absolute error as a Turbo image: uint8 ``[H, W, 3]``.

    Args:
        pred, gt: ``[H, W, C]`` images (error = mean over channels of ``|pred - gt|``) or ``[H, W]`` depth maps
            (pixels with ``gt <= 0`` or non-finite are black).
        vmax: error shown as the hottest colour; default the 99th percentile of the errors (at least 1e-6).
    """
    p, g = (np.asarray(a, dtype=np.float64) / (255.0 if np.asarray(a).dtype == np.uint8 else 1.0)
            for a in (pred, gt))
    if p.shape != g.shape:
        raise ValueError(f"error_map: pred {p.shape} and gt {g.shape} differ in shape")
    if p.ndim == 3:
        err, valid = np.abs(p - g).mean(axis=2), np.ones(p.shape[:2], dtype=bool)
    elif p.ndim == 2:
        valid = np.isfinite(g) & (g > 0)
        err = np.where(valid, np.abs(p - g), 0.0)
    else:
        raise ValueError(f"error_map: expected [H, W, C] or [H, W], got shape {p.shape}")
    err = np.nan_to_num(err, nan=0.0, posinf=0.0)
    if vmax is None:
        vmax = float(np.percentile(err[valid], 99.0)) if valid.any() else 1.0
    rgb = turbo(err / max(vmax, 1e-6))
    rgb[~valid] = 0.0
    return to_uint8(rgb)


def _label_strip(text: str, width: int) -> np.ndarray:
    """A black ``[LABEL_HEIGHT, width, 3]`` strip with ``text`` in white (PIL's default font, clipped)."""
    strip = Image.new("RGB", (max(width, 1), LABEL_HEIGHT), (0, 0, 0))
    ImageDraw.Draw(strip).text((2, 1), text, fill=(255, 255, 255), font=ImageFont.load_default())
    return np.asarray(strip)


def side_by_side(images: list[np.ndarray], labels: list[str] | None = None) -> np.ndarray:
    """Images in one row, each under its label: uint8 ``[LABEL_HEIGHT + max H, sum W + gaps, 3]``.

    Images may differ in size (shorter ones are padded with black at the bottom); ``[H, W]`` images are
    shown in grey. ``labels`` (one per image, or None for no label strip) are drawn with PIL's default font.
    """
    if not images:
        raise ValueError("side_by_side: no images")
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"side_by_side: {len(images)} images but {len(labels)} labels")
    tiles = [to_uint8(im) for im in images]
    height = max(t.shape[0] for t in tiles)
    top = LABEL_HEIGHT if labels is not None else 0
    width = sum(t.shape[1] for t in tiles) + GAP * (len(tiles) - 1)
    sheet = np.zeros((top + height, width, 3), dtype=np.uint8)
    x = 0
    for i, tile in enumerate(tiles):
        h, w = tile.shape[:2]
        if labels is not None:
            sheet[:top, x:x + w] = _label_strip(labels[i], w)
        sheet[top:top + h, x:x + w] = tile
        x += w + GAP
    return sheet


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Stack uint8 ``[H_i, W_i, 3]`` rows vertically (narrower ones padded with black on the right)."""
    if not rows:
        raise ValueError("stack_rows: no rows")
    tiles = [to_uint8(r) for r in rows]
    width = max(t.shape[1] for t in tiles)
    out = [np.pad(t, ((0, GAP), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    return np.concatenate(out, axis=0)[:-GAP]


def save_picture(path: str | Path, image: np.ndarray) -> Path:
    """Write an ``[H, W]`` / ``[H, W, 3]`` float-or-uint8 picture as an 8-bit RGB PNG, atomically."""
    return save_rgb(path, to_uint8(image))
