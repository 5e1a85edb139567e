"""Read and write nerfstudio ``transforms.json`` datasets.

Format (https://docs.nerf.studio/quickstart/data_conventions.html): camera-to-world matrices in the OpenGL
convention, intrinsics global or per frame (``fl_x, fl_y, cx, cy, w, h``, ``camera_model`` PINHOLE or
OPENCV with ``k1, k2, p1, p2``), image paths relative to the file, optional ``depth_file_path`` and
``mask_path`` per frame, optional ``train_filenames`` / ``test_filenames``. semfield adds (ignored by
nerfstudio) ``depth_unit_scale_factor`` (as nerfstudio's depth datasets do), a ``semfield`` block with
the region of interest and ground-truth file, and per-frame ``<kind>_file_path`` for extra files
(``instance_file_path``, ``semantic_file_path``; read into ``Frame.extra[kind]``).

Also read: the original NeRF "blender" files (``camera_angle_x`` instead of ``fl_x``, focal length
``0.5 * w / tan(0.5 * camera_angle_x)``, no ``w``/``h``: the size comes from the first image, file paths
without an extension: ``.png``/``.jpg``/``.jpeg`` is tried), ``fl_x`` without ``fl_y`` (square pixels),
and missing ``cx``/``cy`` (image centre). Per-frame keys take precedence over the file's global keys.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_json
from ..errors import SemfieldError
from ..jsonfile import read_json
from .convention import opencv_to_opengl, opengl_to_opencv
from .images import image_size
from .types import CAMERA_MODELS, Frame, Intrinsics, Scene

_DISTORTION_KEYS = ("k1", "k2", "p1", "p2")
_UNSUPPORTED_DISTORTION = ("k3", "k4")
# Every other per-frame ``<kind>_file_path`` is an extra file (``instance``, ``semantic``, ...).
_EXTRA_SUFFIX = "_file_path"
_NOT_EXTRA = ("file_path", "depth_file_path", "_file_path")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG")
TEST_EVERY = 8  # with no split in the file, every 8th frame is held out (the LLFF / mip-NeRF 360 habit)
_MISSING = object()


def _short(value: Any, limit: int = 60) -> str:
    """``repr`` cut to one short line (values from the file may be huge)."""
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _number(value: Any, what: str, source: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SemfieldError(f"{what} must be a number, got {_short(value)}", source)
    try:
        f = float(value)
    except OverflowError:
        raise SemfieldError(f"{what} is too large to be a number ({_short(value)})", source) from None
    if not math.isfinite(f):
        raise SemfieldError(f"{what} is not finite ({value})", source)
    return f


def _intrinsics(
    block: dict, meta: dict, where: str, source: Path, first_image_size: Callable[[], tuple[int, int]]
) -> Intrinsics:
    """Intrinsics from a frame block, falling back on the file's global keys."""

    def get(key: str) -> Any:
        return block.get(key, meta.get(key, _MISSING))

    def label(key: str, scope: dict | None = None) -> str:
        """``frame 3: fl_x`` for a per-frame key, ``fl_x`` for a global one."""
        in_frame = key in block if scope is None else scope is block
        return f"{where}: {key}" if in_frame else key

    def num(key: str) -> float:
        return _number(get(key), label(key), source)

    model = get("camera_model")
    model = "PINHOLE" if model is _MISSING else model
    if model not in CAMERA_MODELS:
        raise SemfieldError(
            f"{where}: unknown camera_model {_short(model)} (supported: {', '.join(CAMERA_MODELS)})", source
        )

    if get("w") is _MISSING or get("h") is _MISSING:
        w, h = (float(v) for v in first_image_size())
    else:
        w, h = num("w"), num("h")
    if w < 1 or h < 1 or w != int(w) or h != int(h):
        raise SemfieldError(f"{where}: image size {w:g}x{h:g} is not a positive whole number of pixels", source)

    def focal(fl_key: str, angle_key: str, size: float) -> float | None:
        """Focal length from ``fl_*`` or ``camera_angle_*``; per-frame keys win over global ones."""
        for scope in (block, meta):
            if fl_key in scope:
                return _number(scope[fl_key], label(fl_key, scope), source)
            if angle_key in scope:
                angle = _number(scope[angle_key], label(angle_key, scope), source)
                if not 0.0 < angle < math.pi:
                    raise SemfieldError(f"{label(angle_key, scope)} {angle:g} is not in (0, pi) radians", source)
                return 0.5 * size / math.tan(0.5 * angle)
        return None

    fx = focal("fl_x", "camera_angle_x", w)
    if fx is None:
        raise SemfieldError(f"{where} has no 'fl_x' (or 'camera_angle_x') and the file gives no global one", source)
    fy = focal("fl_y", "camera_angle_y", h)
    fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise SemfieldError(f"{where}: focal length must be positive (fl_x={fx:g}, fl_y={fy:g})", source)
    cx = num("cx") if get("cx") is not _MISSING else w / 2
    cy = num("cy") if get("cy") is not _MISSING else h / 2

    for key in _UNSUPPORTED_DISTORTION:
        if get(key) is not _MISSING and num(key) != 0.0:
            raise SemfieldError(f"{where}: distortion {key} is not supported (OPENCV k1, k2, p1, p2 only)", source)
    coeffs = tuple(num(k) if get(k) is not _MISSING else 0.0 for k in _DISTORTION_KEYS)
    distortion: tuple[float, ...] = ()
    # nerfstudio applies k1..p2 whenever they are given, whatever camera_model says: so does semfield.
    if model == "OPENCV" or any(coeffs):
        model, distortion = "OPENCV", coeffs
    return Intrinsics(int(w), int(h), fx, fy, cx, cy, model, distortion)


