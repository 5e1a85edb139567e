"""Feature fidelity of a run's heads at held-out views (PROTOCOLS.md, "Feature fidelity").

Each head is rendered at the test views and compared with its teacher applied to the ground-truth test
image: the raw and the centred cosine (:mod:`semfield.eval.feature_fidelity`) over the pixels whose ray hits
a surface, and SPINE's geometric fidelity factor of the rendered map against the ground-truth image
(:mod:`semfield.eval.geometric_fidelity`). Means over views.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..eval.feature_fidelity import centred_feature_cosine, feature_cosine
from ..eval.geometric_fidelity import geometric_fidelity
from ..field.renderer import render_image
from ..query.bake import MIN_ACC
from ..scene.images import load_rgb
from ..scene.types import Frame


def _nanmean(values: list) -> float | None:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def head_fidelity(fld, eval_render, views: list[Frame], teacher_maps: dict[str, list[torch.Tensor]]
                  ) -> dict[str, dict[str, float | None]]:
    """Per map name: ``cosine``, ``cosine_centred`` and ``geometric_fidelity`` (means over ``views``).

    Args:
        teacher_maps: map name -> the teacher's ``[h, w, D]`` map of each view. A map name is a head or
            ``head:variant`` (e.g. ``label:noise_free``: the same head against another teacher setting).
    """
    heads = tuple(dict.fromkeys(name.split(":")[0] for name in teacher_maps))
    opts = replace(eval_render, heads=heads)
    raw: dict[str, list] = {n: [] for n in teacher_maps}
    centred: dict[str, list] = {n: [] for n in teacher_maps}
    geometric: dict[str, list] = {h: [] for h in heads}
    for k, frame in enumerate(views):
        c2w = torch.as_tensor(frame.c2w, dtype=torch.float32, device=fld.device_)
        out = render_image(fld, c2w, frame.intrinsics, opts, colour=False)
        valid = (out["acc"] > MIN_ACC).cpu()
        for name, maps in teacher_maps.items():
            rendered = out[name.split(":")[0]].cpu()
            raw[name].append(feature_cosine(rendered, maps[k], valid))
            centred[name].append(centred_feature_cosine(rendered, maps[k], valid))
        rgb = load_rgb(frame.image_path, expect_size=(frame.intrinsics.width, frame.intrinsics.height))
        for head in heads:
            geometric[head].append(geometric_fidelity(out[head].cpu(), rgb, valid)["factor"])
    return {n: {"cosine": _nanmean(raw[n]), "cosine_centred": _nanmean(centred[n]),
                "geometric_fidelity": _nanmean(geometric[n.split(":")[0]])} for n in teacher_maps}
