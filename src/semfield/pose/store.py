"""The fitted coarse model of a run, cached in ``RUN/pose/``: the view bank and the pose regressor.

``RUN/pose/coarse.safetensors`` holds the tensors (bank poses, descriptors, thumbnails, patch features and
points, regressor weights) and
``RUN/pose/coarse.json`` what they were fitted for: the run's checkpoint iteration, the teacher's settings,
the bank and regressor settings, and the fit timings. A cache whose key differs from the current one (the
run was trained further, other settings) is refitted, never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write, atomic_write_json
from ..errors import SemfieldError
from ..jsonfile import read_json
from .bank import ViewBank
from .bank_match import PatchBasis
from .regressor import PoseRegressor, regressor_from_state, regressor_state

__all__ = ["POSE_DIR", "CoarseModel", "load_coarse_model", "save_coarse_model"]

POSE_DIR = "pose"
TENSORS = "coarse.safetensors"
META = "coarse.json"
FORMAT = 4


@dataclass
class CoarseModel:
    """A view bank, the regressor fitted on it, and ``meta`` (key, settings, timings)."""

    bank: ViewBank
    regressor: PoseRegressor
    meta: dict[str, Any]


def save_coarse_model(run_dir: str | Path, model: CoarseModel) -> Path:
    """Write ``RUN/pose/coarse.{safetensors,json}`` atomically (tensors first, then the JSON that names them)."""
    folder = Path(run_dir) / POSE_DIR
    tensors = {"bank.c2w": model.bank.c2w, "bank.global": model.bank.global_vecs,
               "bank.layout": model.bank.layout_vecs, "bank.thumbs": model.bank.thumbs,
               "bank.rendered": model.bank.rendered.to(torch.uint8), "bank.patch_feats": model.bank.patch_feats,
               "bank.patch_points": model.bank.patch_points, "bank.patch_valid": model.bank.patch_valid.to(torch.uint8),
               "bank.patch_mean": model.bank.patch_basis.mean, "bank.patch_basis": model.bank.patch_basis.basis}
    tensors.update({f"regressor.{k}": v for k, v in regressor_state(model.regressor).items()})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(folder / TENSORS, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(folder / META, {"format": FORMAT, **model.meta, "thumb_size": list(model.bank.thumb_size),
                                      "image_size": list(model.bank.image_size)})
    return folder


def load_coarse_model(run_dir: str | Path, key: dict[str, Any]) -> CoarseModel | None:
    """The cached coarse model if one exists and was fitted for ``key``; None otherwise (refit it).

    Raises:
        SemfieldError: the cache exists, matches, but its tensors are unreadable.
    """
    folder = Path(run_dir) / POSE_DIR
    if not (folder / META).exists() or not (folder / TENSORS).exists():
        return None
    meta = read_json(folder / META, "pose cache")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("key") != key:
        return None
    try:
        t = load_file(str(folder / TENSORS))
        thumbs = t["bank.thumbs"]
        size = tuple(int(v) for v in meta["thumb_size"])
        if thumbs.shape[1] != 3 * size[0] * size[1]:
            raise ValueError("thumbnail size")
        feats, points, valid = t["bank.patch_feats"], t["bank.patch_points"], t["bank.patch_valid"].bool()
        basis = PatchBasis(mean=t["bank.patch_mean"], basis=t["bank.patch_basis"])
        if (feats.shape[:2] != valid.shape or points.shape != (*valid.shape, 3)
                or basis.basis.shape != (basis.mean.shape[0], feats.shape[2])):
            raise ValueError("patch shapes")
        bank = ViewBank(c2w=t["bank.c2w"], global_vecs=t["bank.global"], layout_vecs=t["bank.layout"],
                        thumbs=thumbs, thumb_size=(size[0], size[1]), rendered=t["bank.rendered"].bool(),
                        patch_feats=feats, patch_points=points, patch_valid=valid, patch_basis=basis,
                        image_size=(int(meta["image_size"][0]), int(meta["image_size"][1])))
        reg = regressor_from_state({k[len("regressor."):]: v for k, v in t.items() if k.startswith("regressor.")},
                                   hidden=int(meta["regressor"]["hidden"]))
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise SemfieldError(f"corrupt pose cache ({type(exc).__name__}); delete the folder to refit it",
                            folder / TENSORS) from None
    return CoarseModel(bank=bank, regressor=reg, meta=meta)
