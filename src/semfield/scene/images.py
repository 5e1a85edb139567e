"""Loading and saving images with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_write
from ..errors import SemfieldError


def _open(path: Path, decode: bool = True) -> Image.Image:
    """Open (and, with ``decode``, fully decode) an image; every failure is a :class:`SemfieldError`."""
    try:
        exists, is_dir = path.exists(), path.is_dir()
    except OSError as exc:  # e.g. a file name too long for the file system
        raise SemfieldError(f"cannot access image file ({exc.strerror})", path) from None
    if not exists:
        raise SemfieldError("image file is missing", path)
    if is_dir:
        raise SemfieldError("expected an image file, found a folder", path)
    img = None
    try:
        img = Image.open(path)
        if decode:
            img.load()
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt data (OSError, EOFError, ...)
        if img is not None:
            img.close()
        raise SemfieldError(f"cannot read image ({type(exc).__name__}: corrupt or not an image)", path) from None
    return img


def _check_size(img: Image.Image, expect_size: tuple[int, int] | None, path: Path) -> None:
    if expect_size is not None and tuple(img.size) != tuple(expect_size):
        raise SemfieldError(
            f"image is {img.size[0]}x{img.size[1]} but its camera says {expect_size[0]}x{expect_size[1]}", path
        )


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file, read from its header only (no decoding)."""
    path = Path(path)
    with _open(path, decode=False) as img:
        return int(img.size[0]), int(img.size[1])


def load_rgb(path: str | Path, expect_size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB image as float32 ``[H, W, 3]`` in [0, 1]; alpha (if any) is composited on black.

    ``expect_size`` is ``(width, height)``; a mismatch raises :class:`SemfieldError`.
    """
    path = Path(path)
    with _open(path) as img:
        return _to_rgb(img, expect_size, path)


def _to_rgb(img: Image.Image, expect_size: tuple[int, int] | None, path: Path) -> np.ndarray:
    _check_size(img, expect_size, path)
    try:
        if img.mode != "RGBA" and (img.mode in ("LA", "La", "PA", "RGBa") or "transparency" in img.info):
            img = img.convert("RGBA")
        if img.mode == "RGBA":
            arr = np.asarray(img, dtype=np.float32) / 255.0
            return arr[..., :3] * arr[..., 3:4]
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise SemfieldError(f"cannot convert image to RGB ({type(exc).__name__}, mode {img.mode})", path) from None


def load_uint(path: str | Path, expect_size: tuple[int, int] | None = None) -> np.ndarray:
    """Single-channel integer image (8- or 16-bit PNG) as int64 ``[H, W]`` (depth in units, ids).

    A multi-channel image gives its first channel, a palette image its indices; a floating-point image
    is an error (not integers).
    """
    path = Path(path)
    with _open(path) as img:
        _check_size(img, expect_size, path)
        arr = np.asarray(img)
        mode = img.mode
    if arr.ndim == 3:
        arr = arr[..., 0]
    if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
        raise SemfieldError(f"expected an integer image, found mode {mode}", path)
    return arr.astype(np.int64)


def save_rgb(path: str | Path, rgb: np.ndarray) -> Path:
    """Write float ``[H, W, 3]`` in [0, 1] (or uint8) as an 8-bit PNG, atomically."""
    arr = np.asarray(rgb)
    if arr.dtype != np.uint8:
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))


def save_uint16(path: str | Path, values: np.ndarray) -> Path:
    """Write integer ``[H, W]`` values in [0, 65535] as a 16-bit PNG, atomically."""
    arr = np.clip(np.asarray(values), 0, 65535).astype(np.uint16)
    return atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG"))
