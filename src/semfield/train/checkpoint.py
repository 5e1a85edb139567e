"""Checkpoints: safetensors for tensors + JSON for everything else, written atomically (never pickle)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write, atomic_write_json
from ..errors import SemfieldError

CHECKPOINT = "checkpoint.safetensors"
STATE = "checkpoint.json"


def save_checkpoint(run_dir: Path, tensors: dict[str, torch.Tensor], state: dict) -> None:
    """Write tensors then the JSON state that refers to them; a crash between the two leaves the old
    JSON pointing at a complete older or newer tensor file of the same layout, never a partial file."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(run_dir / CHECKPOINT, lambda tmp: save_file(tensors, str(tmp)))
    atomic_write_json(run_dir / STATE, state)


def load_checkpoint(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a run's checkpoint: ``(tensors, state)``; one-line errors name the file."""
    st, ck = run_dir / STATE, run_dir / CHECKPOINT
    if not st.exists() or not ck.exists():
        raise SemfieldError("no checkpoint in this run folder (train it first)", run_dir)
    try:
        state = json.loads(st.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SemfieldError(f"corrupt checkpoint state ({exc})".splitlines()[0], st) from None
    try:
        tensors = load_file(str(ck))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SemfieldError(f"corrupt checkpoint ({exc})".splitlines()[0], ck) from None
    return tensors, state
