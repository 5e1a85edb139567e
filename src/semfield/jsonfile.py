"""Reading JSON files with one-line errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import SemfieldError


def read_json(path: str | Path, what: str) -> Any:
    """Parse the JSON file at ``path`` (a UTF-8 BOM is allowed).

    ``what`` names the file in messages ("run config", "pose file", ...). Every failure — missing,
    a folder, unreadable, not UTF-8, invalid, nested too deeply, numbers past Python's digit limit —
    raises :class:`SemfieldError` with one line naming the file.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise SemfieldError(f"{what} not found", path) from None
    except IsADirectoryError:
        raise SemfieldError(f"{what} is a folder, expected a file", path) from None
    except OSError as exc:
        raise SemfieldError(f"cannot read {what} ({exc.strerror})", path) from None
    except UnicodeDecodeError:
        raise SemfieldError(f"{what} is not UTF-8 text", path) from None
    try:
        return json.loads(text)
    except RecursionError:
        raise SemfieldError(f"{what} is not valid JSON (nested too deeply)", path) from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python's digit limit
        raise SemfieldError(f"{what} is not valid JSON ({exc})".splitlines()[0], path) from None
