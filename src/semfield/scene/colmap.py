"""Import COLMAP sparse models (text and binary) and export scenes as COLMAP text models.

A sparse model folder holds ``cameras``, ``images`` and optionally ``points3D``, each as ``.bin`` or
``.txt`` (``.bin`` is preferred when both exist). COLMAP stores world-to-camera poses (quaternion
``qw qx qy qz`` + translation) in OpenCV camera axes; semfield converts them with
:func:`semfield.scene.convention.colmap_to_c2w`. COLMAP's pixel convention (centre of the top-left pixel at
(0.5, 0.5)) is semfield's, so principal points are taken as they are.

Supported camera models: SIMPLE_PINHOLE, PINHOLE (→ ``PINHOLE``), SIMPLE_RADIAL, RADIAL, OPENCV
(→ ``OPENCV`` with ``(k1, k2, p1, p2)``, missing coefficients 0). Any other model is an error naming it.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_text
from ..errors import SemfieldError
from .convention import c2w_to_colmap, colmap_to_c2w
from .types import Frame, Intrinsics, Scene

TEST_EVERY = 8  # every 8th frame (in name order) is a test frame, as the nerfstudio reader does with no split

# COLMAP model id → (name, number of parameters); only the first five are supported.
CAMERA_MODEL_IDS: dict[int, tuple[str, int]] = {
    0: ("SIMPLE_PINHOLE", 3),
    1: ("PINHOLE", 4),
    2: ("SIMPLE_RADIAL", 4),
    3: ("RADIAL", 5),
    4: ("OPENCV", 8),
    5: ("OPENCV_FISHEYE", 8),
    6: ("FULL_OPENCV", 12),
    7: ("FOV", 5),
    8: ("SIMPLE_RADIAL_FISHEYE", 4),
    9: ("RADIAL_FISHEYE", 5),
    10: ("THIN_PRISM_FISHEYE", 12),
    11: ("RAD_TAN_THIN_PRISM_FISHEYE", 16),
}
SUPPORTED_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
_N_PARAMS = {name: n for name, n in CAMERA_MODEL_IDS.values()}


# ---------------------------------------------------------------------------------------------- helpers


def _model_file(sparse_dir: Path, stem: str, required: bool = True) -> Path | None:
    """``<stem>.bin`` or ``<stem>.txt`` in ``sparse_dir`` (binary preferred)."""
    for suffix in (".bin", ".txt"):
        p = sparse_dir / f"{stem}{suffix}"
        if p.is_file():
            return p
    if required:
        raise SemfieldError(f"COLMAP model has no {stem}.bin or {stem}.txt", sparse_dir)
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SemfieldError(f"cannot read file ({exc.strerror})", path) from None


def _text_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of a COLMAP text file, keeping blank lines (the 2D-point lines may be empty)."""
    try:
        text = _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise SemfieldError("not UTF-8 text (a binary file named .txt?)", path) from None
    return list(enumerate(text.splitlines(), start=1))


def _finite(values: list[float], what: str, path: Path) -> list[float]:
    if not all(math.isfinite(v) for v in values):
        raise SemfieldError(f"{what} has NaN or infinite values", path)
    return values


def _parse_floats(tokens: list[str], what: str, path: Path) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise SemfieldError(f"{what}: expected numbers, got {' '.join(tokens)[:60]!r}", path) from None
    return _finite(values, what, path)


def _parse_int(token: str, what: str, path: Path) -> int:
    try:
        return int(token)
    except ValueError:
        raise SemfieldError(f"{what}: expected an integer, got {token[:30]!r}", path) from None


class _Bytes:
    """Little-endian reader over a COLMAP binary file; running past the end is a :class:`SemfieldError`."""

    def __init__(self, path: Path):
        self.path = path
        self.data = _read_bytes(path)
        self.pos = 0

    def take(self, fmt: str, what: str) -> tuple[Any, ...]:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.data):
            raise SemfieldError(f"file is truncated (while reading {what} at byte {self.pos})", self.path)
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return values

    def skip(self, size: int, what: str) -> None:
        if size < 0 or self.pos + size > len(self.data):
            raise SemfieldError(f"file is truncated (while reading {what} at byte {self.pos})", self.path)
        self.pos += size

    def cstring(self, what: str) -> str:
        end = self.data.find(b"\x00", self.pos)
        if end < 0:
            raise SemfieldError(f"file is truncated (unterminated {what} at byte {self.pos})", self.path)
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SemfieldError(f"{what} at byte {self.pos} is not UTF-8", self.path) from None

    def count(self, what: str, record_min: int) -> int:
        """A uint64 record count, checked against the bytes that are left (``record_min`` bytes per record)."""
        (n,) = self.take("Q", what)
        if n * record_min > len(self.data) - self.pos:
            raise SemfieldError(f"file is truncated or corrupt ({what} = {n} does not fit in the file)", self.path)
        return n

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise SemfieldError(
                f"file is corrupt: {len(self.data) - self.pos} unexpected bytes after the last record", self.path
            )


