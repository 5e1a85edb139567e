"""User-facing errors.

Every problem caused by bad input (a file, a flag) raises :class:`SemfieldError` whose message is one
line naming the file and the problem. The CLI prints that line and exits with status 2, no traceback.
"""

from __future__ import annotations

from pathlib import Path


class SemfieldError(Exception):
    """A problem with the user's input, reported as one line: ``<path>: <problem>``."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


class SemfieldWarning(UserWarning):
    """Something the user should know that does not stop the job; the CLI prints it as one line,
    ``semfield: warning: <message>`` (:func:`one_line_warnings`)."""


def one_line_warnings() -> None:
    """Print :class:`SemfieldWarning` as ``semfield: warning: <message>``; other warnings as before."""
    import warnings

    original = warnings.formatwarning
    if getattr(original, "semfield", False):
        return

    def formatwarning(message, category, filename, lineno, line=None):
        if issubclass(category, SemfieldWarning):
            return f"semfield: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    formatwarning.semfield = True
    warnings.formatwarning = formatwarning
