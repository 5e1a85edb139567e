"""The `semfield` command line, run as a user would (subprocesses): help, one-line errors, train / resume /
Ctrl-C, info, render. Scenes are the tiny analytic one (no MuJoCo); training is a handful of iterations."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from analytic_scene import make_analytic_scene

TINY = ["--set", "batch_rays=256", "--set", "field.focus_vertices=20000",
        "--set", "eval_render.max_samples=64", "--no-progress"]
# One intra-op thread: with a busy machine, OpenMP spin-waiting makes tiny tensors ops very slow.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def cli(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "semfield.cli", *map(str, args)], check=False,
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def assert_one_line_error(res: subprocess.CompletedProcess, name: str) -> None:
    """Exit 2, exactly one line on stderr that names ``name``, no traceback."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("semfield: error: "), lines[0]
    assert name in lines[0], (name, lines[0])
    assert "Traceback" not in res.stderr + res.stdout


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return make_analytic_scene(tmp_path_factory.mktemp("scene"), n_train=6, n_test=2, size=24).parent


@pytest.fixture(scope="module")
def run(scene, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    res = cli("train", scene, "--out", run_dir, "--iterations", 5, *TINY)
    assert res.returncode == 0, res.stderr
    return run_dir


def _checkpoint_iteration(run_dir: Path) -> int:
    return json.loads((run_dir / "checkpoint.json").read_text())["iteration"]


# ----- help ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["", "make-scene", "train", "render", "info", "demo", "query", "segment",
                                  "export", "eval", "bench", "locate", "panoptic"])
def test_help_shows_an_example(verb):
    res = cli(*([verb] if verb else []), "--help")
    assert res.returncode == 0, res.stderr
    assert "EXAMPLES" in res.stdout and f"semfield {verb}".strip() in res.stdout


# ----- bad scenes: one line naming the file, nothing written --------------------------------------------
def _edit_transforms(folder: Path, edit) -> None:
    path = folder / "transforms.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))  # json.dumps writes NaN as NaN, which readers accept as JSON


def _break(case: str, folder: Path) -> str:
    """Break a copy of the scene; returns the file name the error must mention."""
    if case == "missing":
        shutil.rmtree(folder)
        return folder.name
    if case == "corrupt image":
        (folder / "images/frame_003.png").write_bytes(b"\x89PNG garbage" * 20)
        return "frame_003.png"
    if case == "invalid json":
        (folder / "transforms.json").write_text('{"frames": [')
        return "transforms.json"
    if case == "nan pose":
        _edit_transforms(folder, lambda m: m["frames"][2]["transform_matrix"][0].__setitem__(3, math.nan))
        return "transforms.json"
    if case == "unknown camera model":
        _edit_transforms(folder, lambda m: m.__setitem__("camera_model", "FISHEYE624"))
        return "transforms.json"
    if case == "image size mismatch":
        _edit_transforms(folder, lambda m: m.update(w=30, h=20))
        return "frame_000.png"
    if case == "empty scene":
        _edit_transforms(folder, lambda m: m.__setitem__("frames", []))
        return "transforms.json"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing", "corrupt image", "invalid json", "nan pose", "unknown camera model",
                                  "image size mismatch", "empty scene"])
def test_train_rejects_bad_scene(case, scene, tmp_path):
    broken = tmp_path / "scene"
    shutil.copytree(scene, broken)
    name = _break(case, broken)
    out = tmp_path / "run"
    res = cli("train", broken, "--out", out, "--iterations", 2, *TINY)
    assert_one_line_error(res, name)
    assert not out.exists()


def test_train_rejects_unwritable_output(scene, tmp_path):
    blocker = tmp_path / "not_a_folder.txt"
    blocker.write_text("x")
    res = cli("train", scene, "--out", blocker / "run", "--iterations", 2, *TINY)
    assert_one_line_error(res, "not_a_folder.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder.txt"]


@pytest.mark.parametrize("setting, word", [("field.no_such_thing=1", "field.no_such_thing"),
                                           ("nope=2", "nope"), ("render.step_voxels=\"many\"", "render.step_voxels")])
def test_train_rejects_bad_setting(setting, word, scene, tmp_path):
    res = cli("train", scene, "--out", tmp_path / "run", "--set", setting, "--no-progress")
    assert_one_line_error(res, word)
    assert not (tmp_path / "run").exists()


def test_train_rejects_unreadable_config_file(scene, tmp_path):
    bad = tmp_path / "settings.json"
    bad.write_text("{not json")
    res = cli("train", scene, "--out", tmp_path / "run", "--config", bad)
    assert_one_line_error(res, "settings.json")
    assert not (tmp_path / "run").exists()


# ----- runs: missing, corrupt ----------------------------------------------------------------------------
def test_queries_on_a_run_without_feature_heads_say_so(run, tmp_path):
    res = cli("query", run, "red mug", "--out", tmp_path / "q")
    assert_one_line_error(res, "no feature heads")
    assert not (tmp_path / "q").exists()
    res = cli("query", run, "--out", tmp_path / "q")
    assert res.returncode == 2 and "exactly one of PHRASES" in res.stderr


def test_render_and_info_of_missing_run(tmp_path):
    for args in (["render", tmp_path / "no_run", "--view", "test:0", "--out", tmp_path / "r"],
                 ["info", tmp_path / "no_run"]):
        assert_one_line_error(cli(*args), "no_run")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("file", ["checkpoint.safetensors", "checkpoint.json"])