def _intrinsics(model: str, width: int, height: int, params: list[float], where: str, path: Path) -> Intrinsics:
    if model not in SUPPORTED_MODELS:
        raise SemfieldError(
            f"{where} uses camera model {model}, which semfield does not support "
            f"(supported: {', '.join(SUPPORTED_MODELS)})",
            path,
        )
    if len(params) != _N_PARAMS[model]:
        raise SemfieldError(f"{where}: model {model} takes {_N_PARAMS[model]} parameters, got {len(params)}", path)
    _finite(params, where, path)
    if width < 1 or height < 1:
        raise SemfieldError(f"{where}: image size {width}x{height} is not positive", path)
    if model == "SIMPLE_PINHOLE":
        (f, cx, cy), fy, dist = params, None, ()
    elif model == "PINHOLE":
        (f, fy, cx, cy), dist = params, ()
    elif model == "SIMPLE_RADIAL":
        f, cx, cy, k1 = params
        fy, dist = None, (k1, 0.0, 0.0, 0.0)
    elif model == "RADIAL":
        f, cx, cy, k1, k2 = params
        fy, dist = None, (k1, k2, 0.0, 0.0)
    else:  # OPENCV
        (f, fy, cx, cy, k1, k2, p1, p2) = params
        dist = (k1, k2, p1, p2)
    fy = f if fy is None else fy
    if f <= 0 or fy <= 0:
        raise SemfieldError(f"{where}: focal length must be positive (got {f:g}, {fy:g})", path)
    return Intrinsics(int(width), int(height), float(f), float(fy), float(cx), float(cy),
                      "OPENCV" if dist else "PINHOLE", tuple(float(d) for d in dist))


def _pose(qvec: list[float], tvec: list[float], where: str, path: Path) -> np.ndarray:
    _finite(list(qvec) + list(tvec), where, path)
    norm = float(np.linalg.norm(qvec))
    if abs(norm - 1.0) > 0.01:
        raise SemfieldError(f"{where}: quaternion has norm {norm:g}, expected 1", path)
    return colmap_to_c2w(np.asarray(qvec), np.asarray(tvec))


# ---------------------------------------------------------------------------------------------- cameras


def _read_cameras_text(path: Path) -> dict[int, Intrinsics]:
    cameras: dict[int, Intrinsics] = {}
    for lineno, line in _text_lines(path):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"line {lineno}"
        if len(tokens) < 4:
            raise SemfieldError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS...", path)
        cam_id = _parse_int(tokens[0], where, path)
        width, height = _parse_int(tokens[2], where, path), _parse_int(tokens[3], where, path)
        if cam_id in cameras:
            raise SemfieldError(f"{where}: camera id {cam_id} appears twice", path)
        params = _parse_floats(tokens[4:], where, path)
        cameras[cam_id] = _intrinsics(tokens[1], width, height, params, f"{where} (camera {cam_id})", path)
    return cameras


def _read_cameras_binary(path: Path) -> dict[int, Intrinsics]:
    b = _Bytes(path)
    cameras: dict[int, Intrinsics] = {}
    for _ in range(b.count("number of cameras", 24)):
        cam_id, model_id, width, height = b.take("iiQQ", "a camera record")
        where = f"camera {cam_id}"
        if model_id not in CAMERA_MODEL_IDS:
            raise SemfieldError(f"{where} has unknown camera model id {model_id}", path)
        model, n = CAMERA_MODEL_IDS[model_id]
        if model not in SUPPORTED_MODELS:
            _intrinsics(model, width, height, [], where, path)  # raises naming the model
        params = list(b.take(f"{n}d", f"{where} parameters"))
        if cam_id in cameras:
            raise SemfieldError(f"camera id {cam_id} appears twice", path)
        cameras[cam_id] = _intrinsics(model, width, height, params, where, path)
    b.finish()
    return cameras


# ---------------------------------------------------------------------------------------------- images


def _read_images_text(path: Path) -> list[tuple[int, list[float], list[float], int, str]]:
    lines = _text_lines(path)
    records = []
    i = 0
    while i < len(lines):
        lineno, line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"line {lineno}"
        tokens = line.strip().split(maxsplit=9)
        if len(tokens) < 10:
            raise SemfieldError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", path)
        image_id = _parse_int(tokens[0], where, path)
        q_t = _parse_floats(tokens[1:8], where, path)
        camera_id = _parse_int(tokens[8], where, path)
        records.append((image_id, q_t[:4], q_t[4:], camera_id, tokens[9]))
        i += 1  # the next line lists the image's 2D points (possibly empty): not needed here
    return records


