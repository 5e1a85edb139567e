"""COLMAP sparse models, text and binary: round trips, camera models, corrupt files, the pose convention."""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

from semfield.errors import SemfieldError
from semfield.scene.colmap import read_colmap, read_colmap_points, write_colmap_text
from semfield.scene.convention import c2w_to_colmap, look_at
from semfield.scene.load import load_scene
from semfield.scene.types import Frame, Intrinsics, Scene

MODEL_IDS = {"SIMPLE_PINHOLE": 0, "PINHOLE": 1, "SIMPLE_RADIAL": 2, "RADIAL": 3, "OPENCV": 4,
             "OPENCV_FISHEYE": 5, "FULL_OPENCV": 6}


# ------------------------------------------------------------------------------------------- fixtures


def _scene(images_dir: Path, n: int = 9) -> Scene:
    """Cameras on a circle looking at the origin; two different intrinsics."""
    k_a = Intrinsics(64, 48, 60.0, 61.0, 32.5, 23.5)
    k_b = Intrinsics(80, 60, 70.0, 70.0, 40.0, 30.0, "OPENCV", (0.01, -0.02, 0.001, 0.002))
    frames = []
    for i, a in enumerate(np.linspace(0, 2 * math.pi, n, endpoint=False)):
        c2w = look_at([4 * math.cos(a), 4 * math.sin(a), 1.5 + 0.2 * math.sin(3 * a)], [0.1, -0.1, 0.3])
        name = f"img_{i:03d}.jpg"
        frames.append(Frame(name=name, image_path=images_dir / name, c2w=c2w, intrinsics=k_a if i % 2 else k_b))
    return Scene(root=images_dir, frames=frames)


