"""On-disk cache of teacher features: each image's features are computed once per teacher setting.

One safetensors file per (teacher settings, image) pair::

    <cache_root>/features/<teacher.name>/<key[:2]>/<key>.safetensors

``key`` is the sha256 of ``json.dumps(teacher.settings(), sort_keys=True)`` followed by the image content
(shape, dtype, bytes). A teacher that reads its frame rather than only the image (the simulated label
teacher of generated scenes) declares ``uses_frame = True``; its key then also covers the frame's name and
the contents of its other files (``extra`` ground truth, mask, depth).

Features are stored as float16 (half the disk; DINOv2/CLIP features lose ~1e-3 relative) and read back as
float32. A fresh result is returned after the same float16 round trip, so a first and a second run give
identical numbers. Files are written atomically; an unreadable file counts as a miss and is rewritten.
``cache_root`` defaults to ``$SEMFIELD_CACHE`` or ``~/.cache/semfield``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..atomic import atomic_write
from ..errors import SemfieldError
from ..scene.types import Frame
from .base import Teacher, TeacherOutput

FORMAT = "semfield-features-1"
_F16_MAX = float(torch.finfo(torch.float16).max)


def default_cache_root() -> Path:
    """``$SEMFIELD_CACHE`` if set, else ``~/.cache/semfield``."""
    env = os.environ.get("SEMFIELD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "semfield"


def _frame_files(frame: Frame) -> list[tuple[str, Path]]:
    files = sorted(frame.extra.items())
    files += [(k, p) for k, p in (("mask", frame.mask_path), ("depth", frame.depth_path)) if p is not None]
    return [(k, Path(p)) for k, p in files]


def cache_key(teacher: Teacher, image: torch.Tensor, frame: Frame | None = None) -> str:
    """Hex sha256 naming the features of ``image`` (``[H, W, 3]``) under ``teacher``'s settings."""
    h = hashlib.sha256(json.dumps(teacher.settings(), sort_keys=True).encode())
    pixels = image.detach().cpu().contiguous()
    h.update(f"|{tuple(pixels.shape)}|{pixels.dtype}|".encode())
    h.update(pixels.reshape(-1).view(torch.uint8).numpy())
    if frame is not None and getattr(teacher, "uses_frame", False):
        h.update(f"|frame:{frame.name}".encode())
        for name, path in _frame_files(frame):
            try:
                data = path.read_bytes()
            except OSError as exc:
                problem = f"cannot read the {name} file of frame {frame.name} ({exc.strerror})"
                raise SemfieldError(problem, path) from None
            h.update(f"|{name}:{len(data)}|".encode())
            h.update(data)
    return h.hexdigest()


def cache_file(cache_root: str | Path, teacher_name: str, key: str) -> Path:
    """Where the features with ``key`` live."""
    return Path(cache_root) / "features" / teacher_name / key[:2] / f"{key}.safetensors"


def _to_half(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().cpu().clamp(-_F16_MAX, _F16_MAX).half().contiguous()


def save_output(path: Path, out: TeacherOutput, key: str) -> TeacherOutput:
    """Write ``out`` (float16) to ``path`` atomically; return what a later :func:`load_output` gives."""
    from safetensors.torch import save_file

    tensors = {"features": _to_half(out.features)}
    if out.global_embedding is not None:
        tensors["global_embedding"] = _to_half(out.global_embedding)
    meta = {"format": FORMAT, "key": key}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    glob = tensors.get("global_embedding")
    return TeacherOutput(tensors["features"].float(), None if glob is None else glob.float())


def read_cache_entry(path: Path, fmt: str, key: str, framework: str = "pt") -> dict | None:
    """The tensors of a safetensors cache file written with metadata ``{"format": fmt, "key": key}``, or None
    when it is missing, unreadable (truncated, garbage) or another format's or key's: all are cache misses."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework=framework) as f:
            meta = f.metadata() or {}
            if meta.get("format") != fmt or meta.get("key") != key:
                return None
            return {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - a safe_open handle, not a dict
    except Exception:  # noqa: BLE001 - truncated / garbage files raise assorted errors: all are misses
        return None


def load_output(path: Path, key: str) -> TeacherOutput | None:
    """The float32 output stored at ``path``, or None if it is missing, unreadable or not ``key``'s."""
    tensors = read_cache_entry(path, FORMAT, key)
    if tensors is None or "features" not in tensors:
        return None
    features, glob = tensors["features"], tensors.get("global_embedding")
    if features.dim() != 3 or (glob is not None and glob.dim() != 1):
        return None
    return TeacherOutput(features.float(), None if glob is None else glob.float())


def extract_cached(
    teacher: Teacher,
    images: Sequence[torch.Tensor],
    frames: Sequence[Frame] | None = None,
    cache_root: str | Path | None = None,
    progress: bool = True,
) -> list[TeacherOutput]:
    """Teacher outputs of ``images``, computing only those not already on disk.

    Args:
        teacher: any :class:`~semfield.teachers.base.Teacher`.
        images: ``[H, W, 3]`` float32 RGB in [0, 1] each (sizes may differ).
        frames: the frame of each image (same length), passed to ``teacher.extract``; or None.
        cache_root: cache folder (default :func:`default_cache_root`).
        progress: show a tqdm bar over the images.

    Returns:
        One :class:`TeacherOutput` per image: float32 CPU ``features [h, w, D]`` and optional
        ``global_embedding [D_g]``, both after the float16 round trip of the cache.
    """
    from tqdm.auto import tqdm

    if frames is not None and len(frames) != len(images):
        raise ValueError(f"{len(images)} images but {len(frames)} frames")
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    results: list[TeacherOutput] = []
    hits = 0
    with tqdm(total=len(images), desc=f"{teacher.name} features", unit="img", disable=not progress) as bar:
        for i, image in enumerate(images):
            frame = frames[i] if frames is not None else None
            key = cache_key(teacher, image, frame)
            path = cache_file(root, teacher.name, key)
            out = load_output(path, key)
            if out is None:
                out = save_output(path, teacher.extract(image, frame), key)
            else:
                hits += 1
            results.append(out)
            bar.set_postfix(cached=hits, refresh=False)
            bar.update()
    return results
