"""Tests for semfield.export.ply: round trip through plyfile, atomic write, one-line shape errors."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest
import torch
from plyfile import PlyData

from semfield.errors import SemfieldError
from semfield.export.ply import write_ply


def _read(path) -> dict[str, np.ndarray]:
    """Test-only reader (plyfile): every vertex property by name."""
    ply = PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    v = ply["vertex"]
    return {p.name: np.asarray(v[p.name]) for p in v.properties}


def test_round_trip(tmp_path):
    pts = np.array([[0.0, 1.0, 2.0], [-1.5, 0.25, 3.0], [1e3, -2e-3, 0.0]])
    colors = np.array([[0.0, 0.5, 1.0], [1.0, 0.0, 0.2], [2.0, -1.0, 0.999]])  # floats, clipped and rounded
    rel = np.array([0.1, 0.9, 0.5])
    label = np.array([3, -1, 7])
    inst = torch.tensor([True, False, True])
    feats = torch.arange(6, dtype=torch.float64).reshape(3, 2) / 4
    out = write_ply(
        tmp_path / "sub" / "cloud.ply",
        pts,
        colors,
        scalars={"relevancy": rel, "label": label, "selected": inst},
        features=feats,
    )
    assert out == tmp_path / "sub" / "cloud.ply"
    data = _read(out)
    assert list(data) == [
        "x",
        "y",
        "z",
        "red",
        "green",
        "blue",
        "relevancy",
        "label",
        "selected",
        "f_0",
        "f_1",
    ]
    np.testing.assert_array_equal(np.stack([data["x"], data["y"], data["z"]], 1), pts.astype(np.float32))
    assert data["x"].dtype == np.float32 and data["red"].dtype == np.uint8
    # 0.5 * 255 + 0.5 = 128.0 -> 128; 0.2 * 255 + 0.5 = 51.5 -> 51; 0.999 * 255 + 0.5 = 255.245 -> 255
    np.testing.assert_array_equal(
        np.stack([data["red"], data["green"], data["blue"]], 1), [[0, 128, 255], [255, 0, 51], [255, 0, 255]]
    )
    assert data["relevancy"].dtype == np.float32 and data["label"].dtype == np.int32
    np.testing.assert_allclose(data["relevancy"], rel.astype(np.float32))
    np.testing.assert_array_equal(data["label"], [3, -1, 7])
    np.testing.assert_array_equal(data["selected"], [1, 0, 1])
    np.testing.assert_array_equal(np.stack([data["f_0"], data["f_1"]], 1), feats.numpy().astype(np.float32))
    assert sorted(p.name for p in out.parent.iterdir()) == ["cloud.ply"]  # no temporary file left


def test_minimal_and_uint8_colors(tmp_path):
    out = write_ply(tmp_path / "a.ply", np.zeros((0, 3)))
    assert _read(out)["x"].shape == (0,)
    out = write_ply(
        tmp_path / "b.ply", np.ones((2, 3), np.float32), colors=np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    )
    np.testing.assert_array_equal(_read(out)["blue"], [3, 6])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"points": np.zeros((4, 2))}, r"points must be \[N, 3\]"),
        ({"colors": np.zeros((3, 3))}, r"colors must be \[4, 3\]"),
        ({"colors": np.full((4, 3), 300)}, r"\[0, 255\]"),
        ({"colors": np.full((4, 3), np.nan)}, "non-finite"),
        ({"scalars": {"relevancy": np.zeros(5)}}, r"must be \[4\]"),
        ({"scalars": {"x": np.zeros(4)}}, "bad scalar property name"),
        ({"scalars": {"f_2": np.zeros(4)}}, "bad scalar property name"),
        ({"scalars": {"two words": np.zeros(4)}}, "bad scalar property name"),
        ({"scalars": {"big": np.full(4, 2**40)}}, "int32"),
        ({"features": np.zeros((3, 8))}, r"features must be \[4, D\]"),
        ({"features": np.array(["a"] * 4)}, "numeric"),
    ],
)
def test_bad_inputs_raise(tmp_path, kwargs, match):
    args = {"points": np.zeros((4, 3)), **kwargs}
    path = tmp_path / "bad.ply"
    with pytest.raises(SemfieldError, match=match) as err:
        write_ply(path, **args)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_doctests():
    assert doctest.testmod(importlib.import_module("semfield.export.ply"), raise_on_error=False).failed == 0