def _pose(value: Any, where: str, source: Path) -> np.ndarray:
    """OpenGL camera-to-world (nested lists, 4x4 or 3x4) → OpenCV ``[4, 4]``, checked to be rigid."""
    if (
        not isinstance(value, list)
        or len(value) not in (3, 4)
        or not all(isinstance(row, list) and len(row) == 4 for row in value)
    ):
        raise SemfieldError(f"{where}: transform_matrix is not a 4x4 (or 3x4) list of lists of numbers", source)
    m = np.array(
        [[_number(x, f"{where} transform_matrix[{i}][{j}]", source) for j, x in enumerate(row)]
         for i, row in enumerate(value)]
    )
    if m.shape == (3, 4):
        m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
    if np.abs(m[3] - [0.0, 0.0, 0.0, 1.0]).max() > 1e-6:
        raise SemfieldError(f"{where}: transform_matrix last row is not [0, 0, 0, 1]", source)
    R = m[:3, :3]
    if np.abs(R).max() > 1.01:  # entries of a rotation lie in [-1, 1]; also keeps det / SVD from overflowing
        raise SemfieldError(f"{where}: transform_matrix rotation part is not a rotation", source)
    if abs(np.linalg.det(R)) < 1e-6:
        raise SemfieldError(f"{where}: transform_matrix is singular (rotation determinant ~ 0)", source)
    # Accept the rounding of exporters (1 %), but the 3x3 part must be a rotation: no scale, no mirror.
    u, s, vt = np.linalg.svd(R)
    if np.abs(s - 1.0).max() > 0.01 or np.linalg.det(u @ vt) < 0:
        raise SemfieldError(f"{where}: transform_matrix rotation part is not a rotation", source)
    m[:3, :3] = u @ vt
    m[3] = [0.0, 0.0, 0.0, 1.0]
    return opengl_to_opencv(m)


def _check_rel(rel: Any, where: str, key: str, source: Path) -> str:
    if not isinstance(rel, str) or not rel:
        raise SemfieldError(f"{where}: {key} must be a non-empty string, got {_short(rel)}", source)
    if any(ord(c) < 32 or ord(c) == 127 for c in rel):
        raise SemfieldError(f"{where}: {key} {_short(rel)} contains control characters", source)
    return rel


def _resolve(root: Path, rel: Any, where: str, key: str, source: Path) -> Path:
    """Absolute, normalised (symlinks kept) path of a file named relative to the file's folder."""
    return Path(os.path.normpath(root / _check_rel(rel, where, key, source)))


def _resolve_image(root: Path, rel: Any, where: str, source: Path) -> Path:
    """Like :func:`_resolve`; a missing file without an image suffix is looked for as .png / .jpg (blender)."""
    p = _resolve(root, rel, where, "file_path", source)
    if not _exists(p) and p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        for suffix in _IMAGE_SUFFIXES:
            candidate = p.with_name(p.name + suffix)
            if _exists(candidate):
                return candidate
    return p


def _exists(p: Path) -> bool:
    """``p.exists()``, False where the file system refuses the name (too long, ...)."""
    try:
        return p.exists()
    except OSError:
        return False


def _is_dir(p: Path) -> bool:
    try:
        return p.is_dir()
    except OSError:
        return False


