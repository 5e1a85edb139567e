"""Point-cloud PLY writer: binary little endian, written atomically (temporary file + ``os.replace``).

One ``vertex`` element with, in this order: ``x, y, z`` (float32); ``red, green, blue`` (uchar) when colours
are given; each named scalar (float32 for floating-point values such as relevancy, int32 for integer or bool
values such as labels and instance ids); ``f_0 .. f_{D-1}`` (float32) when feature vectors are given.
Readable by plyfile, Open3D, MeshLab and CloudCompare. numpy and torch inputs are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import SemfieldError

__all__ = ["write_ply"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED = re.compile(r"^(x|y|z|red|green|blue|f_\d+)$")


def _np(x, name: str, path: Path) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise SemfieldError(f"{name} must be numeric, got dtype {a.dtype}", path)
    return a


def _colors_u8(colors: np.ndarray, path: Path) -> np.ndarray:
    if colors.dtype == np.uint8:
        return colors
    if colors.dtype.kind == "f":
        if not np.isfinite(colors).all():
            raise SemfieldError("colors contain non-finite values", path)
        return (np.clip(colors, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if colors.min(initial=0) < 0 or colors.max(initial=0) > 255:
        raise SemfieldError("integer colors must lie in [0, 255]", path)
    return colors.astype(np.uint8)


def write_ply(
    path: str | Path,
    points,
    colors=None,
    scalars: Mapping[str, object] | None = None,
    features=None,
) -> Path:
    """Write a point cloud to ``path`` as binary little-endian PLY, atomically.

    Args:
        path: output file (its folder is created).
        points: ``[N, 3]`` positions, written as float32.
        colors: optional ``[N, 3]``: uint8, integers in [0, 255], or floats in [0, 1] (clipped, rounded).
        scalars: optional ``{name: [N]}`` per-point values; float → float32, int/bool → int32. Names must be
            identifiers and must not clash with x, y, z, red, green, blue or f_<i>.
        features: optional ``[N, D]`` feature vectors, written as float32 ``f_0 .. f_{D-1}``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        SemfieldError: a shape, dtype or name is wrong (one line naming the file).

    Example:
        >>> import tempfile, os
        >>> out = write_ply(os.path.join(tempfile.mkdtemp(), "c.ply"), np.zeros((2, 3)),
        ...                 scalars={"relevancy": np.array([0.2, 0.9])})
        >>> out.read_bytes().split(b"end_header")[0].decode().splitlines()[2:][-2:]
        ['property float z', 'property float relevancy']
    """
    path = Path(path)
    pts = _np(points, "points", path)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise SemfieldError(f"points must be [N, 3], got {pts.shape}", path)
    n = pts.shape[0]
    columns: list[tuple[str, str, np.ndarray]] = [(a, "<f4", pts[:, i]) for i, a in enumerate("xyz")]
    if colors is not None:
        col = _np(colors, "colors", path)
        if col.shape != (n, 3):
            raise SemfieldError(f"colors must be [{n}, 3], got {col.shape}", path)
        columns += [
            (a, "u1", c) for a, c in zip(("red", "green", "blue"), _colors_u8(col, path).T, strict=True)
        ]
    for name, values in (scalars or {}).items():
        if not isinstance(name, str) or not _NAME.match(name) or _RESERVED.match(name):
            raise SemfieldError(
                f"bad scalar property name {name!r} (identifier, not x/y/z/red/green/blue/f_<i>)", path
            )
        v = _np(values, f"scalar {name!r}", path)
        if v.shape != (n,):
            raise SemfieldError(f"scalar {name!r} must be [{n}], got {v.shape}", path)
        if v.dtype.kind != "f" and v.size and (v.min() < -(2**31) or v.max() > 2**31 - 1):
            raise SemfieldError(f"scalar {name!r} does not fit in int32", path)
        columns.append((name, "<f4" if v.dtype.kind == "f" else "<i4", v))
    if features is not None:
        f = _np(features, "features", path)
        if f.ndim != 2 or f.shape[0] != n:
            raise SemfieldError(f"features must be [{n}, D], got {f.shape}", path)
        columns += [(f"f_{d}", "<f4", f[:, d]) for d in range(f.shape[1])]

    table = np.empty(n, dtype=[(name, dt) for name, dt, _ in columns])
    for name, _, values in columns:
        table[name] = values
    ply_type = {"<f4": "float", "u1": "uchar", "<i4": "int"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    header += [f"property {ply_type[dt]} {name}" for name, dt, _ in columns]
    header.append("end_header")
    head = ("\n".join(header) + "\n").encode("ascii")

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(head)
            table.tofile(f)

    return atomic_write(path, write)