def _points(n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.uniform(-0.5, 0.5, (n, 3)), rng.integers(0, 256, (n, 3)).astype(np.uint8)


def _project(k: Intrinsics, c2w: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, float]:
    x = np.linalg.inv(c2w) @ np.append(X, 1.0)
    return (k.K @ x[:3])[:2] / x[2], x[2]


def _camera_params(k: Intrinsics) -> tuple[str, list[float]]:
    if k.model == "PINHOLE":
        return "PINHOLE", [k.fx, k.fy, k.cx, k.cy]
    return "OPENCV", [k.fx, k.fy, k.cx, k.cy, *k.distortion]


def write_colmap_binary(scene: Scene, sparse_dir: Path, points=None, cameras=None) -> None:
    """A tiny COLMAP binary writer (tests only). ``cameras``: optional raw ``[(model_name, w, h, params)]``.

    Each image's 2D points are the projections of the 3D points in front of it and inside the image.
    """
    sparse_dir.mkdir(parents=True, exist_ok=True)
    cam_ids: dict[Intrinsics, int] = {}
    for f in scene.frames:
        cam_ids.setdefault(f.intrinsics, len(cam_ids) + 1)
    raw = cameras or [(*_camera_params(k), k.width, k.height) for k in cam_ids]
    data = struct.pack("<Q", len(raw))
    for cam_id, (model, params, w, h) in enumerate(raw, start=1):
        data += struct.pack("<iiQQ", cam_id, MODEL_IDS[model], w, h) + struct.pack(f"<{len(params)}d", *params)
    (sparse_dir / "cameras.bin").write_bytes(data)

    xyz, rgb = points if points is not None else (np.zeros((0, 3)), np.zeros((0, 3), np.uint8))
    tracks: list[list[tuple[int, int]]] = [[] for _ in xyz]
    data = struct.pack("<Q", len(scene.frames))
    for image_id, f in enumerate(scene.frames, start=1):
        qvec, tvec = c2w_to_colmap(f.c2w)
        obs = []
        for pid, X in enumerate(xyz):
            uv, z = _project(f.intrinsics, f.c2w, X)
            if z > 0 and 0 <= uv[0] < f.intrinsics.width and 0 <= uv[1] < f.intrinsics.height:
                tracks[pid].append((image_id, len(obs)))
                obs.append((uv[0], uv[1], pid + 1))
        data += struct.pack("<i4d3di", image_id, *qvec, *tvec, cam_ids.get(f.intrinsics, 1))
        data += f.name.encode() + b"\x00" + struct.pack("<Q", len(obs))
        data += b"".join(struct.pack("<ddq", *o) for o in obs)
    (sparse_dir / "images.bin").write_bytes(data)

    data = struct.pack("<Q", len(xyz))
    for pid, (X, c) in enumerate(zip(xyz, rgb), start=1):
        data += struct.pack("<Q3d3BdQ", pid, *X, *map(int, c), 0.5, len(tracks[pid - 1]))
        data += b"".join(struct.pack("<ii", *t) for t in tracks[pid - 1])
    (sparse_dir / "points3D.bin").write_bytes(data)


def _assert_same_scene(a: Scene, b: Scene) -> None:
    assert [f.name for f in b.frames] == sorted(f.name for f in a.frames)
    by_name = {f.name: f for f in a.frames}
    for f in b.frames:
        ref = by_name[f.name]
        np.testing.assert_allclose(f.c2w, ref.c2w, atol=1e-9)
        assert f.intrinsics == ref.intrinsics
        assert f.image_path == ref.image_path


# ------------------------------------------------------------------------------------------- round trips


def test_text_round_trip(tmp_path):
    scene = _scene(tmp_path / "images")
    xyz, rgb = _points()
    write_colmap_text(scene, tmp_path / "sparse" / "0", points=(xyz, rgb))
    back = read_colmap(tmp_path / "sparse" / "0", tmp_path / "images")
    _assert_same_scene(scene, back)
    assert [f.split for f in back.frames] == ["test"] + ["train"] * 7 + ["test"]
    assert back.source == tmp_path / "sparse" / "0" / "images.txt"
    pxyz, prgb = read_colmap_points(tmp_path / "sparse" / "0")
    np.testing.assert_array_equal(pxyz, xyz)
    np.testing.assert_array_equal(prgb, rgb)


def test_binary_round_trip(tmp_path):
    scene = _scene(tmp_path / "images")
    xyz, rgb = _points()
    write_colmap_binary(scene, tmp_path / "sparse", (xyz, rgb))
    back = read_colmap(tmp_path / "sparse", tmp_path / "images")
    _assert_same_scene(scene, back)
    pxyz, prgb = read_colmap_points(tmp_path / "sparse")
    np.testing.assert_array_equal(pxyz, xyz)
    np.testing.assert_array_equal(prgb, rgb)


def test_binary_and_text_agree(tmp_path):
    scene = _scene(tmp_path / "images", n=4)
    write_colmap_binary(scene, tmp_path / "bin")
    write_colmap_text(read_colmap(tmp_path / "bin", tmp_path / "images"), tmp_path / "txt")
    _assert_same_scene(read_colmap(tmp_path / "bin", tmp_path / "images"),
                       read_colmap(tmp_path / "txt", tmp_path / "images"))


def test_no_points_file(tmp_path):
    scene = _scene(tmp_path / "images", n=2)
    write_colmap_text(scene, tmp_path / "sparse")
    (tmp_path / "sparse" / "points3D.txt").unlink()
    xyz, rgb = read_colmap_points(tmp_path / "sparse")
    assert xyz.shape == (0, 3) and rgb.shape == (0, 3)
    assert len(read_colmap(tmp_path / "sparse", tmp_path / "images").frames) == 2


# ------------------------------------------------------------------------------------------- camera models

CAMERA_CASES = {
    "SIMPLE_PINHOLE": ([50.0, 32.0, 24.0], Intrinsics(64, 48, 50.0, 50.0, 32.0, 24.0)),
    "PINHOLE": ([50.0, 52.0, 31.5, 24.5], Intrinsics(64, 48, 50.0, 52.0, 31.5, 24.5)),
    "SIMPLE_RADIAL": ([50.0, 32.0, 24.0, 0.1],
                      Intrinsics(64, 48, 50.0, 50.0, 32.0, 24.0, "OPENCV", (0.1, 0.0, 0.0, 0.0))),
    "RADIAL": ([50.0, 32.0, 24.0, 0.1, -0.05],
               Intrinsics(64, 48, 50.0, 50.0, 32.0, 24.0, "OPENCV", (0.1, -0.05, 0.0, 0.0))),
    "OPENCV": ([50.0, 51.0, 32.0, 24.0, 0.1, -0.05, 0.001, -0.002],
               Intrinsics(64, 48, 50.0, 51.0, 32.0, 24.0, "OPENCV", (0.1, -0.05, 0.001, -0.002))),
}


def _one_image_text(sparse: Path, camera_line: str) -> None:
    sparse.mkdir(parents=True, exist_ok=True)
    (sparse / "cameras.txt").write_text("# comment\n" + camera_line + "\n")
    (sparse / "images.txt").write_text("# comment\n1 1 0 0 0 0 0 4 1 a.png\n\n")


@pytest.mark.parametrize("model", sorted(CAMERA_CASES))
@pytest.mark.parametrize("fmt", ["text", "binary"])
def test_camera_models(tmp_path, model, fmt):
    params, expected = CAMERA_CASES[model]
    sparse = tmp_path / "sparse"
    if fmt == "text":
        _one_image_text(sparse, f"1 {model} 64 48 " + " ".join(map(repr, params)))
    else:
        frame = Frame("a.png", tmp_path / "a.png", look_at([0, -4, 0], [0, 0, 0]), expected)
        write_colmap_binary(Scene(tmp_path, [frame]), sparse, cameras=[(model, params, 64, 48)])
    assert read_colmap(sparse, tmp_path).frames[0].intrinsics == expected


@pytest.mark.parametrize("fmt", ["text", "binary"])
@pytest.mark.parametrize("model", ["OPENCV_FISHEYE", "FULL_OPENCV"])
def test_unsupported_camera_model(tmp_path, fmt, model):
    sparse = tmp_path / "sparse"
    n = {"OPENCV_FISHEYE": 8, "FULL_OPENCV": 12}[model]
    params = [50.0, 50.0, 32.0, 24.0] + [0.0] * (n - 4)
    if fmt == "text":
        _one_image_text(sparse, f"1 {model} 64 48 " + " ".join(map(str, params)))
    else:
        frame = Frame("a.png", tmp_path / "a.png", np.eye(4), Intrinsics(64, 48, 50, 50, 32, 24))
        write_colmap_binary(Scene(tmp_path, [frame]), sparse, cameras=[(model, params, 64, 48)])
    with pytest.raises(SemfieldError, match=model) as info:
        read_colmap(sparse, tmp_path)
    assert "cameras." in str(info.value)


def test_unknown_binary_model_id(tmp_path):
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "cameras.bin").write_bytes(struct.pack("<QiiQQ3d", 1, 1, 99, 64, 48, 50.0, 32.0, 24.0))
    (sparse / "images.bin").write_bytes(struct.pack("<Q", 0))
    with pytest.raises(SemfieldError, match="99") as info:
        read_colmap(sparse, tmp_path)
    assert str(sparse / "cameras.bin") in str(info.value)


