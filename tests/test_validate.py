"""check_scene_files: every frame's files exist, decode and match their camera; load_scene dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semfield.errors import SemfieldError
from semfield.scene.convention import look_at
from semfield.scene.load import load_scene
from semfield.scene.nerfstudio import write_transforms
from semfield.scene.types import Frame, Intrinsics, Scene
from semfield.scene.validate import check_scene_files

W, H = 8, 6


def _save(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _good_scene(root: Path, n: int = 3) -> Scene:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        frames.append(Frame(
            name=f"images/f{i}.png",
            image_path=_save(root / f"images/f{i}.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8)),
            c2w=look_at([2.0, i - 1.0, 1.0], [0, 0, 0]),
            intrinsics=Intrinsics(W, H, 10.0, 10.0, W / 2, H / 2),
            depth_path=_save(root / f"depth/f{i}.png", np.full((H, W), 1000 + i, np.uint16)),
            mask_path=_save(root / f"masks/f{i}.png", np.full((H, W), 255, np.uint8)),
            extra={"instance": _save(root / f"instance/f{i}.png", np.zeros((H, W), np.uint8))},
        ))
    return Scene(root=root, frames=frames, depth_scale=0.001)


def _assert_names(scene: Scene, bad: Path, match: str | None = None, load_images: bool = True) -> None:
    with pytest.raises(SemfieldError) as info:
        check_scene_files(scene, load_images=load_images)
    msg = str(info.value)
    assert str(bad) in msg and "\n" not in msg, msg
    if match:
        assert match in msg, msg


@pytest.mark.parametrize("load_images", [True, False])
def test_good_scene_passes(tmp_path, load_images):
    check_scene_files(_good_scene(tmp_path), load_images=load_images)


def test_good_scene_read_back_passes(tmp_path):
    write_transforms(_good_scene(tmp_path), tmp_path / "transforms.json")
    check_scene_files(load_scene(tmp_path))


@pytest.mark.parametrize("load_images", [True, False])
def test_missing_image(tmp_path, load_images):
    scene = _good_scene(tmp_path)
    scene.frames[1].image_path.unlink()
    _assert_names(scene, scene.frames[1].image_path, "missing", load_images)


@pytest.mark.parametrize("load_images", [True, False])
def test_random_bytes_image(tmp_path, load_images):
    scene = _good_scene(tmp_path)
    scene.frames[2].image_path.write_bytes(np.random.default_rng(1).bytes(300))
    _assert_names(scene, scene.frames[2].image_path, "cannot read image", load_images)


def test_truncated_png(tmp_path):
    scene = _good_scene(tmp_path)
    big = np.random.default_rng(2).integers(0, 255, (H, W, 3), dtype=np.uint8)
    path = _save(scene.frames[0].image_path, big)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_names(scene, path, "cannot read image")


def test_image_is_a_folder(tmp_path):
    scene = _good_scene(tmp_path)
    scene.frames[0].image_path.unlink()
    scene.frames[0].image_path.mkdir()
    _assert_names(scene, scene.frames[0].image_path)


@pytest.mark.parametrize("load_images", [True, False])
def test_image_size_mismatch(tmp_path, load_images):
    scene = _good_scene(tmp_path)
    _save(scene.frames[1].image_path, np.zeros((H, W + 1, 3), np.uint8))
    _assert_names(scene, scene.frames[1].image_path, f"{W + 1}x{H}", load_images)


def test_missing_depth_file(tmp_path):
    scene = _good_scene(tmp_path)
    scene.frames[2].depth_path.unlink()
    _assert_names(scene, scene.frames[2].depth_path, "missing")


def test_depth_size_mismatch(tmp_path):
    scene = _good_scene(tmp_path)
    _save(scene.frames[0].depth_path, np.zeros((H + 2, W), np.uint16))
    _assert_names(scene, scene.frames[0].depth_path, "x")


def test_float_depth_image_is_not_integers(tmp_path):
    scene = _good_scene(tmp_path)
    path = scene.frames[0].depth_path.with_suffix(".tiff")
    Image.fromarray(np.ones((H, W), np.float32)).save(path)
    scene.frames[0].depth_path = path
    _assert_names(scene, path, "integer")


def test_npy_depth(tmp_path):
    scene = _good_scene(tmp_path)
    path = tmp_path / "depth" / "f0.npy"
    np.save(path, np.ones((H, W), np.float32))
    scene.frames[0].depth_path = path
    check_scene_files(scene)
    np.save(path, np.ones((W, H), np.float32))
    _assert_names(scene, path, "depth is")
    path.write_bytes(b"\x93NUMPY garbage")
    _assert_names(scene, path, ".npy")


def test_corrupt_mask_and_missing_extra(tmp_path):
    scene = _good_scene(tmp_path)
    scene.frames[1].mask_path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    _assert_names(scene, scene.frames[1].mask_path)
    scene = _good_scene(tmp_path)
    scene.frames[2].extra["instance"].unlink()
    _assert_names(scene, scene.frames[2].extra["instance"], "missing")


def test_empty_scene(tmp_path):
    with pytest.raises(SemfieldError):
        check_scene_files(Scene(root=tmp_path, frames=[], source=tmp_path / "transforms.json"))


def test_load_scene_errors(tmp_path):
    with pytest.raises(SemfieldError, match="not found"):
        load_scene(tmp_path / "nope")
    with pytest.raises(SemfieldError, match="neither transforms.json") as info:
        load_scene(tmp_path)
    assert str(tmp_path) in str(info.value)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SemfieldError, match="transforms.json"):
        load_scene(tmp_path / "notes.txt")


def test_load_scene_json_file(tmp_path):
    path = write_transforms(_good_scene(tmp_path), tmp_path / "my_transforms.json")
    assert len(load_scene(path).frames) == 3


def test_load_scene_blender_folder(tmp_path):
    import json

    for split in ("train", "test", "val"):
        _save(tmp_path / split / "r_0.png", np.zeros((H, W, 3), np.uint8))
        _save(tmp_path / split / "r_1.png", np.zeros((H, W, 3), np.uint8))
        meta = {"camera_angle_x": 0.8, "frames": [
            {"file_path": f"./{split}/r_{i}", "transform_matrix": np.eye(4).tolist()} for i in range(2)]}
        (tmp_path / f"transforms_{split}.json").write_text(json.dumps(meta))
    scene = load_scene(tmp_path)
    assert [(f.name, f.split) for f in scene.frames] == [
        ("./train/r_0", "train"), ("./train/r_1", "train"), ("./test/r_0", "test"), ("./test/r_1", "test")]
    check_scene_files(scene)


def test_file_name_too_long(tmp_path):
    scene = _good_scene(tmp_path, n=1)
    scene.frames[0].image_path = tmp_path / ("x" * 300 + ".png")
    _assert_names(scene, scene.frames[0].image_path, "cannot access")
    with pytest.raises(SemfieldError, match="cannot access"):
        load_scene(tmp_path / ("y" * 300))
