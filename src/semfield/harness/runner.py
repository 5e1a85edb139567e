"""``semfield bench``: make-scene + train + eval over a suite, each step the CLI command a person would type.

Every step runs as its own ``semfield`` process (so its peak memory is its own, measured with ``wait4``),
and the exact command line is recorded next to its wall time. Output folder::

    OUT/scenes/<preset>-<seed>/      generated scenes (reused when already complete: generation is by seed)
    OUT/runs/<preset>-<seed>/        trained runs (trained afresh unless ``reuse``), eval.json inside
    OUT/train_config.json            the TrainConfig every scene trains with
    OUT/bench.json                   machine, commands, wall times, peak memory, per-scene and mean summaries
    OUT/report.md                    the same as a readable report

Training finds its boxes from the images (``TrainConfig.bounds``), as it does for a user. For an A/B of
that, ``ground_truth_bounds`` hands every training the generated scene's own boxes (``scene.json``
``focus_aabb`` and ``room_aabb``) as user-set ``bounds.focus`` / ``bounds.outer``: help no capture gives,
recorded in bench.json and the report.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..atomic import atomic_write_json, atomic_write_text
from ..data.generate.presets import GENERATOR_VERSION, is_current_scene
from ..errors import SemfieldError
from ..machine import machine_info
from ..settings import apply_overrides
from ..train.checkpoint import CHECKPOINT
from ..train.config import TrainConfig
from .report import render_report
from .suites import SceneSpec, Suite, get_suite
from .summary import SUMMARY_KEYS, mean_summary


def _semfield_argv() -> list[str]:
    """How to start the ``semfield`` command from this interpreter (works without the console script)."""
    return [sys.executable, "-m", "semfield.cli"]


def run_step(args: list[str], log: Path) -> dict[str, Any]:
    """Run ``semfield <args>`` with output to ``log``; its command, wall seconds and peak RSS (MiB).

    Raises:
        SemfieldError: the step failed (its last output lines are in the message).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(_semfield_argv() + args, stdout=out, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise SemfieldError(f"`semfield {shlex.join(args)}` failed (exit {code}): {' / '.join(tail)}", log)
    return {"command": "semfield " + shlex.join(args), "wall_seconds": wall, "peak_rss_mb": usage.ru_maxrss / 1024.0}


def _scene_current(scene_dir: Path) -> bool:
    """Whether ``scene_dir`` holds a complete scene from this generator version (else it is made again)."""
    if not (scene_dir / "transforms.json").exists() or not (scene_dir / "scene.json").exists():
        return False
    try:
        return is_current_scene(json.loads((scene_dir / "scene.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def ground_truth_box_args(scene_dir: Path) -> list[str]:
    """``--set`` arguments that give a training the generated scene's ground-truth focus and room boxes."""
    gt = json.loads((scene_dir / "scene.json").read_text(encoding="utf-8"))
    return ["--set", f"bounds.focus={json.dumps(gt['focus_aabb'])}",
            "--set", f"bounds.outer={json.dumps(gt['room_aabb'])}"]


def bench_scene(spec: SceneSpec, out: Path, config_file: Path, eval_args: tuple[str, ...], reuse: bool, bar,
                ground_truth_bounds: bool = False) -> dict[str, Any]:
    """make-scene, train, eval for one scene; its steps and its evaluation summary."""
    scene_dir, run_dir = out / "scenes" / spec.name, out / "runs" / spec.name
    logs = out / "logs" / spec.name
    steps: dict[str, Any] = {}
    bar.set_postfix_str(f"{spec.name}: make-scene")
    if not _scene_current(scene_dir):
        if scene_dir.exists():
            shutil.rmtree(scene_dir)  # half-written by an interrupted bench, or from an older generator
        reuse = False  # a run trained on the old scene measures nothing about this one
        steps["make_scene"] = run_step(["make-scene", str(scene_dir), "--preset", spec.preset, "--seed",
                                        str(spec.seed), "--no-progress"], logs / "make_scene.log")
    bar.update(1)
    bar.set_postfix_str(f"{spec.name}: train")
    eval_file = run_dir / "eval.json"
    if not (reuse and eval_file.exists()):
        if run_dir.exists() and not reuse:
            shutil.rmtree(run_dir)  # timings of a fresh training, not of a resumed one
        boxes = ground_truth_box_args(scene_dir) if ground_truth_bounds else []
        steps["train"] = run_step(["train", str(scene_dir), "--out", str(run_dir), "--config", str(config_file),
                                   *boxes, "--no-progress"], logs / "train.log")
        steps["train"]["checkpoint_mb"] = (run_dir / CHECKPOINT).stat().st_size / 2**20
        bar.update(1)
        bar.set_postfix_str(f"{spec.name}: eval")
        steps["eval"] = run_step(["eval", str(run_dir), "--out", str(eval_file), *eval_args, "--no-progress"],
                                 logs / "eval.log")
        bar.update(1)
    else:
        bar.update(2)
    report = json.loads(eval_file.read_text(encoding="utf-8"))
    return {"scene": spec.name, "preset": spec.preset, "seed": spec.seed, "steps": steps,
            "eval_seconds": report.get("seconds", {}), "skipped": report.get("skipped", {}),
            "summary": report["summary"]}


def run_suite(suite_name: str, out_dir: str | Path, reuse: bool = False, progress: bool = True,
              ground_truth_bounds: bool = False, only: list[str] | None = None) -> dict[str, Any]:
    """Run a suite into ``out_dir``; returns (and writes) the bench JSON. ``ground_truth_bounds``: train with
    each scene's ground-truth boxes (an A/B of the boxes found from the data; see the module notes).
    ``only``: run just these of the suite's scenes (names such as ``default-0``), with its settings."""
    suite: Suite = get_suite(suite_name)
    if only:
        names = [spec.name for spec in suite.scenes]
        unknown = [n for n in only if n not in names]
        if unknown:
            raise SemfieldError(f"suite {suite.name!r} has no scene(s) {', '.join(unknown)} (it has "
                                f"{', '.join(names)})")
        suite = replace(suite, scenes=tuple(spec for spec in suite.scenes if spec.name in only))
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    config = apply_overrides(TrainConfig(), suite.train, source=f"suite {suite.name}")
    config_file = out / "train_config.json"
    atomic_write_json(config_file, config.to_dict())
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    start = time.perf_counter()
    scenes = []
    with tqdm(total=3 * len(suite.scenes), desc=f"bench {suite.name}", unit="step", disable=not progress,
              dynamic_ncols=True) as bar:
        for spec in suite.scenes:
            scenes.append(bench_scene(spec, out, config_file, suite.eval_args, reuse, bar, ground_truth_bounds))
    result = {
        "benchmark": "semfield bench", "suite": suite.name,
        "description": suite.description + (f"; run on {', '.join(only)} only" if only else ""),
        "command": "semfield bench " + shlex.join(["--suite", suite.name, "--out", str(out_dir)]
                                                  + (["--reuse"] if reuse else [])
                                                  + (["--ground-truth-bounds"] if ground_truth_bounds else [])
                                                  + (["--scenes", ",".join(only)] if only else [])),
        "bounds": ("ground truth (scene.json focus_aabb and room_aabb, set as bounds.focus / bounds.outer)"
                   if ground_truth_bounds else "found from the images and cameras (bounds.mode "
                   f"{config.bounds.mode!r})"),
        "started": started, "wall_seconds": time.perf_counter() - start, "machine": machine_info(),
        "generator_version": GENERATOR_VERSION,
        "train_config": config.to_dict(), "summary_keys": list(SUMMARY_KEYS),
        "summary_is": f"mean over the suite's {len(scenes)} scene(s)",
        "summary": mean_summary([s["summary"] for s in scenes]), "scenes": scenes,
    }
    atomic_write_json(out / "bench.json", result)
    atomic_write_text(out / "report.md", render_report(result))
    return result
