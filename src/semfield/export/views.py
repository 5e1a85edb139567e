"""Render a trained run from a scene view or from a camera pose file into PNGs.

A pose file is JSON holding a camera-to-world matrix in the nerfstudio / OpenGL convention (x right, y up,
z backward), like one frame of a ``transforms.json``::

    {"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 2], [0, 0, 0, 1]],
     "fl_x": 100, "fl_y": 100, "cx": 64, "cy": 48, "w": 128, "h": 96}

The intrinsics are optional (``fl_y`` defaults to ``fl_x``, ``cx``/``cy`` to the image centre; ``w`` and
``h`` are required with ``fl_x``); without them the caller supplies a camera (the first training view's).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import SemfieldError
from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..jsonfile import read_json
from ..scene.images import save_uint16
from ..scene.nerfstudio import _pose
from ..scene.types import Intrinsics
from .pictures import colorize_depth, save_picture


def _positive(meta: dict, key: str, path: Path) -> float:
    v = meta[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise SemfieldError(f"{key} must be a positive number, got {json.dumps(v)}", path)
    return float(v)


def read_pose_file(path: str | Path) -> tuple[np.ndarray, Intrinsics | None]:
    """``(c2w [4, 4] float64 in OpenCV axes, intrinsics or None)`` from a pose file (see module doc)."""
    path = Path(path)
    meta = read_json(path, "pose file")
    if not isinstance(meta, dict) or "transform_matrix" not in meta:
        raise SemfieldError('pose file must be a JSON object with a "transform_matrix" (4x4, OpenGL axes)', path)
    c2w = _pose(meta["transform_matrix"], "pose", path)
    if "fl_x" not in meta:
        return c2w, None
    for key in ("w", "h"):
        if key not in meta:
            raise SemfieldError(f"pose file gives fl_x but no {key!r} (image size)", path)
    w, h = _positive(meta, "w", path), _positive(meta, "h", path)
    if w != int(w) or h != int(h):
        raise SemfieldError(f"image size {w:g}x{h:g} is not a whole number of pixels", path)
    fx = _positive(meta, "fl_x", path)
    fy = _positive(meta, "fl_y", path) if "fl_y" in meta else fx
    cx = float(meta.get("cx", w / 2))
    cy = float(meta.get("cy", h / 2))
    if not (math.isfinite(cx) and math.isfinite(cy)):
        raise SemfieldError("cx / cy must be finite numbers", path)
    return c2w, Intrinsics(int(w), int(h), fx, fy, cx, cy)


def resize_intrinsics(intr: Intrinsics, width: int | None, height: int | None) -> Intrinsics:
    """The same camera rendered at ``width`` x ``height`` (one of them None keeps the aspect ratio)."""
    if width is None and height is None:
        return intr
    sx = width / intr.width if width is not None else height / intr.height
    sy = height / intr.height if height is not None else sx
    w = width if width is not None else max(1, round(intr.width * sx))
    h = height if height is not None else max(1, round(intr.height * sy))
    return replace(intr, width=int(w), height=int(h), fx=intr.fx * sx, fy=intr.fy * sy, cx=intr.cx * sx,
                   cy=intr.cy * sy)


def render_to_files(field: GridField, c2w: np.ndarray, intr: Intrinsics, opts: RenderOptions,
                    out_dir: str | Path, name: str) -> dict[str, Any]:
    """Render one camera and write ``{name}_rgb.png``, ``{name}_depth_mm.png`` (16-bit planar depth in
    millimetres, 0 = none) and ``{name}_depth.png`` (colorized). Everything is rendered before anything is
    written. Returns ``{"files": [Path, ...], "seconds": float}``."""
    device = next(iter(field.parameters())).device
    c2w_t = torch.as_tensor(np.asarray(c2w), dtype=torch.float32, device=device)
    start = time.perf_counter()
    with torch.no_grad():
        out = render_image(field, c2w_t, intr, opts)
    seconds = time.perf_counter() - start
    rgb = out["rgb"].float().cpu().numpy()
    depth = out["depth"].double().cpu().numpy()
    depth_mm = np.where(np.isfinite(depth) & (depth > 0), np.round(depth * 1000.0), 0)
    colored = colorize_depth(depth)
    out_dir = Path(out_dir)
    files = [save_picture(out_dir / f"{name}_rgb.png", rgb),
             save_uint16(out_dir / f"{name}_depth_mm.png", depth_mm),
             save_picture(out_dir / f"{name}_depth.png", colored)]
    return {"files": files, "seconds": seconds}
