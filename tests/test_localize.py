"""Tests for semfield.query.localize: best point and box of the relevant object."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from semfield.errors import SemfieldError
from semfield.query.localize import localize, point_spacing


def _cube(origin, n=5, step=0.05) -> np.ndarray:
    g = np.arange(n) * step
    return np.stack(np.meshgrid(g, g, g, indexing="ij"), axis=-1).reshape(-1, 3) + np.asarray(origin)


def _scene(rel_a: float, rel_b: float):
    """Blob A: 5x5x5 grid on [0, 0.2]^3, relevancy peaked at its centre (0.1, 0.1, 0.1) (max rel_a);
    blob B: the same grid shifted to [1, 1.2]^3 with constant relevancy rel_b."""
    a, b = _cube([0, 0, 0]), _cube([1, 1, 1])
    rel = np.concatenate([rel_a - np.linalg.norm(a - 0.1, axis=1), np.full(len(b), rel_b)])
    return np.concatenate([a, b]), rel


def test_point_spacing():
    assert point_spacing(_cube([0, 0, 0])) == pytest.approx(0.05)


def test_two_blobs_relevant_box_recovered():
    pts, rel = _scene(0.95, 0.3)
    # top-7 = centre + its 6 face neighbours, all within the vote radius (8 x 0.05) -> coordinate median = centre
    loc = localize(pts, rel, top_k=7)
    assert loc.found
    np.testing.assert_allclose(loc.point, [0.1, 0.1, 0.1], atol=1e-12)
    # every point of A has rel >= 0.95 - 0.1732 > 0.5; B is below 0.5. Percentiles (2, 98) of the 125 grid
    # values per axis (25 at each of 0, ..., 0.2) are the extreme grid values.
    np.testing.assert_allclose(loc.box, [[0, 0, 0], [0.2, 0.2, 0.2]], atol=1e-12)
    assert loc.n_points == 125
    assert loc.score == pytest.approx(0.95)


def test_both_blobs_above_threshold_keeps_the_best_ones_component():
    pts, rel = _scene(0.95, 0.7)  # B is relevant too but 1.4 away (> radius 3 × 0.05)
    loc = localize(pts, rel, top_k=7)
    np.testing.assert_allclose(loc.box, [[0, 0, 0], [0.2, 0.2, 0.2]], atol=1e-12)
    assert loc.n_points == 125
    # relative cut 0.9 · 0.95 = 0.855 keeps the points of A within 0.095 of the centre: the 3 x 3 x 3 block
    # (distances 0, 0.05, 0.0707, 0.0866), not the next ring (0.1)
    loc = localize(pts, rel, top_k=7, relative=0.9)
    assert loc.n_points == 27
    np.testing.assert_allclose(loc.box, [[0.05, 0.05, 0.05], [0.15, 0.15, 0.15]], atol=1e-12)


def test_single_outlier_does_not_move_point_or_box():
    pts, rel = _scene(0.95, 0.3)
    pts = np.concatenate([pts, [[3.0, 3.0, 3.0]]])
    rel = np.concatenate([rel, [1.0]])  # a stray point that is the global maximum
    # top-8 = outlier (1.0) + centre (0.95) + 6 neighbours (0.9). Votes within 8 x 0.05 = 0.4: the outlier
    # has only itself (1.0), the centre its 6 neighbours too (0.95 + 5.4 = 6.35) -> the mode is the centre,
    # and the median of its 7 neighbours is the centre again.
    loc = localize(pts, rel, top_k=8)
    np.testing.assert_allclose(loc.point, [0.1, 0.1, 0.1], atol=1e-12)
    np.testing.assert_allclose(loc.box, [[0, 0, 0], [0.2, 0.2, 0.2]], atol=1e-12)
    assert loc.n_points == 125 and loc.found
    # a weighted mean of the top 8 would be pulled far off: x = (3·1 + 0.1·0.95 + 0.9·0.6) / 7.35 = 0.49456
    top = np.argsort(-rel, kind="stable")[:8]
    naive = (rel[top, None] * pts[top]).sum(axis=0) / rel[top].sum()
    assert naive[0] == pytest.approx(3.635 / 7.35)


def test_nothing_relevant_is_flagged():
    pts, rel = _scene(0.45, 0.3)
    loc = localize(pts, rel, top_k=7, radius=0.1)
    assert not loc.found and loc.n_points == 0
    np.testing.assert_allclose(loc.point, [0.1, 0.1, 0.1], atol=1e-12)
    np.testing.assert_allclose(loc.box, [[0.05, 0.05, 0.05], [0.15, 0.15, 0.15]], atol=1e-12)
    assert loc.score == pytest.approx(0.45)


def test_nonfinite_rows_dropped_and_bad_shapes_raise():
    pts, rel = _scene(0.95, 0.3)
    rel[0] = np.nan
    assert localize(pts, rel, top_k=7).n_points == 124
    with pytest.raises(SemfieldError, match=r"\[N, 3\]"):
        localize(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(SemfieldError, match="relevancy"):
        localize(np.zeros((4, 3)), np.zeros(3))
    with pytest.raises(SemfieldError, match="finite"):
        localize(np.full((2, 3), np.nan), np.zeros(2))


def test_doctests():
    assert (
        doctest.testmod(importlib.import_module("semfield.query.localize"), raise_on_error=False).failed == 0
    )


def test_two_clusters_among_the_top_points_give_a_point_on_one_of_them():
    # 9 points at x = 0 and 7 more relevant ones at x = 1 share the top 16; a weighted mean would land between
    pts = np.concatenate([_cube([0, 0, 0], n=3, step=0.01)[:9], _cube([1, 0, 0], n=3, step=0.01)[:7]])
    rel = np.concatenate([np.full(9, 0.8), np.full(7, 0.9)])
    loc = localize(pts, rel, top_k=16, radius=0.02, vote_radius=0.1)
    # votes: each point of the x = 0 cluster 9 x 0.8 = 7.2 > 7 x 0.9 = 6.3 -> the x = 0 cluster
    assert loc.point[0] == 0.0
    # the most relevant point alone is on the other cluster; so is the mode when it holds more relevancy
    rel[9:] = 1.2
    assert localize(pts, rel, top_k=16, radius=0.02, vote_radius=0.1).point[0] == 1.0


def test_best_point_stays_on_a_small_object_when_its_support_peaks():
    # A 5 cm cube's top face (z = 0.05, 5 x 5 points) on a table (z = 0); the label field bleeds onto the
    # table ring next to the cube, and the single most relevant point is such a table point.
    top_face = _cube([0, 0, 0], n=5, step=0.0125)[:, :2]
    obj = np.column_stack([top_face, np.full(len(top_face), 0.05)])
    ring = np.array([[-0.01, 0.02, 0.0], [0.06, 0.03, 0.0], [0.02, -0.01, 0.0]])
    pts = np.concatenate([ring, obj])
    rel = np.concatenate([[0.99, 0.97, 0.96], np.full(len(obj), 0.95)])
    loc = localize(pts, rel, top_k=16, radius=0.03, vote_radius=0.1)
    # the top 16 = 3 ring points + 13 face points: the median height is the face's
    assert loc.point[2] == pytest.approx(0.05)
    assert np.all((loc.point[:2] >= 0) & (loc.point[:2] <= 0.05))
