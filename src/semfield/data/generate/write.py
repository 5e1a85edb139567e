"""Ground-truth files of a generated scene: per-view PNGs, 2D boxes and the preview contact sheet.

Files are written into the generator's private temporary folder (which is renamed into place at the end),
so they need no per-file atomicity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

MIN_BOX_PIXELS = 10
SUBDIRS = ("images", "depth", "instance", "semantic")


def _png(path: Path, arr: np.ndarray) -> None:
    # Fixed compression settings and no metadata: identical arrays give identical bytes.
    Image.fromarray(arr).save(path, format="PNG", compress_level=6, optimize=False)


def label_maps(geom: np.ndarray, instance_lut: np.ndarray, stuff_lut: np.ndarray,
               object_class: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instance ids and semantic class indices ``[H, W]`` from a geom-id image (-1 = none).

    ``instance_lut`` / ``stuff_lut`` have one entry per geom plus a last one for "none"; ``object_class[k]``
    is the class index of object id k (entry 0 unused).
    """
    instance = instance_lut[geom]
    semantic = np.where(instance > 0, object_class[instance], stuff_lut[geom])
    return instance, np.maximum(semantic, 0)


def depth_mm(depth_m: np.ndarray) -> np.ndarray:
    """Planar depth in metres → uint16 millimetres, 0 where there is no value."""
    mm = np.round(np.nan_to_num(depth_m, nan=0.0, posinf=0.0) * 1000.0)
    mm[(mm <= 0) | (mm > 65535)] = 0
    return mm.astype(np.uint16)


def boxes_2d(instance: np.ndarray, min_pixels: int = MIN_BOX_PIXELS) -> dict[str, list[int]]:
    """``{object id: [x0, y0, x1, y1]}`` (pixels, x1/y1 exclusive) of objects with ≥ ``min_pixels`` pixels."""
    out = {}
    ids, counts = np.unique(instance[instance > 0], return_counts=True)
    for i, c in zip(ids.tolist(), counts.tolist()):
        if c < min_pixels:
            continue
        ys, xs = np.nonzero(instance == i)
        out[str(i)] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return out


def write_view(root: Path, index: int, rgb: np.ndarray, depth_m: np.ndarray, instance: np.ndarray,
               semantic: np.ndarray) -> dict[str, Path]:
    """Write one view's four PNGs under ``root``; returns their paths keyed by kind."""
    name = f"frame_{index:05d}.png"
    paths = {kind: root / kind / name for kind in SUBDIRS}
    _png(paths["images"], np.ascontiguousarray(rgb, dtype=np.uint8))
    _png(paths["depth"], depth_mm(depth_m))
    _png(paths["instance"], instance.astype(np.uint16))
    _png(paths["semantic"], semantic.astype(np.uint16))
    return paths


def palette(n: int) -> np.ndarray:
    """``[n, 3]`` uint8 distinct colours (0 → black)."""
    idx = np.arange(n)
    hue = (idx * 0.6180339887) % 1.0
    rgb = np.stack([np.abs(hue * 6 - 3) - 1, 2 - np.abs(hue * 6 - 2), 2 - np.abs(hue * 6 - 4)], -1)
    rgb = (np.clip(rgb, 0, 1) * 200 + 40).astype(np.uint8)
    rgb[0] = 0
    return rgb


def write_preview(path: Path, views: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
                  n_labels: int, scale: int = 1) -> None:
    """Contact sheet: one column per view (RGB, depth, instance rows), with the view's file name."""
    cols = []
    pal = palette(max(n_labels, 2))
    for name, rgb, depth, instance in views:
        valid = depth > 0
        d = np.zeros(depth.shape, np.uint8)
        if valid.any():
            lo, hi = np.percentile(depth[valid], [1, 99])
            d[valid] = (255 * (1 - np.clip((depth[valid] - lo) / max(hi - lo, 1e-6), 0, 1))).astype(np.uint8)
        rows = [rgb, np.repeat(d[..., None], 3, -1), pal[np.clip(instance, 0, len(pal) - 1)]]
        cols.append(np.concatenate(rows, 0))
    sheet = np.concatenate(cols, 1)
    img = Image.fromarray(sheet)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    header = Image.new("RGB", (img.width, 14), "white")
    draw = ImageDraw.Draw(header)
    w = img.width // len(views)
    for i, (name, *_rest) in enumerate(views):
        draw.text((i * w + 2, 1), Path(name).stem, fill="black")
    out = Image.new("RGB", (img.width, img.height + 14), "white")
    out.paste(header, (0, 0))
    out.paste(img, (0, 14))
    out.save(path, format="PNG")
