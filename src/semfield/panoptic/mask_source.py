"""Per-view 2D instance masks for training the instance field: the sources, and their on-disk cache.

A mask source maps one training image to a segment map ``[H, W]`` (int, -1 = no mask) with ids that mean
nothing outside that view. Sources, chosen by ``TrainConfig.instance["masks"] = {"kind": ..., options}``:

- ``"simulated"``: ground-truth masks of generated scenes with simulated SAM errors
  (:mod:`.masks_simulated`); reports call them "simulated masks";
- ``"dino"``: clusters of the DINOv2 patch features refined at image resolution (:mod:`.masks_dino`);
- ``"sam"``: SAM through transformers with automatic mask generation (:mod:`.masks_sam`).

Cache: like teacher features (:mod:`semfield.teachers.cache`), one safetensors file per (source settings,
image content, and for sources that read the frame its files)::

    <cache_root>/masks/<kind>/<key[:2]>/<key>.safetensors     tensor "segments" int32 [H, W]
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write
from ..errors import SemfieldError
from ..scene.images import load_uint
from ..scene.types import Frame, Scene
from ..teachers.cache import cache_key, default_cache_root, read_cache_entry
from .masks_dino import dino_segments
from .masks_simulated import simulate_masks

FORMAT = "semfield-masks-1"
KINDS = ("simulated", "dino", "sam")


def _view_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{seed}|{name}".encode()).digest()[:8], "little"))


class SimulatedMasks:
    """Ground-truth masks with simulated SAM errors (generated scenes only); see :func:`simulate_masks`."""

    kind = "simulated"
    uses_frame = True

    def __init__(self, stuff_classes: Sequence[int], seed: int = 0, split_rate: float = 0.1,
                 merge_rate: float = 0.1, ragged_px: float = 1.5, min_pixels: int = 8):
        for name, rate in (("split_rate", split_rate), ("merge_rate", merge_rate)):
            if not 0.0 <= rate <= 1.0:
                raise SemfieldError(f"simulated masks: {name} must lie in [0, 1], got {rate}")
        self.stuff_classes = sorted(int(c) for c in stuff_classes)
        self.seed, self.split_rate, self.merge_rate = int(seed), float(split_rate), float(merge_rate)
        self.ragged_px, self.min_pixels = float(ragged_px), int(min_pixels)

    @classmethod
    def from_scene(cls, scene: Scene, **options) -> SimulatedMasks:
        gt = scene.ground_truth or {}
        classes, stuff = gt.get("classes"), gt.get("stuff_classes")
        if not isinstance(classes, list) or not isinstance(stuff, list):
            raise SemfieldError("simulated masks need a generated scene (scene.json with classes and "
                                "stuff_classes)", scene.source)
        return cls([classes.index(s) for s in stuff if s in classes], **options)

    def settings(self) -> dict:
        return {"kind": self.kind, "stuff_classes": self.stuff_classes, "seed": self.seed,
                "split_rate": self.split_rate, "merge_rate": self.merge_rate, "ragged_px": self.ragged_px,
                "min_pixels": self.min_pixels, "version": 1}

    def masks(self, image: torch.Tensor, frame: Frame | None) -> np.ndarray:
        if frame is None or "instance" not in frame.extra or "semantic" not in frame.extra:
            raise SemfieldError("simulated masks need the frame's ground-truth instance and semantic images",
                                None if frame is None else frame.image_path)
        size = (int(image.shape[1]), int(image.shape[0]))
        inst = load_uint(frame.extra["instance"], expect_size=size)
        sem = load_uint(frame.extra["semantic"], expect_size=size)
        return simulate_masks(inst, sem, self.stuff_classes, _view_rng(self.seed, frame.name),
                              self.split_rate, self.merge_rate, self.ragged_px, self.min_pixels)


class DinoMasks:
    """Segments from clustering DINOv2 patch features (:func:`dino_segments`); ``teacher`` gives the
    features (its own cache is used, so a run that also distils DINOv2 computes them once)."""

    kind = "dino"
    uses_frame = False

    def __init__(self, teacher, cache_root: str | Path | None = None, **options):
        known = set(inspect.signature(dino_segments).parameters) - {"features", "image"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise SemfieldError(f"dino masks: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        self.teacher, self.cache_root, self.options = teacher, cache_root, dict(options)

    def settings(self) -> dict:
        return {"kind": self.kind, "teacher": self.teacher.settings(), "options": self.options, "version": 2}

    def masks(self, image: torch.Tensor, frame: Frame | None) -> np.ndarray:
        from ..teachers.cache import extract_cached

        feats = extract_cached(self.teacher, [image], None if frame is None else [frame],
                               cache_root=self.cache_root, progress=False)[0].features
        return dino_segments(feats, image.numpy(), **self.options)


def build_mask_source(spec: dict, scene: Scene, device: str = "cpu", cache_root: str | Path | None = None):
    """A mask source from its spec ``{"kind": "simulated" | "dino" | "sam", options...}``."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise SemfieldError(f'instance masks must be an object with a "kind" ({", ".join(KINDS)}), got {spec!r}')
    options = dict(spec)
    kind = options.pop("kind")
    try:
        if kind == "simulated":
            return SimulatedMasks.from_scene(scene, **options)
        if kind == "dino":
            from ..teachers.registry import build_teacher

            teacher_spec = {"kind": "dinov2", **options.pop("teacher", {})}
            return DinoMasks(build_teacher("dinov2", teacher_spec, scene, device=device), cache_root, **options)
        if kind == "sam":
            from .masks_sam import SamMasks

            return SamMasks.load(device=device, **options)
    except TypeError as exc:
        raise SemfieldError(f"{kind} masks: bad option ({exc})") from None
    raise SemfieldError(f"unknown mask source {kind!r} (one of {', '.join(KINDS)})")


def mask_file(cache_root: str | Path, kind: str, key: str) -> Path:
    return Path(cache_root) / "masks" / kind / key[:2] / f"{key}.safetensors"


def _load(path: Path, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    tensors = read_cache_entry(path, FORMAT, key, framework="np")
    seg = None if tensors is None else tensors.get("segments")
    return seg.astype(np.int64) if seg is not None and seg.shape == shape else None


def masks_cached(source, images: Sequence[torch.Tensor], frames: Sequence[Frame] | None = None,
                 cache_root: str | Path | None = None, progress: bool = True) -> list[np.ndarray]:
    """Segment maps ``[H, W]`` int64 of ``images`` (``[H, W, 3]`` float in [0, 1]) by ``source``, computing
    only those not already in the cache."""
    from safetensors.numpy import save_file
    from tqdm.auto import tqdm

    root = Path(cache_root) if cache_root is not None else default_cache_root()
    out = []
    for i, image in enumerate(tqdm(images, desc=f"{source.kind} masks", unit="img", disable=not progress)):
        frame = None if frames is None else frames[i]
        key = cache_key(source, image, frame)
        path = mask_file(root, source.kind, key)
        shape = (int(image.shape[0]), int(image.shape[1]))
        seg = _load(path, key, shape)
        if seg is None:
            seg = np.asarray(source.masks(image, frame), dtype=np.int64)
            if seg.shape != shape:
                raise SemfieldError(f"{source.kind} masks: got a {seg.shape} map for a {shape} image")
            # contiguous: safetensors writes an array's memory as is, so a Fortran-ordered one reads back scrambled
            tensors = {"segments": np.ascontiguousarray(seg, dtype=np.int32)}
            meta = {"format": FORMAT, "key": key}
            atomic_write(path, lambda tmp, t=tensors, m=meta: save_file(t, str(tmp), metadata=m))
        out.append(seg)
    return out
