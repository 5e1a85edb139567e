"""The evaluation harness's own logic: query sets from the vocabulary, flat summaries, reports, errors.
(The metric maths is tested in the eval tests; the whole chain runs in test_bench_suite_smoke.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from analytic_scene import make_analytic_scene

from semfield.errors import SemfieldError
from semfield.harness.ground_truth import exemplar_pixel, label_set, text_queries, view_boxes
from semfield.harness.localization import accuracies
from semfield.harness.report import FIGURES, render_report
from semfield.harness.summary import SUMMARY_KEYS, mean_summary, summary_of
from semfield.scene.types import Frame, Intrinsics

GT = {
    "classes": ["unlabelled", "floor", "red mug", "blue mug", "ketchup bottle"],
    "objects": [
        {"id": 1, "name": "red mug", "synonyms": ["red cup", "crimson mug"], "category": "mug"},
        {"id": 2, "name": "blue mug", "synonyms": ["blue cup"], "category": "mug"},
        {"id": 3, "name": "ketchup bottle", "synonyms": [], "category": "bottle"},
    ],
    "views": {"a": {"boxes": {"1": [0, 0, 4, 4], "3": [10, 10, 30, 20]}}, "b": {"boxes": {"1": [0, 0, 10, 10]}}},
}


def _frame(name: str) -> Frame:
    return Frame(name=name, image_path=f"{name}.png", c2w=np.eye(4),
                 intrinsics=Intrinsics(width=32, height=32, fx=30, fy=30, cx=16, cy=16))


def test_query_sets_come_from_the_vocabulary():
    qs = text_queries(GT)
    assert [(q["phrase"], q["kind"], q["objects"]) for q in qs] == [
        ("red mug", "name", [1]), ("red cup", "synonym", [1]), ("crimson mug", "synonym", [1]),
        ("blue mug", "name", [2]), ("blue cup", "synonym", [2]), ("ketchup bottle", "name", [3]),
        ("mug", "category", [1, 2]), ("bottle", "category", [3])]


def test_boxes_exemplars_and_labels():
    np.testing.assert_array_equal(view_boxes(GT, "a", [1, 2, 3]), [[0, 0, 4, 4], [10, 10, 30, 20]])
    assert view_boxes(GT, "nowhere", [1]).shape == (0, 4)
    frame, x, y = exemplar_pixel(GT, [_frame("a"), _frame("b")], 1)  # the larger box (10 x 10 in b)
    assert (frame.name, x, y) == ("b", 5.0, 5.0)
    assert exemplar_pixel(GT, [_frame("b")], 3) is None
    labels, lut = label_set(GT)
    assert labels == ["floor", "red mug", "blue mug", "ketchup bottle"] and lut.tolist() == [-1, 0, 1, 2, 3]


def test_accuracies_count_view_query_pairs_in_2d_and_queries_in_3d():
    records = [{"hit3d": True, "hit3d_2cm": True, "box_iou": 0.5, "views": 3, "hits_lerf": 2, "hits_langsplat": 3},
               {"hit3d": False, "hit3d_2cm": True, "box_iou": 0.1, "views": 1, "hits_lerf": 0, "hits_langsplat": 0}]
    acc = accuracies(records)
    assert acc["loc3d"] == 0.5 and acc["loc3d_2cm"] == 1.0 and acc["box_iou"] == pytest.approx(0.3)
    assert acc["loc2d_lerf"] == 0.5 and acc["loc2d_langsplat"] == 0.75 and acc["n_view_queries"] == 4
    assert accuracies([])["loc2d_lerf"] is None


def _report() -> dict:
    acc = {"name": {"loc2d_lerf": 0.5, "loc3d": 0.25, "loc2d_langsplat": 0.6},
           "synonym": {"loc2d_lerf": 0.4, "loc3d": 0.2}, "category": {"loc2d_lerf": None, "loc3d": None}}
    return {"results": {
        "render": {"psnr_test": 25.0, "ssim_test": 0.8, "depth_abs_rel_test": 0.1, "depth_abs_rel_fg_test": 0.05,
                   "train_seconds": 100, "peak_rss_mb": 3000.0},
        "features": {"label": {"cosine": 0.3, "cosine_centred": 0.5, "geometric_fidelity": 0.7},
                     "label:noise_free": {"cosine": 0.95, "cosine_centred": 0.9, "geometric_fidelity": 0.7},
                     "dinov2": {"cosine": 0.8, "cosine_centred": 0.6, "geometric_fidelity": 0.4}},
        "localization": {"text": {"accuracy": acc}, "exemplar": {"dinov2": {"accuracy": {"loc2d_lerf": 0.3,
                                                                                          "loc3d": 0.1}}}},
        "segmentation": {"field": {"miou": 0.3}, "teacher_gt_nearest": {"miou": 0.6},
                         "teacher_gt_bilinear": {"miou": 0.62}},
        "points3d": {"field": {"miou": 0.25}, "fusion_gtdepth": {"miou": 0.64}, "fusion_fielddepth": None},
        "latency": {"text_query_ms": 20.0, "exemplar_query_ms": 30.0, "new_view_relevancy_ms": 900.0}}}


def test_summary_is_flat_has_every_key_and_none_where_unknown():
    s = summary_of(_report())
    assert set(SUMMARY_KEYS) <= set(s)
    assert s["psnr_test"] == 25.0 and s["train_seconds"] == 100.0 and s["peak_rss_mb"] == 3000.0
    assert s["feature_cos_teacher"] == pytest.approx(0.55)  # mean over heads, variants left out
    assert s["feature_cos_teacher_label_noise_free"] == 0.95 and s["geometric_fidelity_dinov2"] == 0.4
    assert (s["loc_acc_names"], s["loc_acc_paraphrases"], s["loc_acc_categories"]) == (0.5, 0.4, None)
    assert s["loc_acc_names_langsplat"] == 0.6 and s["loc3d_acc_names"] == 0.25
    assert s["loc_acc_exemplar_dino"] == 0.3 and s["loc3d_acc_exemplar_dino"] == 0.1
    assert (s["miou_2d_field"], s["miou_2d_teacher_gt"], s["miou_2d_teacher_gt_bilinear"]) == (0.3, 0.6, 0.62)
    assert (s["miou_3d_field"], s["miou_3d_fusion_gtdepth"], s["miou_3d_fusion_fielddepth"]) == (0.25, 0.64, None)
    assert s["pq_scene"] is None and s["pose_success_5deg_5cm"] is None  # no panoptic / pose results
    assert s["query_latency_ms"] == 20.0 and s["new_view_latency_ms"] == 900.0
    assert summary_of({"results": {}}) == dict.fromkeys(SUMMARY_KEYS) | {"feature_cos_teacher": None}


def test_mean_summary_skips_missing_values():
    m = mean_summary([{"a": 1.0, "b": None, "c": 2.0}, {"a": 3.0, "b": None}, {"a": float("nan")}])
    assert m == {"a": 2.0, "b": None, "c": 2.0}


def test_report_lists_every_figure_and_command():
    summary = summary_of(_report())
    result = {"suite": "quick", "description": "three scenes", "command": "semfield bench --suite quick",
              "started": "now", "wall_seconds": 600.0, "summary": summary,
              "machine": {"cpu": "cpu", "cores": 2, "torch": "2.x", "gpu": None},
              "scenes": [{"scene": "default-0", "summary": summary, "skipped": {"pose": "not built"},
                          "steps": {"train": {"command": "semfield train x", "wall_seconds": 10.0,
                                              "peak_rss_mb": 100.0}},
                          "eval_seconds": {"localization": 12.34, "pose": 5.0}}]}
    md = render_report(result)
    assert "Training boxes: ground truth" in md  # a bench.json from before the boxes came from the data
    assert "Training boxes: found from the images." in render_report({**result, "bounds": "found from the images"})
    assert set(FIGURES) == set(SUMMARY_KEYS)
    for key in SUMMARY_KEYS:
        assert f"`{key}`" in md
    assert "| held-out PSNR (dB) (`psnr_test`) | 25.00 | 25.00 |" in md
    assert "`semfield train x`" in md and "- pose: not built" in md and "simulated teacher" in md
    assert "| localization | 12.3 |" in md and "| pose | 5.0 |" in md  # eval time per task


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "semfield.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_eval_without_ground_truth_or_with_unknown_task_is_one_clear_line(tmp_path):
    scene = make_analytic_scene(tmp_path / "scene", n_train=4, n_test=1, size=16).parent
    res = _cli("train", scene, "--out", tmp_path / "run", "--iterations", 2, "--set", "batch_rays=128",
               "--set", "field.focus_vertices=8000", "--set", "eval_render.max_samples=32", "--no-progress")
    assert res.returncode == 0, res.stderr
    for args, words in ((["--tasks", "render,nope"], "unknown eval task(s) nope"),
                        ([], "no ground truth")):
        res = _cli("eval", tmp_path / "run", *args)
        assert res.returncode == 2 and words in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (tmp_path / "run" / "eval.json").exists()
    with pytest.raises(SemfieldError, match="unknown suite"):
        from semfield.harness.suites import get_suite
        get_suite("huge")


def test_scenes_of_an_older_generator_are_not_reused(tmp_path):
    from semfield.data.generate.presets import GENERATOR_VERSION
    from semfield.harness.runner import _scene_current

    scene = tmp_path / "default-0"
    scene.mkdir()
    (scene / "transforms.json").write_text("{}")
    assert not _scene_current(scene)  # no scene.json: half-written
    (scene / "scene.json").write_text(json.dumps({"preset": "default", "seed": 0}))
    assert not _scene_current(scene)  # written before versions were recorded (aliased RGB)
    (scene / "scene.json").write_text(json.dumps({"generator_version": GENERATOR_VERSION - 1}))
    assert not _scene_current(scene)
    (scene / "scene.json").write_text(json.dumps({"generator_version": GENERATOR_VERSION}))
    assert _scene_current(scene)
    (scene / "scene.json").write_text("{not json")
    assert not _scene_current(scene)


def test_ground_truth_boxes_for_the_bench_ab(tmp_path):
    from semfield.harness.runner import ground_truth_box_args

    (tmp_path / "scene.json").write_text(json.dumps({"focus_aabb": [[0, 0, 0], [1, 1, 1]],
                                                     "room_aabb": [[-2, -2, 0], [2, 2, 2.5]]}))
    args = ground_truth_box_args(tmp_path)
    assert args == ["--set", "bounds.focus=[[0, 0, 0], [1, 1, 1]]", "--set", "bounds.outer=[[-2, -2, 0], [2, 2, 2.5]]"]
    from semfield.settings import apply_overrides, parse_assignment
    from semfield.train.config import TrainConfig

    config = apply_overrides(TrainConfig(), dict(parse_assignment(a) for a in args[1::2]))
    assert config.bounds.focus == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]] and config.bounds.outer[1] == [2.0, 2.0, 2.5]


def test_a_suite_can_run_some_of_its_scenes_only(tmp_path):
    from semfield.harness.runner import run_suite

    with pytest.raises(SemfieldError, match="has no scene\\(s\\) default-9 \\(it has default-0"):
        run_suite("full", tmp_path / "out", only=["default-0", "default-9"], progress=False)
    assert not (tmp_path / "out").exists()  # refused before anything was written
