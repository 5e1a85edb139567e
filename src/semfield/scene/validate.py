"""Check that a scene's files exist, decode and agree with its cameras, before any training starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SemfieldError
from .images import _check_size, _open, load_rgb, load_uint
from .types import Scene


def _check_npy(path: Path, size: tuple[int, int]) -> None:
    """A ``.npy`` depth map: ``[H, W]`` or ``[H, W, 1]`` of numbers matching the camera's size."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SemfieldError("depth file is missing", path) from None
    except Exception as exc:  # noqa: BLE001 - numpy raises ValueError, OSError, EOFError, ... on corrupt data
        raise SemfieldError(f"cannot read .npy array ({type(exc).__name__}: corrupt or not an array)", path) from None
    shape = arr.shape[:2] if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 1) else None
    if shape is None or not np.issubdtype(arr.dtype, np.number):
        raise SemfieldError(f"depth array has shape {arr.shape} ({arr.dtype}), expected [H, W] numbers", path)
    if (shape[1], shape[0]) != tuple(size):
        raise SemfieldError(f"depth is {shape[1]}x{shape[0]} but its camera says {size[0]}x{size[1]}", path)


def _check_image(path: Path, size: tuple[int, int], load: bool, kind: str) -> None:
    if load:
        if kind == "image":
            load_rgb(path, expect_size=size)
        else:
            load_uint(path, expect_size=size)
    else:
        with _open(path, decode=False) as img:
            _check_size(img, size, path)


def check_scene_files(scene: Scene, load_images: bool = True) -> None:
    """Check every frame's image, depth, mask and extra files; raise :class:`SemfieldError` naming the first bad one.

    Each file must exist, be readable as an image (depth may also be a ``.npy`` array), and have the size
    its frame's intrinsics give. With ``load_images=True`` every file is fully decoded (catches truncated
    or corrupt data); with ``False`` only the headers are read (fast: existence, format and size).
    """
    if not scene.frames:
        raise SemfieldError("scene has no frames", scene.source)
    for frame in scene.frames:
        size = (frame.intrinsics.width, frame.intrinsics.height)
        _check_image(Path(frame.image_path), size, load_images, "image")
        if frame.depth_path is not None:
            depth = Path(frame.depth_path)
            if depth.suffix.lower() == ".npy":
                _check_npy(depth, size)  # always loaded: small, and .npy has no cheap header API
            else:
                _check_image(depth, size, load_images, "depth")
        if frame.mask_path is not None:
            _check_image(Path(frame.mask_path), size, load_images, "mask")
        for extra_path in frame.extra.values():
            _check_image(Path(extra_path), size, load_images, "extra")
