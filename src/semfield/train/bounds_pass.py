"""The boxes a training run uses, found from the images and cameras alone (no ground truth).

``auto`` mode trains a short, coarse RGB-only field inside boxes taken from the cameras, renders the median
surface of an evenly strided subset of the training rays, triangulates SIFT matches between neighbouring
views, and hands those points to the pure functions of :mod:`semfield.scene.bounds`: the outer box holds what
the rays saw, the focus box is where most training pixels look closely. Cameras far off the rest (a pose
gone wrong) are left out, with a warning. Boxes the user sets (``TrainConfig.bounds``, a ``semfield.aabb``
in transforms.json) are kept as they are.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import SemfieldWarning
from ..field.grid_field import final_voxel_size
from ..field.renderer import RenderOptions, render_rays
from ..render.sampling import ray_aabb
from ..scene.bounds import (
    camera_bounds,
    choose_focus,
    clip_box,
    outer_from_rays,
    outlier_cameras,
    pixel_footprint,
)
from ..scene.types import Scene
from .config import TrainConfig
from .data import RayBank

SURFACE_ACC = 0.5  # a ray whose opacity inside the box reaches this ended on a surface
PASS_BUDGET_SHARE = 0.1  # of TrainConfig.max_seconds, when a run has a time budget


def training_bounds(scene: Scene, config: TrainConfig, bank: RayBank, progress: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Outer and focus boxes ``([2, 3], [2, 3])`` for training ``scene`` with ``config``, and a report
    (how each box was found; for ``auto``: the pass's settings, its point counts and the focus candidates).

    Args:
        bank: the training rays (the pass trains and samples them).
    """
    settings = config.bounds
    frames = scene.split("train")
    c2w = np.stack([f.c2w for f in frames])
    far = outlier_cameras(c2w)
    ignored = [f.name for f, out in zip(frames, far) if out]
    if ignored:
        shown = ", ".join(ignored[:5]) + (f" and {len(ignored) - 5} more" if len(ignored) > 5 else "")
        warnings.warn(SemfieldWarning(
            f"{len(ignored)} training camera(s) lie over 10x farther from the scene than the median camera "
            f"({shown}): the boxes ignore them (set bounds.outer / bounds.focus to decide yourself)"), stacklevel=2)
        c2w = c2w[~far]
    user_outer = settings.outer if settings.outer is not None else scene.aabb
    user_outer = None if user_outer is None else np.asarray(user_outer, dtype=np.float64)
    user_focus = None if settings.focus is None else np.asarray(settings.focus, dtype=np.float64)
    cam_outer, cam_focus = camera_bounds(c2w, user_outer)
    report: dict[str, Any] = {"mode": settings.mode,
                              "cameras_ignored": ignored,
                              "outer_from": "user" if user_outer is not None else settings.mode,
                              "focus_from": "user" if user_focus is not None else settings.mode}
    if settings.mode == "cameras" or (user_outer is not None and user_focus is not None):
        outer = cam_outer
        focus = clip_box(user_focus, outer) if user_focus is not None else cam_focus
        return outer, focus, report

    start = time.perf_counter()
    pass_field, pass_steps = _coarse_pass(scene, config, bank, cam_outer, cam_focus, progress)
    surface, exits, need = _surface_points(pass_field, scene, config, bank, cam_outer)
    pad = 2.0 * pass_field.voxel
    sparse = sparse_points(scene) if user_outer is None else np.zeros((0, 3))
    outer = cam_outer if user_outer is not None else outer_from_rays(surface, exits, c2w[:, :3, 3], cam_outer, pad,
                                                                     sparse=sparse)
    if user_focus is not None:
        focus = clip_box(user_focus, outer)
        table: list[dict] = []
    elif len(surface) == 0:  # the pass found no surface at all: keep the cameras' guess
        focus, table = cam_focus, []
    else:
        def voxel_of(box):
            return final_voxel_size(config.field, box, pixel_footprint(scene, box))

        focus, table = choose_focus(surface, need, voxel_of, config.field.outer_factor, pad, outer)
    report.update({"pass_seconds": time.perf_counter() - start, "pass_steps": pass_steps,
                   "pass_voxel": pass_field.voxel,
                   "surface_points": len(surface), "exit_points": len(exits), "sparse_points": len(sparse),
                   "focus_candidates": table})
    return outer, focus, report


