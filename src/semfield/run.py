"""Run folders: what a training run leaves on disk, and reading it back.

A run folder is self-describing::

    RUN/config.json              {"scene": <path of the scene's transforms.json>, "train": TrainConfig.to_dict()}
    RUN/checkpoint.safetensors   field tensors (+ optimiser state, RNG state)
    RUN/checkpoint.json          {"layout": ..., "iteration": N, "train_seconds": s, ...}
    RUN/metrics.json             held-out metrics, timings, machine (written after evaluation)
    RUN/test_XX_rgb.png, RUN/test_XX_depth.png, RUN/test_views.png   pictures of the test views

Every problem reading a run is a one-line :class:`SemfieldError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SemfieldError
from .field.grid_field import GridField
from .jsonfile import read_json
from .scene.load import load_scene
from .scene.types import Scene
from .train.checkpoint import CHECKPOINT, STATE, load_checkpoint
from .train.config import TrainConfig

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


@dataclass
class Run:
    """A trained run read back from its folder.

    Attributes:
        run_dir: the folder.
        config: the training settings saved in ``config.json``.
        field: the trained field, on the device asked for.
        scene_path: the scene the run was trained on (as saved; may have moved since).
        state: ``checkpoint.json`` contents (``iteration``, ``train_seconds``, ``layout``, ...).
    """

    run_dir: Path
    config: TrainConfig
    field: GridField
    scene_path: Path
    state: dict[str, Any]

    @property
    def iteration(self) -> int:
        return int(self.state.get("iteration", 0))

    @property
    def metrics(self) -> dict[str, Any] | None:
        return read_metrics(self.run_dir)


def read_run_config(run_dir: str | Path) -> tuple[TrainConfig, Path]:
    """``(TrainConfig, scene path)`` from ``RUN/config.json``."""
    path = Path(run_dir) / CONFIG_FILE
    saved = read_json(path, "run config")
    if not isinstance(saved, dict) or not isinstance(saved.get("train"), dict) or "scene" not in saved:
        raise SemfieldError('run config must be a JSON object with "scene" and "train"', path)
    return TrainConfig.from_dict(saved["train"], source=path), Path(str(saved["scene"]))


def read_metrics(run_dir: str | Path) -> dict[str, Any] | None:
    """``RUN/metrics.json`` contents, or None when the run has not been evaluated yet."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return None
    metrics = read_json(path, "metrics file")
    if not isinstance(metrics, dict):
        raise SemfieldError("metrics file must hold a JSON object", path)
    return metrics


def _check_run_dir(run_dir: Path) -> None:
    if not run_dir.exists():
        raise SemfieldError("run folder not found", run_dir)
    if not run_dir.is_dir():
        raise SemfieldError("expected a run folder, found a file", run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise SemfieldError("not a run folder (no config.json; train one with `semfield train`)", run_dir)


def load_run(run_dir: str | Path, device: str = "cpu") -> Run:
    """Read a run folder: its config, checkpoint and field (on ``device``)."""
    run_dir = Path(run_dir)
    _check_run_dir(run_dir)
    config, scene_path = read_run_config(run_dir)
    tensors, state = load_checkpoint(run_dir)
    if not isinstance(state, dict) or not isinstance(state.get("layout"), dict):
        raise SemfieldError("corrupt checkpoint state (no field layout)", run_dir / STATE)
    try:
        field = GridField.from_state(state["layout"], tensors, device=device)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        problem = f"checkpoint does not match its layout ({type(exc).__name__}: {exc})".splitlines()[0]
        raise SemfieldError(problem[:300], run_dir / CHECKPOINT) from None
    field.eval()
    return Run(run_dir=run_dir, config=config, field=field, scene_path=scene_path, state=state)


def load_run_scene(run: Run) -> Scene:
    """The scene ``run`` was trained on (read again from disk)."""
    if not run.scene_path.exists():
        raise SemfieldError(
            f"the scene this run was trained on is gone (moved or deleted?): {run.scene_path}",
            run.run_dir / CONFIG_FILE,
        )
    return load_scene(run.scene_path)


def check_resumable(run_dir: str | Path, config: TrainConfig) -> bool:
    """Check that ``run_dir`` can take a training run with ``config``; True if it holds one to resume.

    A new run needs an empty or missing folder; an existing run must have been trained with the same
    settings except those in ``semfield.train.config.RESUMABLE_CHANGES`` (e.g. more iterations continue from the checkpoint).
    """
    run_dir = Path(run_dir)
    check_output_dir(run_dir)
    if not run_dir.exists():
        return False
    if not (run_dir / CONFIG_FILE).exists():
        if any(run_dir.iterdir()):
            raise SemfieldError("output folder is not empty and holds no semfield run; choose another --out",
                                run_dir)
        return False
    saved, _ = read_run_config(run_dir)
    differ = config.learning_differences(saved.to_dict())
    if differ:
        raise SemfieldError(f"run folder holds a run with different settings ({', '.join(differ)}); use a new "
                            "--out or the same settings to resume", run_dir)
    return (run_dir / STATE).exists()


def check_output_dir(path: str | Path) -> None:
    """Check, without creating anything, that folder ``path`` exists or can be created, and is writable."""
    path = Path(path).absolute()
    probe = path
    while True:
        try:
            if probe.exists():
                break
        except OSError as exc:
            raise SemfieldError(f"cannot access output path ({exc.strerror})", probe) from None
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise SemfieldError("is a file, not a folder: cannot write output here", probe)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise SemfieldError("output folder is not writable", probe)
