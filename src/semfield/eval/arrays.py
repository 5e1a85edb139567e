"""Turn metric inputs (numpy arrays, torch tensors on any device, nested lists) into numpy arrays, with a
one-line :class:`SemfieldError` naming the argument when they are not numeric."""

from __future__ import annotations

import numpy as np

from ..errors import SemfieldError


def as_numpy(x):
    """``x`` as a numpy array (a torch tensor is detached and copied to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_float(x, name: str, dtype=np.float64) -> np.ndarray:
    """``x`` as a float (or ``dtype``) array; non-numeric input raises naming ``name``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError):
        raise SemfieldError(f"{name}: expected a numeric array") from None


def as_int(x, name: str, what: str = "ids") -> np.ndarray:
    """``x`` as int64, which must already hold integers (or bools); ``what`` names them in the error."""
    a = as_numpy(x)
    if a.dtype.kind not in "iub":
        raise SemfieldError(f"{name}: expected integer {what}, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)
