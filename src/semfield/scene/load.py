"""One entry point for reading a scene from a folder, whatever its format."""

from __future__ import annotations

from pathlib import Path

from ..errors import SemfieldError
from .colmap import read_colmap
from .nerfstudio import read_transforms
from .types import Scene


def _has_colmap_model(folder: Path) -> bool:
    return any((folder / f"cameras{s}").is_file() for s in (".bin", ".txt")) and any(
        (folder / f"images{s}").is_file() for s in (".bin", ".txt")
    )


def _find_colmap(folder: Path) -> tuple[Path, list[Path]] | None:
    """``(sparse model folder, candidate image folders)`` for a COLMAP capture at ``folder``, or None."""
    if _has_colmap_model(folder / "sparse" / "0"):
        return folder / "sparse" / "0", [folder / "images"]
    if _has_colmap_model(folder / "sparse"):
        return folder / "sparse", [folder / "images"]
    if _has_colmap_model(folder):
        # ``folder`` is the model itself: <scene>/sparse/0, <scene>/sparse, or a bare export folder
        candidates = [folder / "images"]
        if folder.parent.name == "sparse":
            candidates.insert(0, folder.parent.parent / "images")
        elif folder.name == "sparse":
            candidates.insert(0, folder.parent / "images")
        else:
            candidates.append(folder.parent / "images")
        return folder, candidates
    return None


def _read_blender_folder(folder: Path) -> Scene:
    """The original NeRF synthetic layout: ``transforms_train.json`` + ``transforms_test.json`` (val ignored)."""
    train = read_transforms(folder / "transforms_train.json")
    for f in train.frames:
        f.split = "train"
    frames = list(train.frames)
    if (folder / "transforms_test.json").is_file():
        test = read_transforms(folder / "transforms_test.json")
        known = {f.image_path for f in frames}
        for f in test.frames:
            if f.image_path in known:
                raise SemfieldError(f"{f.name!r} is also a training image", test.source)
            f.split = "test"
        frames += test.frames
    train.frames = frames
    return train


def load_scene(path: str | Path) -> Scene:
    """Read a scene from ``path``, recognising its format.

    - a ``.json`` file, or a folder holding ``transforms.json``: nerfstudio (:func:`read_transforms`);
    - a folder holding ``transforms_train.json`` (and ``transforms_test.json``): the NeRF synthetic
      ("blender") layout, one split per file;
    - a folder holding ``sparse/0/``, ``sparse/`` or itself ``cameras.{bin,txt}`` + ``images.{bin,txt}``:
      COLMAP (:func:`read_colmap`), with the images in ``images/`` beside ``sparse/``.

    Anything else raises :class:`SemfieldError` saying what was looked for.
    """
    path = Path(path)
    try:
        exists = path.exists()
    except OSError as exc:  # e.g. a name too long for the file system
        raise SemfieldError(f"cannot access scene path ({exc.strerror})", path) from None
    if not exists:
        raise SemfieldError("scene not found", path)
    if path.is_file():
        if path.suffix.lower() == ".json":
            return read_transforms(path)
        raise SemfieldError("expected a scene folder or a transforms.json file", path)
    if (path / "transforms.json").is_file():
        return read_transforms(path / "transforms.json")
    if (path / "transforms_train.json").is_file():
        return _read_blender_folder(path)
    found = _find_colmap(path)
    if found is not None:
        sparse, candidates = found
        for images in candidates:
            if images.is_dir():
                return read_colmap(sparse, images)
        raise SemfieldError(
            f"COLMAP model found in {sparse} but no images folder (looked for "
            f"{', '.join(str(c) for c in candidates)})",
            path,
        )
    raise SemfieldError(
        "not a scene folder: found neither transforms.json (nerfstudio), transforms_train.json (NeRF "
        "synthetic) nor a COLMAP model (sparse/0/, or cameras.bin|txt + images.bin|txt)",
        path,
    )