def read_transforms(path: str | Path) -> Scene:
    """Read a nerfstudio ``transforms.json`` (path to the file or its folder) into a :class:`Scene`.

    Raises :class:`SemfieldError` naming the file for every malformed or inconsistent input.
    """
    path = Path(path)
    if _is_dir(path):
        path = path / "transforms.json"
    meta = read_json(path, "transforms.json")
    if not isinstance(meta, dict):
        raise SemfieldError(f"top level must be a JSON object, found {type(meta).__name__}", path)
    raw_frames = meta.get("frames")
    if not isinstance(raw_frames, list):
        raise SemfieldError("has no 'frames' list", path)
    if not raw_frames:
        raise SemfieldError("scene is empty: 'frames' has no entries", path)
    root = path.parent.resolve()
    depth_scale = _number(meta.get("depth_unit_scale_factor", 1.0), "depth_unit_scale_factor", path)
    if depth_scale <= 0:
        raise SemfieldError("depth_unit_scale_factor must be positive", path)

    image_paths: list[Path] = []
    for i, block in enumerate(raw_frames):
        if not isinstance(block, dict):
            raise SemfieldError(f"frame {i} is not a JSON object", path)
        image_paths.append(_resolve_image(root, block.get("file_path"), f"frame {i}", path))

    first_size: list[tuple[int, int]] = []

    def first_image_size() -> tuple[int, int]:
        """Size of the first frame's image, for files that give no w / h (blender format)."""
        if not first_size:
            try:
                first_size.append(image_size(image_paths[0]))
            except SemfieldError as exc:
                raise SemfieldError(
                    f"gives no image size (w, h) and the first image {str(image_paths[0])!r} cannot be read "
                    f"to get it ({exc.problem})",
                    path,
                ) from None
        return first_size[0]

    frames: list[Frame] = []
    seen: dict[Path, int] = {}
    for i, (block, image_path) in enumerate(zip(raw_frames, image_paths)):
        where = f"frame {i}"
        name = block["file_path"]
        if image_path in seen:
            raise SemfieldError(f"{where}: file_path {name!r} is the same image as frame {seen[image_path]}", path)
        seen[image_path] = i
        if "transform_matrix" not in block:
            raise SemfieldError(f"{where} has no transform_matrix", path)
        frame = Frame(
            name=name,
            image_path=image_path,
            c2w=_pose(block["transform_matrix"], where, path),
            intrinsics=_intrinsics(block, meta, where, path, first_image_size),
        )
        if "depth_file_path" in block:
            frame.depth_path = _resolve(root, block["depth_file_path"], where, "depth_file_path", path)
        if "mask_path" in block:
            frame.mask_path = _resolve(root, block["mask_path"], where, "mask_path", path)
        for key in block:
            if isinstance(key, str) and key.endswith(_EXTRA_SUFFIX) and key not in _NOT_EXTRA:
                frame.extra[key[: -len(_EXTRA_SUFFIX)]] = _resolve(root, block[key], where, key, path)
        frames.append(frame)

    _assign_splits(frames, meta, root, path)
    sf = meta.get("semfield", {})
    if not isinstance(sf, dict):
        raise SemfieldError("'semfield' must be a JSON object", path)
    aabb = None
    if "aabb" in sf:
        box = sf["aabb"]
        if not (isinstance(box, list) and len(box) == 2 and all(isinstance(c, list) and len(c) == 3 for c in box)):
            raise SemfieldError("semfield.aabb must be [[xmin,ymin,zmin],[xmax,ymax,zmax]]", path)
        aabb = np.array([[_number(x, "semfield.aabb", path) for x in corner] for corner in box])
        if np.any(aabb[1] <= aabb[0]):
            raise SemfieldError("semfield.aabb must have min < max on every axis", path)
    ground_truth = None
    if "ground_truth" in sf:
        gt_name = _check_rel(sf["ground_truth"], "semfield", "ground_truth", path)
        ground_truth = read_json(root / gt_name, "ground-truth file named in transforms.json")
        if not isinstance(ground_truth, dict):
            raise SemfieldError("ground-truth file must hold a JSON object", root / gt_name)
    return Scene(root=root, frames=frames, depth_scale=depth_scale, aabb=aabb, ground_truth=ground_truth, source=path)


