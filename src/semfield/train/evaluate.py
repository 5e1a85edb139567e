"""Held-out evaluation of a trained field: PSNR, SSIM, depth abs-rel / RMSE, pictures of the test views.

Metrics follow PROTOCOLS.md ("Image quality and geometry"): PSNR and SSIM (11x11 Gaussian window) of the
rendered RGB against the image, depth abs-rel and RMSE of the rendered planar depth against ground-truth
depth where it is > 0, and the same abs-rel restricted to the foreground (table and objects) when the
scene has semantic ground truth. Reported numbers are means over views of the per-view values.

The rendered depth is the **median** depth (where a ray's accumulated weight reaches 1/2, as nerfstudio's
"median" depth): the surface a pixel shows. The expected (weight-averaged) depth, which a veil of fog pulls
off the surface, is reported beside it as ``depth_abs_rel_expected`` / ``depth_abs_rel_fg_expected``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..eval.image_metrics import depth_abs_rel, depth_rmse, psnr, ssim
from ..export.pictures import colorize_depth, depth_range, save_picture, side_by_side, stack_rows
from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..scene.images import load_rgb, load_uint
from ..scene.types import Frame, Scene

BACKGROUND_CLASSES = frozenset({"unlabelled", "floor", "wall", "ceiling"})
SHEET_VIEWS = 4
METRICS = ("psnr", "ssim", "depth_abs_rel", "depth_rmse", "depth_abs_rel_fg", "depth_abs_rel_expected",
           "depth_abs_rel_fg_expected")


def _field_device(field: GridField) -> torch.device:
    for p in field.parameters():
        return p.device
    return torch.device("cpu")


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def load_depth(frame: Frame, scene: Scene) -> np.ndarray | None:
    """Ground-truth planar depth of ``frame`` in scene units ``[H, W]`` float64 (0 = none), or None."""
    if frame.depth_path is None:
        return None
    k = frame.intrinsics
    path = Path(frame.depth_path)
    raw = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else load_uint(
        path, expect_size=(k.width, k.height))
    raw = np.asarray(raw, dtype=np.float64).reshape(k.height, k.width)
    return raw * float(scene.depth_scale)


def class_regions(frame: Frame, scene: Scene) -> dict[str, np.ndarray] | None:
    """``{region: [H, W] bool}`` from the ground-truth semantic map: each stuff class by name (floor, wall,
    ceiling, table) and ``objects`` (every other labelled class); None without semantics."""
    sem_path = frame.extra.get("semantic")
    classes = (scene.ground_truth or {}).get("classes")
    if sem_path is None or not isinstance(classes, list):
        return None
    k = frame.intrinsics
    sem = load_uint(sem_path, expect_size=(k.width, k.height))
    stuff = set((scene.ground_truth or {}).get("stuff_classes") or ()) | (BACKGROUND_CLASSES - {"unlabelled"})
    regions = {str(c): sem == i for i, c in enumerate(classes) if str(c) in stuff}
    object_ids = [i for i, c in enumerate(classes) if str(c) not in stuff and str(c) != "unlabelled"]
    regions["objects"] = np.isin(sem, object_ids)
    return regions


def _foreground(regions: dict[str, np.ndarray]) -> np.ndarray:
    """The union of the :func:`class_regions` that are not floor, wall or ceiling: ``[H, W]`` bool."""
    return np.logical_or.reduce([m for name, m in regions.items() if name not in BACKGROUND_CLASSES])


def _view_metrics(out: dict[str, torch.Tensor], gt_rgb: torch.Tensor, gt_depth: np.ndarray | None,
                  fg: np.ndarray | None) -> dict[str, float | None]:
    """Per-view metrics from a render ``out`` (``rgb [H, W, 3]``, ``depth [H, W]``) and ground truth."""
    pred = out["rgb"].float().clamp(0, 1).cpu()
    m: dict[str, float | None] = {"psnr": float(psnr(pred, gt_rgb))}
    m["ssim"] = float(ssim(pred, gt_rgb)) if min(pred.shape[:2]) >= 11 else None
    for key in METRICS[2:]:
        m[key] = None
    if gt_depth is not None:
        d_gt = torch.as_tensor(gt_depth)
        for suffix, d_key in (("", "median_depth"), ("_expected", "depth")):
            d_pred = out[d_key].double().cpu()
            m[f"depth_abs_rel{suffix}"] = float(depth_abs_rel(d_pred, d_gt))
            if fg is not None:
                m[f"depth_abs_rel_fg{suffix}"] = float(depth_abs_rel(d_pred, d_gt, mask=torch.as_tensor(fg)))
        m["depth_rmse"] = float(depth_rmse(out["median_depth"].double().cpu(), d_gt))
    return {k: _finite_or_none(v) for k, v in m.items()}


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return _finite_or_none(float(np.mean(vals))) if vals else None


def _region_psnr(region_error: dict[str, list]) -> dict[str, dict[str, float | None]]:
    """Per region: PSNR of the squared error pooled over its pixels of all views, its share of the views'
    pixels and of their summed squared error (where the remaining error is)."""
    pixels = sum(n for _, n in region_error.values())
    error = sum(e for e, _ in region_error.values())
    out = {}
    for name, (e, n) in region_error.items():
        if n == 0:
            continue
        out[name] = {"psnr": _finite_or_none(-10.0 * math.log10(e / n)) if e > 0 else None,
                     "pixel_share": n / pixels, "error_share": e / error if error > 0 else None}
    return out


def evaluate_views(field: GridField, scene: Scene, frames: list[Frame], render_opts: RenderOptions,
                   out_dir: str | Path | None = None, prefix: str = "test") -> dict[str, Any]:
    """Render ``frames`` and score them against their images and depth.

    Args:
        field: the trained field (rendered on its own device, without gradients).
        scene: the scene the frames belong to (depth scale, semantic classes).
        frames: the views to score, e.g. ``scene.split("test")``.
        render_opts: sample counts for rendering (e.g. ``TrainConfig.eval_render``).
        out_dir: if given, writes ``{prefix}_XX_rgb.png``, ``{prefix}_XX_depth.png`` (colorized) per view and
            ``{prefix}_views.png`` (GT | render | depth | GT depth for up to 4 views).
    Returns:
        ``{psnr_test, ssim_test, depth_abs_rel_test, depth_rmse_test, depth_abs_rel_fg_test,
        depth_abs_rel_expected_test, depth_abs_rel_fg_expected_test}`` (means over views; None where no view has
        the ground truth), ``psnr_by_class_test`` (per ground-truth region: floor, wall, table, objects …,
        ``{psnr, pixel_share, error_share}``; empty without semantics), ``per_view`` (one dict per frame:
        name and the same metrics), ``render_seconds_per_view`` and ``pictures`` (written file names,
        relative to ``out_dir``).
    """
    device = _field_device(field)
    per_view, rows, pictures, seconds = [], [], [], []
    region_error: dict[str, list] = {}  # region -> [summed squared error, pixels] over all views
    for i, frame in enumerate(frames):
        k = frame.intrinsics
        gt_rgb = torch.as_tensor(load_rgb(frame.image_path, expect_size=(k.width, k.height)))
        gt_depth = load_depth(frame, scene)
        regions = class_regions(frame, scene)
        fg = _foreground(regions) if regions is not None else None
        c2w = torch.as_tensor(frame.c2w, dtype=torch.float32, device=device)
        start = time.perf_counter()
        with torch.no_grad():
            out = render_image(field, c2w, k, render_opts)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - start)
        per_view.append({"name": frame.name, **_view_metrics(out, gt_rgb, gt_depth, fg)})
        if regions is not None:
            err = (out["rgb"].float().clamp(0, 1).cpu() - gt_rgb).square().mean(-1).numpy()
            for name, mask in regions.items():
                total = region_error.setdefault(name, [0.0, 0])
                total[0] += float(err[mask].sum())
                total[1] += int(mask.sum())
        if out_dir is not None:
            rgb = out["rgb"].float().cpu().numpy()
            depth = out["median_depth"].float().cpu().numpy()
            near, far = depth_range(gt_depth if gt_depth is not None else depth)
            depth_img = colorize_depth(depth, near, far)
            stem = f"{prefix}_{i:02d}"
            save_picture(Path(out_dir) / f"{stem}_rgb.png", rgb)
            save_picture(Path(out_dir) / f"{stem}_depth.png", depth_img)
            pictures += [f"{stem}_rgb.png", f"{stem}_depth.png"]
            if len(rows) < SHEET_VIEWS:
                tiles = [gt_rgb.numpy(), rgb, depth_img]
                labels = [f"{stem} GT", "render", "depth"]
                if gt_depth is not None:
                    tiles.append(colorize_depth(gt_depth, near, far))
                    labels.append("GT depth")
                rows.append(side_by_side(tiles, labels))
    if rows:
        save_picture(Path(out_dir) / f"{prefix}_views.png", stack_rows(rows))
        pictures.append(f"{prefix}_views.png")
    result: dict[str, Any] = {f"{m}_{prefix}": _mean([v[m] for v in per_view]) for m in METRICS}
    result[f"psnr_by_class_{prefix}"] = _region_psnr(region_error)
    result["n_views"] = len(frames)
    result["render_seconds_per_view"] = float(np.mean(seconds)) if seconds else None
    result["per_view"] = per_view
    result["pictures"] = pictures
    return result
