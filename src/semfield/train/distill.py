"""Get a run's teachers ready: build each, extract (or read from the cache) its features of the training
images, and size the field head it trains."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..field.grid_field import HeadConfig
from ..scene.images import load_rgb
from ..scene.types import Scene
from ..teachers.cache import extract_cached
from ..teachers.registry import build_teacher
from .config import TrainConfig
from .features import FeatureTargets

DEFAULT_LATENT = 32  # head grid channels before the linear decoder to the teacher's width
# Image-only teachers (DINOv2) see a point differently from different sides, so their heads are
# view-dependent: second-degree spherical harmonics of 16-wide latents on a grid 4 times coarser than the
# density's, learning at 3 times the heads' rates. On the default scene (360 iterations, label + DINOv2
# heads, bench/compare_heads.py) the held-out cosine to DINOv2 went 0.780 -> 0.840 for 11 % more
# training time than the earlier plain 32-wide head (first degree: 0.816; 32-wide second degree reached
# 0.848 in an earlier DINOv2-only sweep but trained 50 % longer; at the plain rates the chosen head 0.816).
IMAGE_HEAD = {"latent": 16, "voxel_factor": 4.0, "sh_degree": 2, "lr_factor": 3.0}
# Every teacher head's grid shares one Adam second moment per latent (HeadConfig.shared_moments): on the
# default scene the held-out cosines and text localization stayed the same (DINOv2 0.841 / 0.841, label
# noise-free 0.964 / 0.964, text 3D 0.51 / 0.51) and training took 11 s less
# (bench/compare_heads.py, variants view_dino and shared).
# Every teacher head's training renders thin its samples of weight below render.head_roulette (0.01) by
# Russian roulette (HeadConfig.roulette). The roulette has its own random stream, so bench_distill's three
# trainings had the same geometry with it as without: training-time ratio 1.60 -> 1.36, the same cosines,
# 3D text localization 0.59 / 0.51 / 0.56 against 0.56 / 0.51 / 0.56. Thinning only the DINOv2 head
# trained 1.09x longer than thinning both, and its label head did no better (0.54 / 0.46 / 0.41 against
# 0.54 / 0.49 / 0.46 on another shared geometry: bench/results/distill_image_roulette, distill_roulette).
HEAD_UPDATES = {"shared_moments": True, "roulette": True}  # how every teacher head's grid trains (above)


def prepare_teachers(scene: Scene, config: TrainConfig, cache_root: str | Path | None = None,
                     progress: bool = True) -> tuple[TrainConfig, dict[str, FeatureTargets]]:
    """Teacher features of the training split for every teacher in ``config.teachers``.

    Returns:
        the config with ``field.heads`` completed (a head per teacher, its ``dim`` the teacher's width, a
        latent of :data:`DEFAULT_LATENT` channels; text-aligned teachers: cosine loss on raw features, others:
        centred features with ``cosine_mse``; unless the config sets the head) and one
        :class:`FeatureTargets` per teacher, in training-split order (as :class:`~.data.RayBank`).
    """
    if not config.teachers:
        return config, {}
    frames = scene.split("train")
    images = [torch.from_numpy(np.ascontiguousarray(load_rgb(f.image_path))) for f in frames]
    sizes = [(f.intrinsics.width, f.intrinsics.height) for f in frames]
    heads = dict(config.field.heads)
    targets: dict[str, FeatureTargets] = {}
    for name, spec in config.teachers.items():
        teacher = build_teacher(name, spec, scene, device=config.device)
        outputs = extract_cached(teacher, images, frames, cache_root=cache_root, progress=progress)
        targets[name] = FeatureTargets([o.features for o in outputs], sizes, device=config.device)
        head = heads.get(name)
        if head is None:
            # Text-aligned features (CLIP, SigLIP, the label teacher) stay in the text encoder's space and are
            # matched by direction; image-only features (DINOv2) are centred and matched in scale too.
            if teacher.has_text:
                heads[name] = HeadConfig(dim=teacher.dim, latent=min(DEFAULT_LATENT, teacher.dim), loss="cosine",
                                         centre=False, **HEAD_UPDATES)
            else:
                heads[name] = HeadConfig(dim=teacher.dim, loss="cosine_mse", centre=True, **HEAD_UPDATES,
                                         **{**IMAGE_HEAD, "latent": min(IMAGE_HEAD["latent"], teacher.dim)})
        elif head.dim != teacher.dim:
            heads[name] = replace(head, dim=teacher.dim)
    config = replace(config, field=replace(config.field, heads=heads))
    return config, targets