def _assign_splits(frames: list[Frame], meta: dict, root: Path, source: Path) -> None:
    """Set ``Frame.split`` from ``train_filenames`` / ``test_filenames`` (paths compared normalised).

    With neither list, every ``TEST_EVERY``-th frame is a test frame (when there are at least that many).
    A frame in both lists is a test frame; with a train list, a frame in neither list is ``"unused"``.
    """
    by_path: dict[Path, Frame] = {}
    for f in frames:
        by_path[Path(os.path.normpath(root / f.name))] = f
        by_path[f.image_path] = f
    lists: dict[str, set[int]] = {}
    for split in ("train", "test"):
        key = f"{split}_filenames"
        if key not in meta:
            continue
        value = meta[key]
        if not isinstance(value, list):
            raise SemfieldError(f"{key} must be a list of file paths, got {type(value).__name__}", source)
        members: set[int] = set()
        for n in value:
            p = _resolve(root, n, key, "entry", source)
            if p not in by_path:
                raise SemfieldError(f"{key} names {n!r}, which is not a frame's file_path", source)
            members.add(id(by_path[p]))
        lists[split] = members
    if not lists:
        for i, f in enumerate(frames):
            f.split = "test" if (len(frames) >= TEST_EVERY and i % TEST_EVERY == 0) else "train"
        return
    train, test = lists.get("train"), lists.get("test")
    for f in frames:
        if test is not None and id(f) in test:
            f.split = "test"
        elif train is None or id(f) in train:
            f.split = "train"
        else:
            f.split = "unused"
    if not any(f.split == "train" for f in frames):
        raise SemfieldError("no training frames (train_filenames is empty or all frames are test)", source)


def write_transforms(scene: Scene, path: str | Path) -> Path:
    """Write ``scene`` as a nerfstudio ``transforms.json`` at ``path`` (atomically).

    Intrinsics shared by all frames go to the top level, otherwise per frame. Frame paths are written
    relative to the file's folder (``../`` where needed). The ``semfield`` block carries the aabb and
    ground-truth file name when the scene has them (``scene.ground_truth`` itself is written by whoever
    made it, as ``scene.json``).
    """
    path = Path(path)
    root = path.parent.resolve()
    if not scene.frames:
        raise SemfieldError("cannot write a scene with no frames", path)

    def rel(p: Path) -> str:
        p = Path(p)
        if not p.is_absolute():
            return p.as_posix()
        return Path(os.path.relpath(p, root)).as_posix()

    def intr_dict(k: Intrinsics) -> dict[str, Any]:
        d: dict[str, Any] = {"camera_model": k.model, "fl_x": k.fx, "fl_y": k.fy, "cx": k.cx, "cy": k.cy,
                             "w": k.width, "h": k.height}
        if k.model == "OPENCV":
            d.update(dict(zip(_DISTORTION_KEYS, (list(k.distortion) + [0.0] * 4)[:4])))
        return d

    for f in scene.frames:
        k = f.intrinsics
        values = [*np.ravel(f.c2w), k.fx, k.fy, k.cx, k.cy, *k.distortion]
        if np.shape(f.c2w) != (4, 4) or not np.all(np.isfinite(np.asarray(values, dtype=np.float64))):
            raise SemfieldError(f"cannot write frame {f.name!r}: pose or intrinsics not finite / not 4x4", path)

    shared = len({f.intrinsics for f in scene.frames}) == 1
    meta: dict[str, Any] = intr_dict(scene.frames[0].intrinsics) if shared else {}
    meta["depth_unit_scale_factor"] = scene.depth_scale
    frames = []
    for f in scene.frames:
        block: dict[str, Any] = {"file_path": rel(f.image_path),
                                 "transform_matrix": opencv_to_opengl(f.c2w).tolist()}
        if not shared:
            block.update(intr_dict(f.intrinsics))
        if f.depth_path is not None:
            block["depth_file_path"] = rel(f.depth_path)
        if f.mask_path is not None:
            block["mask_path"] = rel(f.mask_path)
        for extra, extra_path in f.extra.items():
            if extra + _EXTRA_SUFFIX in _NOT_EXTRA:
                raise SemfieldError(f"frame {f.name!r}: extra file kind {extra!r} is reserved", path)
            block[extra + _EXTRA_SUFFIX] = rel(extra_path)
        frames.append(block)
    meta["frames"] = frames
    meta["train_filenames"] = [b["file_path"] for b, f in zip(frames, scene.frames) if f.split == "train"]
    meta["test_filenames"] = [b["file_path"] for b, f in zip(frames, scene.frames) if f.split == "test"]
    sf: dict[str, Any] = {}
    if scene.aabb is not None:
        sf["aabb"] = np.asarray(scene.aabb, dtype=float).tolist()
    if scene.ground_truth is not None:
        sf["ground_truth"] = "scene.json"
    if sf:
        meta["semfield"] = sf
    return atomic_write_json(path, meta)