def test_corrupt_checkpoint(file, run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(run, broken)
    (broken / file).write_bytes(b"\x00garbage{" * 50)
    assert_one_line_error(cli("info", broken), file)
    res = cli("render", broken, "--view", "test:0", "--out", tmp_path / "r")
    assert_one_line_error(res, file)
    assert not (tmp_path / "r").exists()


def test_render_rejects_bad_pose_files(run, tmp_path):
    eye = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]]
    cases = {"nan.json": json.dumps({"transform_matrix": [[math.nan, 0, 0, 0], *eye[1:]]}),
             "singular.json": json.dumps({"transform_matrix": [[0, 0, 0, 0], *eye[1:]]}),
             "garbage.json": "{", "no_matrix.json": json.dumps({"fl_x": 10})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert_one_line_error(cli("render", run, "--pose", tmp_path / name, "--out", tmp_path / "r"), name)
    assert not (tmp_path / "r").exists()


def test_train_refuses_run_with_other_settings(scene, run):
    res = cli("train", scene, "--out", run, "--iterations", 5, *TINY, "--seed", 7)
    assert_one_line_error(res, "different settings (seed)")


# ----- the happy path ------------------------------------------------------------------------------------
def test_train_info_render_and_resume(scene, run, tmp_path):
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["iterations"] == 5 and _checkpoint_iteration(run) == 5
    for key in ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_rmse_test", "train_seconds", "peak_rss_mb"):
        assert isinstance(metrics[key], float), key
    assert metrics["depth_abs_rel_fg_test"] is None  # the analytic scene has no semantic ground truth
    assert len(metrics["per_view"]) == 2 and metrics["machine"]["cores"] >= 1
    assert {"config.json", "checkpoint.safetensors", "test_00_rgb.png", "test_01_depth.png",
            "test_views.png"} <= {p.name for p in run.iterdir()}
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary files left
    from safetensors import safe_open

    with safe_open(str(run / "checkpoint.safetensors"), "pt") as f:  # a finished run keeps no Adam moments
        keys = set(f.keys())
    assert "grid.density.values" in keys and not [k for k in keys if k.endswith(".adam")]

    info = cli("info", run)
    assert info.returncode == 0 and "5 of 5" in info.stdout and "PSNR" in info.stdout, info.stderr
    # the analytic scene's transforms.json sets semfield.aabb (an outer box); the focus box is found
    assert "(set by the user)" in info.stdout and "(found from the images)" in info.stdout, info.stdout
    assert "bounds.json" in {p.name for p in run.iterdir()}

    res = cli("render", run, "--view", "test:0", "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    assert {p.name for p in (tmp_path / "r").iterdir()} == {"test_00_rgb.png", "test_00_depth_mm.png",
                                                            "test_00_depth.png"}
    pose = json.loads((scene / "transforms.json").read_text())["frames"][0]
    (tmp_path / "cam.json").write_text(json.dumps({"transform_matrix": pose["transform_matrix"], "fl_x": 20,
                                                    "w": 40, "h": 30}))
    res = cli("render", run, "--pose", tmp_path / "cam.json", "--out", tmp_path / "r", "--width", 20)
    assert res.returncode == 0, res.stderr
    from PIL import Image

    assert Image.open(tmp_path / "r/cam_rgb.png").size == (20, 15)

    # the same command again: nothing to train, the checkpoint's clock is untouched
    res = cli("train", scene, "--out", run, "--iterations", 5, *TINY)
    assert res.returncode == 0, res.stderr
    again = json.loads((run / "metrics.json").read_text())
    assert again["iterations"] == 5 and again["resumed_from_iteration"] == 5
    assert again["train_seconds"] == pytest.approx(metrics["train_seconds"], abs=0.05)
    # more iterations continue from the checkpoint
    res = cli("train", scene, "--out", run, "--iterations", 8, *TINY)
    assert res.returncode == 0, res.stderr
    more = json.loads((run / "metrics.json").read_text())
    assert more["iterations"] == 8 and more["resumed_from_iteration"] == 5 and _checkpoint_iteration(run) == 8


def test_ctrl_c_saves_and_resumes(scene, tmp_path):
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "semfield.cli", "train", str(scene), "--out", str(run_dir), "--iterations",
            "150", *TINY, "--set", "checkpoint_every=2"]
    # A shell starting pytest in the background ignores SIGINT and a child inherits "ignored" (a handler
    # is reset to the default on exec): give this process a handler while the child starts.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 60
    while not (run_dir / "checkpoint.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    saved = _checkpoint_iteration(run_dir)
    assert 2 <= saved < 150
    from safetensors import safe_open

    with safe_open(str(run_dir / "checkpoint.safetensors"), "pt") as f:  # an unfinished run keeps them
        assert "grid.density.adam" in set(f.keys())
    assert err.strip().splitlines()[-1] == (f"interrupted at iteration {saved}: checkpoint saved in {run_dir}; "
                                            "run the same command to resume")
    assert "Traceback" not in err
    res = subprocess.run(args, check=False, capture_output=True, text=True, env=ENV, timeout=120)
    assert res.returncode == 0, res.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from_iteration"] == saved and metrics["iterations"] == 150