def _coarse_pass(scene: Scene, config: TrainConfig, bank: RayBank, outer: np.ndarray, focus: np.ndarray,
                 progress: bool):
    """An RGB-only field trained for ``bounds.pass_iterations`` steps of ``bounds.pass_rays`` rays (at most
    the run's own iterations and batch, and a tenth of its ``max_seconds``) on a uniform grid of
    ``bounds.pass_resolution`` cells along the longest side of ``outer``: same seed, losses and rendering as
    the run, no heads, one stage."""
    from .trainer import Trainer

    s = config.bounds
    voxel = float(np.max(outer[1] - outer[0])) / s.pass_resolution
    # never longer or wider than the training itself (a 5-step smoke run gets a 5-step pass)
    iterations, rays = min(s.pass_iterations, max(1, config.iterations)), min(s.pass_rays, config.batch_rays)
    pass_config = replace(config, iterations=iterations, batch_rays=rays,
                          coarse_to_fine=[(0.0, 1.0)], teachers={}, instance=None, feature_balance=0.0,
                          field=replace(config.field, heads={}, focus_voxel=voxel, outer_factor=1.0),
                          max_seconds=None, checkpoint_every=0, render=replace(config.render, heads=()))
    trainer = Trainer(scene, None, pass_config, bounds=(outer, focus))
    trainer.build()
    # with a time budget, the pass takes at most a tenth of it (then the boxes come from a shorter pass)
    deadline = None if config.max_seconds is None else time.perf_counter() + PASS_BUDGET_SHARE * config.max_seconds
    for _ in tqdm(range(iterations), desc="bounds", unit="it", disable=not progress, dynamic_ncols=True):
        if deadline is not None and trainer.iteration > 0 and time.perf_counter() > deadline:
            break
        trainer.step(bank)
        trainer.iteration += 1
    return trainer.field, trainer.iteration


@torch.no_grad()
def _surface_points(fld, scene: Scene, config: TrainConfig, bank: RayBank, outer: np.ndarray):
    """Surface points ``[S, 3]`` of the strided sample of rays that end on a surface, where the others leave
    ``outer`` (``[E, 3]``), and the voxel size ``[S]`` each surface point's pixel asks for
    (``voxel_per_pixel`` × its planar depth / focal length)."""
    n = bank.origins.shape[0]
    idx = torch.arange(0, n, max(1, n // config.bounds.sample_rays), device=bank.origins.device)
    opts = RenderOptions(background=config.render.background)
    dist, acc = [], []
    for chunk in idx.split(16384):
        out = render_rays(fld, bank.origins[chunk], bank.dirs[chunk], bank.z_per_t[chunk], opts, colour=False)
        dist.append(out["median_distance"])
        acc.append(out["acc"])
    dist, acc = torch.cat(dist), torch.cat(acc)
    o, d = bank.origins[idx], bank.dirs[idx]
    hit = acc >= SURFACE_ACC
    surface = (o + d * dist[:, None])[hit]
    focal = torch.as_tensor([np.sqrt(f.intrinsics.fx * f.intrinsics.fy) for f in scene.split("train")],
                            dtype=o.dtype, device=o.device)
    depth = (dist * bank.z_per_t[idx])[hit]
    need = config.field.voxel_per_pixel * depth / focal[bank.image_index[idx][hit].long()]
    _, far, _ = ray_aabb(o[~hit], d[~hit], torch.as_tensor(outer, dtype=o.dtype, device=o.device))
    exits = o[~hit] + d[~hit] * far[:, None]
    return surface.double().cpu().numpy(), exits.double().cpu().numpy(), need.double().cpu().numpy()


def sparse_points(scene: Scene, neighbours: int = 3, max_side: int = 640, n_features: int = 2000,
                  ratio: float = 0.8) -> np.ndarray:
    """World points ``[P, 3]`` triangulated from SIFT matches between each training view and its
    ``neighbours`` nearest views (mutual nearest neighbours passing Lowe's ``ratio``), with the known cameras;
    images larger than ``max_side`` are matched downscaled."""
    from ..pose.matching import mutual_ratio_matches, sift_keypoints
    from ..scene.images import load_rgb
    from ..scene.triangulate import good_triangulations, neighbour_pairs, triangulate, undistort_pixels

    frames = scene.split("train")
    keypoints = []
    for f in frames:
        k = f.intrinsics
        uv, desc = sift_keypoints(load_rgb(f.image_path, expect_size=(k.width, k.height)), None, n_features,
                                  max_side)
        keypoints.append((undistort_pixels(uv, k), desc))
    c2w = np.stack([f.c2w for f in frames])
    points = []
    for i, j in neighbour_pairs(c2w, neighbours):
        (uv_i, d_i), (uv_j, d_j) = keypoints[i], keypoints[j]
        a, b = mutual_ratio_matches(d_i, d_j, ratio)
        if len(a) == 0:
            continue
        K_i, K_j = frames[i].intrinsics.K, frames[j].intrinsics.K
        X = triangulate(uv_i[a], uv_j[b], K_i, K_j, c2w[i], c2w[j])
        points.append(X[good_triangulations(X, uv_i[a], uv_j[b], K_i, K_j, c2w[i], c2w[j])])
    return np.concatenate(points) if points else np.zeros((0, 3))
