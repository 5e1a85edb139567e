"""Training settings from the command line: a JSON file and ``key=value`` overrides of :class:`TrainConfig`.

Keys are the (nested, dotted) field names of ``TrainConfig.to_dict()``: ``iterations``, ``field.focus_vertices``,
``render.step_voxels``, ``field.heads.clip.dim``, ... Values are parsed as JSON (``4000000``, ``null``, ``[1, 2]``,
``true``); anything that is not valid JSON is taken as a string (``device=cuda``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SemfieldError
from .jsonfile import read_json
from .train.config import TrainConfig

FREE_FORM = ("field.heads", "teachers", "instance")  # mappings set whole (user-chosen keys or options)


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"render.max_samples=256"`` → ``("render.max_samples", 256)``; a value that is not JSON stays a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SemfieldError(f"--set expects key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        value = raw
    return key, value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _check_type(key: str, old: Any, new: Any) -> Any:
    """``new`` if it fits the type of the current value ``old`` (None accepts anything); else an error."""
    if old is None or new is None:
        return new
    if _kind(old) != _kind(new):
        raise SemfieldError(f"setting {key} expects {_kind(old)}, got {json.dumps(new)}")
    if isinstance(old, int) and not isinstance(old, bool) and isinstance(new, float):
        if not new.is_integer():
            raise SemfieldError(f"setting {key} expects a whole number, got {new}")
        return int(new)
    return new


def apply_overrides(config: TrainConfig, overrides: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
    """A new TrainConfig: ``config`` with each dotted ``key: value`` of ``overrides`` replaced.

    Unknown keys and values of the wrong type raise a one-line :class:`SemfieldError`.
    """
    d = config.to_dict()
    for key, value in overrides.items():
        parts = key.split(".")
        node: Any = d
        for depth, part in enumerate(parts[:-1]):
            prefix = ".".join(parts[:depth + 1])
            if not isinstance(node, dict) or part not in node or not isinstance(node[part], dict):
                raise SemfieldError(f"unknown setting {key!r} ({prefix!r} is not a group of settings)", source)
            node = node[part]
        last, parent = parts[-1], ".".join(parts[:-1])
        if last not in node:
            if parent not in FREE_FORM:
                where = f" in {parent!r}" if parent else ""
                known = ", ".join(sorted(node))
                raise SemfieldError(f"unknown setting {key!r} (known{where}: {known})", source)
            node[last] = value
        else:
            node[last] = _check_type(key, node[last], value)
    try:
        return TrainConfig.from_dict(d, source=source)
    except (TypeError, ValueError) as exc:
        raise SemfieldError(f"bad training settings ({exc})", source) from None


def read_config_file(path: str | Path) -> TrainConfig:
    """A TrainConfig from a JSON file: a run's ``config.json`` (its ``"train"`` block) or a bare settings
    object; missing keys keep their defaults."""
    path = Path(path)
    data = read_json(path, "config file")
    if isinstance(data, dict) and isinstance(data.get("train"), dict):
        data = data["train"]
    if not isinstance(data, dict):
        raise SemfieldError("config file must hold a JSON object of training settings", path)
    flat = dict(_flatten(data))
    return apply_overrides(TrainConfig(), flat, source=path)


def _flatten(d: dict, prefix: str = ""):
    """Dotted ``(key, value)`` pairs of nested settings; free-form mappings stay whole."""
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and key not in FREE_FORM:
            yield from _flatten(v, key + ".")
        else:
            yield key, v
