"""nerfstudio transforms.json: round trips, format variants, and a SemfieldError for every malformed input."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from semfield.errors import SemfieldError
from semfield.scene.convention import look_at, opencv_to_opengl
from semfield.scene.nerfstudio import read_transforms, write_transforms
from semfield.scene.types import Frame, Intrinsics, Scene


def _png(path: Path, w: int = 8, h: int = 6) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    return path


def _poses(n: int) -> list[np.ndarray]:
    return [look_at([3 * math.cos(a), 3 * math.sin(a), 1.0 + 0.1 * a], [0, 0, 0.2])
            for a in np.linspace(0, 2 * math.pi, n, endpoint=False)]


def _valid_meta(n: int = 3) -> dict:
    """A small valid transforms.json (global PINHOLE intrinsics, explicit splits)."""
    return {
        "camera_model": "PINHOLE",
        "fl_x": 10.0, "fl_y": 11.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6,
        "frames": [
            {"file_path": f"images/f{i}.png", "transform_matrix": opencv_to_opengl(c2w).tolist(),
             "depth_file_path": f"depth/f{i}.png", "mask_path": f"masks/f{i}.png"}
            for i, c2w in enumerate(_poses(n))
        ],
        "train_filenames": [f"images/f{i}.png" for i in range(n - 1)],
        "test_filenames": [f"images/f{n - 1}.png"],
    }


def _write(path: Path, meta) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta), encoding="utf-8")
    return path


def _assert_error(path: Path, match: str | None = None) -> SemfieldError:
    with pytest.raises(SemfieldError) as info:
        read_transforms(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    assert "\n" not in msg, msg
    if match is not None:
        assert match in msg, msg
    return info.value


# ------------------------------------------------------------------------------------------- round trips


def _scene(tmp_path: Path, shared: bool) -> Scene:
    frames = []
    for i, c2w in enumerate(_poses(5)):
        if shared:
            k = Intrinsics(8, 6, 10.0, 10.5, 4.0, 3.0, "OPENCV", (0.01, -0.002, 0.0003, 0.0004))
        else:
            k = Intrinsics(8 + i, 6 + i, 10.0 + i, 11.0 + i, 4.25, 3.5) if i % 2 else Intrinsics(
                8, 6, 9.0, 9.0, 4.0, 3.0, "OPENCV", (0.1, 0.2, 0.3, 0.4))
        frames.append(Frame(
            name=f"images/f{i}.png", image_path=tmp_path / f"images/f{i}.png", c2w=c2w, intrinsics=k,
            split="test" if i == 2 else "train",
            depth_path=tmp_path / f"depth/f{i}.png" if i != 1 else None,
            mask_path=tmp_path / f"masks/f{i}.png" if i != 3 else None,
            extra={"instance": tmp_path / f"instance/f{i}.png", "semantic": tmp_path / f"sem/f{i}.png"},
        ))
    return Scene(root=tmp_path, frames=frames, depth_scale=0.001, aabb=np.array([[-1, -1, 0], [1, 1, 2.0]]))


@pytest.mark.parametrize("shared", [True, False])
def test_write_read_round_trip(tmp_path, shared):
    scene = _scene(tmp_path, shared)
    path = write_transforms(scene, tmp_path / "transforms.json")
    meta = json.loads(path.read_text())
    assert ("fl_x" in meta) == shared and ("fl_x" in meta["frames"][0]) == (not shared)
    back = read_transforms(tmp_path)
    assert back.source == path and back.depth_scale == 0.001
    np.testing.assert_array_equal(back.aabb, scene.aabb)
    assert len(back.frames) == len(scene.frames)
    for a, b in zip(scene.frames, back.frames):
        assert b.name == a.name and b.split == a.split
        np.testing.assert_allclose(b.c2w, a.c2w, atol=1e-9)
        assert b.intrinsics == a.intrinsics
        assert b.image_path == a.image_path
        assert b.depth_path == a.depth_path and b.mask_path == a.mask_path
        assert b.extra == a.extra


def test_round_trip_paths_outside_the_folder(tmp_path):
    scene = _scene(tmp_path / "data", shared=True)
    path = write_transforms(scene, tmp_path / "out" / "transforms.json")
    assert json.loads(path.read_text())["frames"][0]["file_path"] == "../data/images/f0.png"
    back = read_transforms(path)
    assert [f.image_path for f in back.frames] == [f.image_path for f in scene.frames]


def test_global_and_per_frame_intrinsics(tmp_path):
    meta = _valid_meta(3)
    meta["frames"][1].update({"fl_x": 20.0, "fl_y": 21.0, "w": 16, "h": 12, "cx": 8.5, "cy": 6.5})
    meta["frames"][2].update({"camera_model": "OPENCV", "k1": 0.1, "p2": 0.01})
    scene = read_transforms(_write(tmp_path / "transforms.json", meta))
    k0, k1, k2 = (f.intrinsics for f in scene.frames)
    assert k0 == Intrinsics(8, 6, 10.0, 11.0, 4.0, 3.0, "PINHOLE", ())
    assert k1 == Intrinsics(16, 12, 20.0, 21.0, 8.5, 6.5, "PINHOLE", ())
    assert k2 == Intrinsics(8, 6, 10.0, 11.0, 4.0, 3.0, "OPENCV", (0.1, 0.0, 0.0, 0.01))
    assert [f.split for f in scene.frames] == ["train", "train", "test"]
    assert scene.frames[0].depth_path == tmp_path / "depth/f0.png"
    assert scene.frames[0].mask_path == tmp_path / "masks/f0.png"


def test_opencv_distortion_global(tmp_path):
    meta = _valid_meta(2)
    meta.update({"camera_model": "OPENCV", "k1": -0.1, "k2": 0.02, "p1": 0.001, "p2": -0.002, "k3": 0.0})
    scene = read_transforms(_write(tmp_path / "transforms.json", meta))
    assert all(f.intrinsics.model == "OPENCV" for f in scene.frames)
    assert scene.frames[0].intrinsics.distortion == (-0.1, 0.02, 0.001, -0.002)


def test_distortion_on_pinhole_camera_is_kept_as_opencv(tmp_path):
    meta = _valid_meta(2)
    meta.pop("camera_model")
    meta["k1"] = 0.05  # nerfstudio applies k1..p2 whenever given
    k = read_transforms(_write(tmp_path / "transforms.json", meta)).frames[0].intrinsics
    assert k.model == "OPENCV" and k.distortion == (0.05, 0.0, 0.0, 0.0)


def test_pose_is_converted_from_opengl(tmp_path):
    meta = _valid_meta(2)
    gl = np.eye(4)
    gl[:3, 3] = [1.0, 2.0, 3.0]  # OpenGL camera looking along world -z, y up
    meta["frames"][0]["transform_matrix"] = gl[:3].tolist()  # 3x4 accepted
    c2w = read_transforms(_write(tmp_path / "transforms.json", meta)).frames[0].c2w
    np.testing.assert_allclose(c2w[:3, 2], [0, 0, -1])  # OpenCV z = viewing direction
    np.testing.assert_allclose(c2w[:3, 1], [0, -1, 0])  # OpenCV y = down
    np.testing.assert_allclose(c2w[:3, 3], [1, 2, 3])


def test_fl_x_only_and_default_centre(tmp_path):
    meta = _valid_meta(2)
    for key in ("fl_y", "cx", "cy"):
        meta.pop(key)
    k = read_transforms(_write(tmp_path / "transforms.json", meta)).frames[0].intrinsics
    assert (k.fx, k.fy, k.cx, k.cy) == (10.0, 10.0, 4.0, 3.0)


def test_blender_camera_angle_x_format(tmp_path):
    for split, i in itertools.product(("train", "test"), range(2)):
        _png(tmp_path / split / f"r_{i}.png", 40, 30)
    angle = 0.6911112070083618
    meta = {"camera_angle_x": angle, "frames": [
        {"file_path": f"./{split}/r_{i}", "rotation": 0.0, "transform_matrix": opencv_to_opengl(c2w).tolist()}
        for (split, i), c2w in zip(itertools.product(("train", "test"), range(2)), _poses(4))
    ]}
    scene = read_transforms(_write(tmp_path / "transforms.json", meta))
    f0 = scene.frames[0]
    fl = 0.5 * 40 / math.tan(0.5 * angle)
    assert f0.intrinsics == Intrinsics(40, 30, fl, fl, 20.0, 15.0)
    assert f0.name == "./train/r_0" and f0.image_path == tmp_path / "train" / "r_0.png"
    assert len(scene.frames) == 4


def test_blender_jpg_images(tmp_path):
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(tmp_path / "a.jpg")
    meta = {"camera_angle_x": 1.0, "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}
    f = read_transforms(_write(tmp_path / "transforms.json", meta)).frames[0]
    assert f.image_path == tmp_path / "a.jpg" and (f.intrinsics.width, f.intrinsics.height) == (12, 10)


def test_default_split_every_eighth(tmp_path):
    meta = _valid_meta(17)
    del meta["train_filenames"], meta["test_filenames"]
    scene = read_transforms(_write(tmp_path / "transforms.json", meta))
    assert [i for i, f in enumerate(scene.frames) if f.split == "test"] == [0, 8, 16]


def test_split_lists_compare_normalised_paths(tmp_path):
    meta = _valid_meta(3)
    meta["test_filenames"] = ["./images/f2.png"]
    meta["train_filenames"] = ["images/../images/f0.png"]  # f1 is in neither list
    scene = read_transforms(_write(tmp_path / "transforms.json", meta))
    assert [f.split for f in scene.frames] == ["train", "unused", "test"]


def test_ground_truth_file(tmp_path):
    meta = _valid_meta(2)
    meta["semfield"] = {"ground_truth": "scene.json"}
    (tmp_path / "scene.json").write_text('{"classes": ["a"]}')
    scene = read_transforms(_write(tmp_path / "transforms.json", meta))
    assert scene.ground_truth == {"classes": ["a"]}


# ------------------------------------------------------------------------------------------- malformed


def _set(path_keys, value):
    def mutate(meta):
        target = meta
        for k in path_keys[:-1]:
            target = target[k]
        target[path_keys[-1]] = value
        return meta
    return mutate


def _delete(path_keys):
    def mutate(meta):
        target = meta
        for k in path_keys[:-1]:
            target = target[k]
        del target[path_keys[-1]]
        return meta
    return mutate


def _matrix(m):
    return _set(["frames", 0, "transform_matrix"], np.asarray(m, dtype=float).tolist())


_SCALED = np.diag([2.0, 2.0, 2.0, 1.0])
_MIRROR = np.diag([1.0, 1.0, -1.0, 1.0])
_SHEAR = np.eye(4)
_SHEAR[0, 1] = 0.5
_BAD_ROW = np.eye(4)
_BAD_ROW[3] = [1.0, 0.0, 0.0, 1.0]

MALFORMED = {
    # wrong types
    "w_string": (_set(["w"], "640"), "must be a number"),
    "w_bool": (_set(["w"], True), "must be a number"),
    "fl_x_list": (_set(["fl_x"], [10.0]), "must be a number"),
    "fl_x_null": (_set(["fl_x"], None), "must be a number"),
    "cx_dict": (_set(["frames", 1, "cx"], {}), "must be a number"),
    "k1_string": (lambda m: {**m, "camera_model": "OPENCV", "k1": "0.1"}, "must be a number"),
    "frames_object": (_set(["frames"], {"0": {}}), "frames"),
    "frame_not_object": (_set(["frames", 1], [1, 2]), "frame 1"),
    "file_path_number": (_set(["frames", 0, "file_path"], 7), "file_path"),
    "file_path_empty": (_set(["frames", 0, "file_path"], ""), "file_path"),
    "file_path_control_chars": (_set(["frames", 0, "file_path"], "a\nb.png"), "control characters"),
    "file_path_nul": (_set(["frames", 0, "file_path"], "a\x00b.png"), "control characters"),
    "file_path_missing": (_delete(["frames", 0, "file_path"]), "file_path"),
    "depth_path_list": (_set(["frames", 0, "depth_file_path"], ["a.png"]), "depth_file_path"),
    "mask_path_null": (_set(["frames", 0, "mask_path"], None), "mask_path"),
    "extra_path_number": (_set(["frames", 0, "instance_file_path"], 3), "instance_file_path"),
    "matrix_string": (_set(["frames", 0, "transform_matrix"], "identity"), "transform_matrix"),
    "matrix_strings_inside": (_set(["frames", 0, "transform_matrix"], [["1", "0", "0", "0"]] * 4),
                              "must be a number"),
    "matrix_ragged": (_set(["frames", 0, "transform_matrix"], [[1, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]),
                      "transform_matrix"),
    "matrix_2x2": (_matrix(np.eye(2)), "transform_matrix"),
    "matrix_flat": (_set(["frames", 0, "transform_matrix"], list(range(16))), "transform_matrix"),
    "matrix_missing": (_delete(["frames", 0, "transform_matrix"]), "transform_matrix"),
    "camera_model_number": (_set(["camera_model"], 5), "camera_model"),
    "depth_scale_string": (_set(["depth_unit_scale_factor"], "mm"), "depth_unit_scale_factor"),
    "depth_scale_negative": (_set(["depth_unit_scale_factor"], -1.0), "depth_unit_scale_factor"),
    "semfield_list": (_set(["semfield"], []), "semfield"),
    "aabb_strings": (_set(["semfield"], {"aabb": [["0", "0", "0"], ["1", "1", "1"]]}), "aabb"),
    "aabb_inverted": (_set(["semfield"], {"aabb": [[1, 1, 1], [0, 0, 0]]}), "aabb"),
    "aabb_shape": (_set(["semfield"], {"aabb": [1, 2, 3]}), "aabb"),
    "ground_truth_number": (_set(["semfield"], {"ground_truth": 1}), "ground_truth"),
    # NaN / inf / huge
    "matrix_nan": (_set(["frames", 0, "transform_matrix", 0, 3], float("nan")), "not finite"),
    "matrix_inf": (_set(["frames", 0, "transform_matrix", 1, 3], float("inf")), "not finite"),
    "fl_x_nan": (_set(["fl_x"], float("nan")), "not finite"),
    "cy_inf": (_set(["cy"], float("-inf")), "not finite"),
    "huge_int": (_set(["frames", 0, "transform_matrix", 0, 3], 10**400), "too large"),
    "huge_w": (_set(["w"], 10**400), "too large"),
    # poses
    "singular_pose": (_matrix(np.diag([1.0, 1.0, 0.0, 1.0])), "singular"),
    "zero_pose": (_matrix(np.zeros((4, 4))), "transform_matrix"),
    "scaled_pose": (_matrix(_SCALED), "not a rotation"),
    "mirrored_pose": (_matrix(_MIRROR), "not a rotation"),
    "sheared_pose": (_matrix(_SHEAR), "not a rotation"),
    "bad_last_row": (_matrix(_BAD_ROW), "last row"),
    # camera models and sizes
    "unknown_camera_model": (_set(["camera_model"], "OPENCV_FISHEYE"), "OPENCV_FISHEYE"),
    "unknown_per_frame_model": (_set(["frames", 2, "camera_model"], "EQUIRECTANGULAR"), "frame 2"),
    "k3_unsupported": (lambda m: {**m, "camera_model": "OPENCV", "k3": 0.1}, "k3"),
    "negative_width": (_set(["w"], -8), "image size"),
    "zero_height": (_set(["h"], 0), "image size"),
    "fractional_width": (_set(["w"], 8.5), "image size"),
    "negative_focal": (_set(["fl_x"], -10.0), "focal length"),
    "zero_focal_y": (_set(["fl_y"], 0), "focal length"),
    "no_focal": (_delete(["fl_x"]), "fl_x"),
    "camera_angle_out_of_range": (lambda m: {**{k: v for k, v in m.items() if k != "fl_x"},
                                             "camera_angle_x": 4.0}, "camera_angle_x"),
    # frames and splits
    "duplicate_frames": (_set(["frames", 1, "file_path"], "images/f0.png"), "same image"),
    "duplicate_frames_normalised": (_set(["frames", 1, "file_path"], "./images/f0.png"), "same image"),
    "split_names_unknown_frame": (_set(["test_filenames"], ["images/nope.png"]), "nope.png"),
    "split_not_list": (_set(["train_filenames"], "images/f0.png"), "train_filenames"),
    "split_entry_not_string": (_set(["train_filenames"], [0]), "train_filenames"),
    "no_train_frames": (_set(["train_filenames"], []), "no training frames"),
    "empty_frames": (_set(["frames"], []), "empty"),
    "no_frames_key": (_delete(["frames"]), "frames"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input(tmp_path, case):
    mutate, match = MALFORMED[case]
    meta = mutate(copy.deepcopy(_valid_meta(3)))
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(meta, allow_nan=True), encoding="utf-8")
    _assert_error(path, match)


@pytest.mark.parametrize("content", ['[]', '3', '"frames"', 'null', '[{"frames": []}]'])
def test_non_object_json(tmp_path, content):
    path = tmp_path / "transforms.json"
    path.write_text(content)
    _assert_error(path, "JSON object")


@pytest.mark.parametrize("data", [b"\xff\xfe\x00\x81garbage", b"{\"frames\": [\xc3\x28]}", b"\x89PNG\r\n\x1a\n"])
def test_undecodable_bytes(tmp_path, data):
    path = tmp_path / "transforms.json"
    path.write_bytes(data)
    _assert_error(path)


@pytest.mark.parametrize("content", ["{", "{'frames': []}", '{"frames": [1,]}', "[" * 100_000, "1" * 5000])
def test_invalid_json(tmp_path, content):
    path = tmp_path / "transforms.json"
    path.write_text(content)
    _assert_error(path, "JSON")


def test_missing_file_and_folder_named_like_file(tmp_path):
    _assert_error(tmp_path / "transforms.json", "not found")
    (tmp_path / "sub" / "transforms.json").mkdir(parents=True)
    _assert_error(tmp_path / "sub" / "transforms.json", "folder")


def test_blender_without_size_and_missing_image(tmp_path):
    meta = {"camera_angle_x": 0.7, "frames": [{"file_path": "./train/r_0", "transform_matrix": np.eye(4).tolist()}]}
    _assert_error(_write(tmp_path / "transforms.json", meta), "r_0")


def test_blender_without_size_and_corrupt_image(tmp_path):
    (tmp_path / "r_0.png").write_bytes(b"not a png")
    meta = {"camera_angle_x": 0.7, "frames": [{"file_path": "r_0", "transform_matrix": np.eye(4).tolist()}]}
    with pytest.raises(SemfieldError, match="r_0.png"):
        read_transforms(_write(tmp_path / "transforms.json", meta))


def test_missing_ground_truth_file(tmp_path):
    meta = _valid_meta(2)
    meta["semfield"] = {"ground_truth": "scene.json"}
    with pytest.raises(SemfieldError, match="scene.json"):
        read_transforms(_write(tmp_path / "transforms.json", meta))
    (tmp_path / "scene.json").write_text("[1, 2]")
    with pytest.raises(SemfieldError, match="scene.json"):
        read_transforms(tmp_path / "transforms.json")


def test_writer_refuses_bad_scene(tmp_path):
    with pytest.raises(SemfieldError):
        write_transforms(Scene(root=tmp_path, frames=[]), tmp_path / "transforms.json")
    bad = _scene(tmp_path, shared=True)
    bad.frames[0].c2w = np.full((4, 4), np.nan)
    with pytest.raises(SemfieldError):
        write_transforms(bad, tmp_path / "transforms.json")
    assert not (tmp_path / "transforms.json").exists()
    assert not list(tmp_path.glob(".transforms.json*"))  # nothing half-written


# ------------------------------------------------------------------------------------------- fuzzing

_counter = itertools.count()

json_scalars = st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=30,
)
_KEYS = ["frames", "file_path", "transform_matrix", "fl_x", "fl_y", "cx", "cy", "w", "h", "camera_model",
         "k1", "k3", "camera_angle_x", "depth_file_path", "mask_path", "instance_file_path",
         "train_filenames", "test_filenames", "depth_unit_scale_factor", "semfield", "aabb", "ground_truth"]
key_heavy_dicts = st.dictionaries(st.sampled_from(_KEYS), json_values, max_size=8)


def _read_or_semfield_error(tmp_path: Path, text: str) -> None:
    folder = tmp_path / f"ex{next(_counter)}"
    folder.mkdir()
    path = folder / "transforms.json"
    path.write_text(text, encoding="utf-8")
    try:
        scene = read_transforms(path)
    except SemfieldError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc), str(exc)
        return
    assert isinstance(scene, Scene) and scene.frames
    for f in scene.frames:
        assert np.all(np.isfinite(f.c2w)) and f.intrinsics.width >= 1 and f.intrinsics.fx > 0


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(json_values | key_heavy_dicts)
def test_fuzz_arbitrary_json(tmp_path, value):
    _read_or_semfield_error(tmp_path, json.dumps(value, allow_nan=True))


def _leaf_paths(obj, prefix=()):
    """Every key path in a nested dict / list (including inner nodes)."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaf_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaf_paths(v, (*prefix, i))


_VALID = _valid_meta(3)
_PATHS = [p for p in _leaf_paths(_VALID) if p]
_REPLACEMENTS = json_values | st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 1e308, -1e308, 10**400, 0, -1, "", [], {}, None, True, "NaN"]
)
mutation = st.tuples(st.sampled_from(["delete", "replace"]), st.sampled_from(_PATHS), _REPLACEMENTS)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(mutation, min_size=1, max_size=4))
def test_fuzz_mutated_valid_file(tmp_path, mutations):
    meta = copy.deepcopy(_VALID)
    for op, keys, value in mutations:
        target = meta
        try:
            for k in keys[:-1]:
                target = target[k]
            if op == "delete":
                del target[keys[-1]]
            else:
                target[keys[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or retyped the parent
    _read_or_semfield_error(tmp_path, json.dumps(meta, allow_nan=True))


def test_blender_first_image_name_too_long(tmp_path):
    meta = {"camera_angle_x": 0.7, "frames": [{"file_path": "r" * 300, "transform_matrix": np.eye(4).tolist()}]}
    _assert_error(_write(tmp_path / "transforms.json", meta), "first image")