def _read_images_binary(path: Path) -> list[tuple[int, list[float], list[float], int, str]]:
    b = _Bytes(path)
    records = []
    for _ in range(b.count("number of images", 4 + 56 + 4 + 1 + 8)):
        image_id, *q_t, camera_id = b.take("i7di", "an image record")
        name = b.cstring(f"name of image {image_id}")
        (n_points,) = b.take("Q", f"number of 2D points of image {image_id}")
        b.skip(n_points * 24, f"2D points of image {image_id}")
        records.append((image_id, q_t[:4], q_t[4:], camera_id, name))
    b.finish()
    return records


# ---------------------------------------------------------------------------------------------- points


def _read_points_text(path: Path) -> tuple[np.ndarray, np.ndarray]:
    xyz, rgb = [], []
    for lineno, line in _text_lines(path):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        where = f"line {lineno}"
        if len(tokens) < 8 or (len(tokens) - 8) % 2:
            raise SemfieldError(f"{where}: expected POINT3D_ID X Y Z R G B ERROR TRACK[]", path)
        xyz.append(_parse_floats(tokens[1:4], where, path))
        colour = [_parse_int(t, where, path) for t in tokens[4:7]]
        if not all(0 <= c <= 255 for c in colour):
            raise SemfieldError(f"{where}: colour {colour} is not in 0..255", path)
        rgb.append(colour)
    return np.asarray(xyz, dtype=np.float64).reshape(-1, 3), np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)


def _read_points_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    b = _Bytes(path)
    n = b.count("number of points", 8 + 24 + 3 + 8 + 8)
    xyz = np.empty((n, 3), dtype=np.float64)
    rgb = np.empty((n, 3), dtype=np.uint8)
    for i in range(n):
        _pid, x, y, z, r, g, bl, _err, track_len = b.take("Q3d3BdQ", "a point record")
        xyz[i], rgb[i] = (x, y, z), (r, g, bl)
        b.skip(track_len * 8, f"track of point {_pid}")
    b.finish()
    if not np.all(np.isfinite(xyz)):
        raise SemfieldError("points have NaN or infinite coordinates", path)
    return xyz, rgb


# ---------------------------------------------------------------------------------------------- public