# ------------------------------------------------------------------------------------------- corrupt files


@pytest.mark.parametrize("stem", ["cameras", "images", "points3D"])
def test_truncated_binary(tmp_path, stem):
    scene = _scene(tmp_path / "images", n=3)
    write_colmap_binary(scene, tmp_path / "sparse", _points(5))
    path = tmp_path / "sparse" / f"{stem}.bin"
    data = path.read_bytes()
    for cut in sorted({0, 3, 8, 9, len(data) // 2, len(data) - 1}):
        path.write_bytes(data[:cut])
        with pytest.raises(SemfieldError) as info:
            read_colmap(tmp_path / "sparse", tmp_path / "images")
            read_colmap_points(tmp_path / "sparse")
        assert str(path) in str(info.value) and "\n" not in str(info.value)
    path.write_bytes(data + b"\x00\x01")  # trailing garbage
    with pytest.raises(SemfieldError, match="unexpected bytes"):
        read_colmap(tmp_path / "sparse", tmp_path / "images")
        read_colmap_points(tmp_path / "sparse")


def test_binary_huge_count(tmp_path):
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    (sparse / "cameras.bin").write_bytes(struct.pack("<Q", 2**62) + b"\x00" * 40)
    (sparse / "images.bin").write_bytes(struct.pack("<Q", 0))
    with pytest.raises(SemfieldError, match="does not fit"):
        read_colmap(sparse, tmp_path)


CAM = "1 PINHOLE 64 48 50 50 32 24"
TEXT_CASES = {
    "bad_number": (CAM, "1 1 0 0 zero 0 0 4 1 a.png\n\n", "images.txt", "expected numbers"),
    "nan_quaternion": (CAM, "1 nan 0 0 0 0 0 4 1 a.png\n\n", "images.txt", "NaN"),
    "zero_quaternion": (CAM, "1 0 0 0 0 0 0 4 1 a.png\n\n", "images.txt", "quaternion"),
    "short_image_line": (CAM, "1 1 0 0 0 0 0 4\n\n", "images.txt", "IMAGE_ID"),
    "unknown_camera": (CAM, "1 1 0 0 0 0 0 4 7 a.png\n\n", "images.txt", "camera 7"),
    "duplicate_image_id": (CAM, "1 1 0 0 0 0 0 4 1 a.png\n\n1 1 0 0 0 0 0 4 1 b.png\n\n", "images.txt", "twice"),
    "duplicate_name": (CAM, "1 1 0 0 0 0 0 4 1 a.png\n\n2 1 0 0 0 0 0 4 1 a.png\n\n", "images.txt", "twice"),
    "no_images": (CAM, "# nothing\n", "images.txt", "no images"),
    "duplicate_camera": (CAM + "\n" + CAM, "1 1 0 0 0 0 0 4 1 a.png\n\n", "cameras.txt", "twice"),
    "wrong_param_count": ("1 PINHOLE 64 48 50 50 32", "1 1 0 0 0 0 0 4 1 a.png\n\n", "cameras.txt", "parameters"),
    "negative_size": ("1 PINHOLE -64 48 50 50 32 24", "1 1 0 0 0 0 0 4 1 a.png\n\n", "cameras.txt", "size"),
    "zero_focal": ("1 PINHOLE 64 48 0 50 32 24", "1 1 0 0 0 0 0 4 1 a.png\n\n", "cameras.txt", "focal"),
    "inf_param": ("1 PINHOLE 64 48 inf 50 32 24", "1 1 0 0 0 0 0 4 1 a.png\n\n", "cameras.txt", "NaN"),
    "float_width": ("1 PINHOLE 64.5 48 50 50 32 24", "1 1 0 0 0 0 0 4 1 a.png\n\n", "cameras.txt", "integer"),
    "short_camera_line": ("1 PINHOLE 64", "1 1 0 0 0 0 0 4 1 a.png\n\n", "cameras.txt", "CAMERA_ID"),
}


@pytest.mark.parametrize("case", sorted(TEXT_CASES))
def test_malformed_text(tmp_path, case):
    cameras, images, bad_file, match = TEXT_CASES[case]
    (tmp_path / "cameras.txt").write_text(cameras + "\n")
    (tmp_path / "images.txt").write_text(images)
    with pytest.raises(SemfieldError, match=match) as info:
        read_colmap(tmp_path, tmp_path)
    assert str(tmp_path / bad_file) in str(info.value) and "\n" not in str(info.value)


def test_text_not_utf8_and_missing_files(tmp_path):
    (tmp_path / "cameras.txt").write_bytes(b"\xff\xfe\x00\x01")
    (tmp_path / "images.txt").write_text("")
    with pytest.raises(SemfieldError, match="UTF-8"):
        read_colmap(tmp_path, tmp_path)
    (tmp_path / "cameras.txt").unlink()
    with pytest.raises(SemfieldError, match="cameras.bin or cameras.txt"):
        read_colmap(tmp_path, tmp_path)
    with pytest.raises(SemfieldError, match="not found"):
        read_colmap(tmp_path / "nope", tmp_path)


def test_malformed_points_text(tmp_path):
    (tmp_path / "points3D.txt").write_text("1 0 0 0 255 0 300 0.1\n")
    with pytest.raises(SemfieldError, match="colour"):
        read_colmap_points(tmp_path)
    (tmp_path / "points3D.txt").write_text("1 0 0 0 255 0 0 0.1 1\n")
    with pytest.raises(SemfieldError, match="POINT3D_ID"):
        read_colmap_points(tmp_path)


# ------------------------------------------------------------------------------------------- convention


def test_hand_worked_colmap_pose(tmp_path):
    """A COLMAP world-to-camera pose (90° about y, t = (0, 0, 4)) worked out by hand.

    x_cam = R X + t with R = [[0,0,1],[0,1,0],[-1,0,0]]: X = (-1, 0, 0) → (0, 0, 5) (principal point);
    X = (-1, 0.5, 0) → (0, 0.5, 5) (below the centre); X = (-1, 0, 1) → (1, 0, 5) (right of the centre).
    """
    c = math.cos(math.pi / 4)
    (tmp_path / "cameras.txt").write_text("1 PINHOLE 100 80 100 100 50 40\n")
    (tmp_path / "images.txt").write_text(f"1 {c!r} 0 {c!r} 0 0 0 4 1 my image.png\n\n")
    scene = read_colmap(tmp_path, tmp_path / "images")
    f = scene.frames[0]
    assert f.name == "my image.png" and f.image_path == tmp_path / "images" / "my image.png"
    for X, uv in [((-1, 0, 0), (50, 40)), ((-1, 0.5, 0), (50, 50)), ((-1, 0, 1), (70, 40))]:
        got, z = _project(f.intrinsics, f.c2w, np.array(X, dtype=float))
        assert z == pytest.approx(5.0)
        np.testing.assert_allclose(got, uv, atol=1e-9)
    np.testing.assert_allclose(f.c2w[:3, 3], [4, 0, 0], atol=1e-12)  # camera centre -R^T t


def test_observed_points_project_into_their_images(tmp_path):
    scene = _scene(tmp_path / "images")
    xyz, rgb = _points(30)
    write_colmap_binary(scene, tmp_path / "sparse", (xyz, rgb))
    back = read_colmap(tmp_path / "sparse", tmp_path / "images")
    pxyz, _ = read_colmap_points(tmp_path / "sparse")
    seen = 0
    for f in back.frames:
        for X in pxyz:
            uv, z = _project(f.intrinsics, f.c2w, X)
            assert z > 0  # every point near the origin is in front of every camera looking at it
            if 0 <= uv[0] < f.intrinsics.width and 0 <= uv[1] < f.intrinsics.height:
                seen += 1
    assert seen > 0.8 * len(back.frames) * len(pxyz)  # the target region fills the middle of each image
    # the centre of attention projects near the image centre of every camera
    for f in back.frames:
        uv, _ = _project(f.intrinsics, f.c2w, np.array([0.1, -0.1, 0.3]))
        np.testing.assert_allclose(uv, [f.intrinsics.cx, f.intrinsics.cy], atol=1e-6)


# ------------------------------------------------------------------------------------------- load_scene


def test_load_scene_colmap_layouts(tmp_path):
    scene = _scene(tmp_path / "images", n=3)
    (tmp_path / "images").mkdir()
    write_colmap_binary(scene, tmp_path / "sparse" / "0")
    for target in (tmp_path, tmp_path / "sparse" / "0"):
        loaded = load_scene(target)
        assert loaded.root == tmp_path / "images" and len(loaded.frames) == 3
    bare = tmp_path / "export"
    write_colmap_text(scene, bare)
    (bare / "images").mkdir()
    assert load_scene(bare).root == bare / "images"


def test_load_scene_colmap_without_images(tmp_path):
    write_colmap_text(_scene(tmp_path / "images", n=2), tmp_path / "sparse" / "0")
    with pytest.raises(SemfieldError, match="no images folder"):
        load_scene(tmp_path)