def read_colmap_points(sparse_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Sparse points of a COLMAP model: ``xyz [N, 3]`` float64 (world) and ``rgb [N, 3]`` uint8.

    A model without a points3D file gives empty ``[0, 3]`` arrays.
    """
    sparse_dir = Path(sparse_dir)
    path = _model_file(sparse_dir, "points3D", required=False)
    if path is None:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.uint8)
    return _read_points_binary(path) if path.suffix == ".bin" else _read_points_text(path)


def read_colmap(sparse_dir: str | Path, images_dir: str | Path) -> Scene:
    """Read a COLMAP sparse model (``cameras``/``images`` ``.bin`` or ``.txt``) into a :class:`Scene`.

    Frames are sorted by image name; every ``TEST_EVERY``-th one (from the first, when there are at least
    ``TEST_EVERY``) is a test frame. Image paths are ``images_dir / name``; their existence is not
    checked here (see :func:`semfield.scene.validate.check_scene_files`). ``Scene.source`` is the images file.
    """
    sparse_dir = Path(sparse_dir)
    images_dir = Path(images_dir)
    try:
        is_dir = sparse_dir.is_dir()
    except OSError as exc:
        raise SemfieldError(f"cannot access COLMAP sparse model folder ({exc.strerror})", sparse_dir) from None
    if not is_dir:
        raise SemfieldError("COLMAP sparse model folder not found", sparse_dir)
    cam_path = _model_file(sparse_dir, "cameras")
    img_path = _model_file(sparse_dir, "images")
    assert cam_path is not None and img_path is not None
    cameras = _read_cameras_binary(cam_path) if cam_path.suffix == ".bin" else _read_cameras_text(cam_path)
    records = _read_images_binary(img_path) if img_path.suffix == ".bin" else _read_images_text(img_path)
    if not records:
        raise SemfieldError("COLMAP model has no images", img_path)
    root = Path(os.path.abspath(images_dir))
    frames: list[Frame] = []
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    for image_id, qvec, tvec, camera_id, name in records:
        where = f"image {image_id} ({name!r})"
        if image_id in seen_ids:
            raise SemfieldError(f"image id {image_id} appears twice", img_path)
        if name in seen_names:
            raise SemfieldError(f"image name {name!r} appears twice", img_path)
        if not name or any(ord(c) < 32 for c in name):
            raise SemfieldError(f"image {image_id} has an empty name or one with control characters", img_path)
        seen_ids.add(image_id)
        seen_names.add(name)
        if camera_id not in cameras:
            raise SemfieldError(f"{where} uses camera {camera_id}, which {cam_path.name} does not define", img_path)
        frames.append(
            Frame(
                name=name,
                image_path=Path(os.path.normpath(root / name)),
                c2w=_pose(qvec, tvec, where, img_path),
                intrinsics=cameras[camera_id],
            )
        )
    frames.sort(key=lambda f: f.name)
    for i, f in enumerate(frames):
        f.split = "test" if (len(frames) >= TEST_EVERY and i % TEST_EVERY == 0) else "train"
    return Scene(root=root, frames=frames, source=img_path)


def _fmt(x: float) -> str:
    return repr(float(x))


def write_colmap_text(
    scene: Scene,
    sparse_dir: str | Path,
    images_dir: str | Path | None = None,
    points: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write ``scene`` as a COLMAP text model (cameras.txt, images.txt, points3D.txt) in ``sparse_dir``.

    Each distinct :class:`Intrinsics` becomes one camera (PINHOLE, or OPENCV with its distortion). Image
    names are the image paths relative to ``images_dir`` (default ``scene.root``). ``points`` is an
    optional ``(xyz [N, 3], rgb [N, 3])`` pair written without tracks; otherwise points3D.txt is empty.
    Splits, depth, masks and extra files are not part of a COLMAP model and are not written. Each file is
    written atomically. Returns ``sparse_dir``.
    """
    sparse_dir = Path(sparse_dir)
    base = Path(os.path.abspath(images_dir if images_dir is not None else scene.root))
    if not scene.frames:
        raise SemfieldError("cannot write a scene with no frames", sparse_dir)
    cam_ids: dict[Intrinsics, int] = {}
    for f in scene.frames:
        cam_ids.setdefault(f.intrinsics, len(cam_ids) + 1)

    cam_lines = ["# Camera list with one line of data per camera:",
                 "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]",
                 f"# Number of cameras: {len(cam_ids)}"]
    for k, cam_id in cam_ids.items():
        if k.model == "OPENCV":
            dist = (list(k.distortion) + [0.0] * 4)[:4]
            if len(k.distortion) > 4:
                raise SemfieldError(f"camera {cam_id}: distortion {k.distortion} has more than 4 terms", sparse_dir)
            params = [k.fx, k.fy, k.cx, k.cy, *dist]
        elif k.model == "PINHOLE":
            params = [k.fx, k.fy, k.cx, k.cy]
        else:
            raise SemfieldError(f"camera model {k.model} cannot be written to COLMAP", sparse_dir)
        cam_lines.append(" ".join([str(cam_id), k.model, str(k.width), str(k.height), *map(_fmt, params)]))

    img_lines = ["# Image list with two lines of data per image:",
                 "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
                 "#   POINTS2D[] as (X, Y, POINT3D_ID)",
                 f"# Number of images: {len(scene.frames)}, mean observations per image: 0"]
    for image_id, f in enumerate(scene.frames, start=1):
        name = Path(os.path.relpath(os.path.abspath(f.image_path), base)).as_posix()
        if not np.all(np.isfinite(f.c2w)):
            raise SemfieldError(f"frame {f.name!r} has a non-finite pose", sparse_dir)
        qvec, tvec = c2w_to_colmap(f.c2w)
        img_lines.append(" ".join([str(image_id), *map(_fmt, qvec), *map(_fmt, tvec),
                                   str(cam_ids[f.intrinsics]), name]))
        img_lines.append("")

    pt_lines = ["# 3D point list with one line of data per point:",
                "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)"]
    if points is not None:
        xyz = np.asarray(points[0], dtype=np.float64).reshape(-1, 3)
        rgb = np.asarray(points[1]).reshape(-1, 3)
        for i, (p, c) in enumerate(zip(xyz, rgb), start=1):
            pt_lines.append(" ".join([str(i), *map(_fmt, p), *(str(int(v)) for v in c), "0.0"]))

    atomic_write_text(sparse_dir / "cameras.txt", "\n".join(cam_lines) + "\n")
    atomic_write_text(sparse_dir / "images.txt", "\n".join(img_lines) + "\n")
    atomic_write_text(sparse_dir / "points3D.txt", "\n".join(pt_lines) + "\n")
    return sparse_dir
