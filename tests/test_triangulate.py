"""Sparse points from posed images: DLT triangulation, its checks, undistortion and view pairs."""

from __future__ import annotations

import cv2
import numpy as np

from semfield.scene.convention import look_at
from semfield.scene.triangulate import (
    good_triangulations,
    neighbour_pairs,
    reprojection,
    triangulate,
    undistort_pixels,
)
from semfield.scene.types import Intrinsics

K = np.array([[160.0, 0.0, 96.0], [0.0, 160.0, 96.0], [0.0, 0.0, 1.0]])


def _two_views():
    a = look_at(np.array([1.5, 0.0, 1.0]), np.zeros(3))
    b = look_at(np.array([1.2, 0.9, 1.1]), np.zeros(3))
    return a, b


def test_triangulation_recovers_points_seen_by_two_cameras():
    rng = np.random.default_rng(0)
    points = rng.uniform(-0.4, 0.4, (50, 3))
    a, b = _two_views()
    uv_a, z_a = reprojection(points, K, a)
    uv_b, _ = reprojection(points, K, b)
    assert np.all(z_a > 0)
    X = triangulate(uv_a, uv_b, K, K, a, b)
    np.testing.assert_allclose(X, points, atol=1e-6)
    assert good_triangulations(X, uv_a, uv_b, K, K, a, b).all()


def test_bad_triangulations_are_dropped():
    a, b = _two_views()
    points = np.array([[0.0, 0.0, 0.0], [0.1, 0.1, 0.0]])
    uv_a, _ = reprojection(points, K, a)
    uv_b, _ = reprojection(points, K, b)
    uv_b[1] += [0.0, 6.0]  # a wrong match: 6 px off the epipolar line
    X = triangulate(uv_a, uv_b, K, K, a, b)
    keep = good_triangulations(X, uv_a, uv_b, K, K, a, b, max_px=2.0)
    assert keep.tolist() == [True, False]
    # two views from (almost) the same place: no angle to triangulate from
    c = a.copy()
    c[:3, 3] += [0.0, 0.001, 0.0]
    uv_c, _ = reprojection(points, K, c)
    X = triangulate(uv_a, uv_c, K, K, a, c)
    assert not good_triangulations(X, uv_a, uv_c, K, K, a, c, min_angle_deg=2.0).any()


def test_undistorting_pixels_inverts_opencv_distortion():
    dist = (0.06, -0.08, -0.001, 0.0002)
    intr = Intrinsics(192, 192, 160.0, 160.0, 96.0, 96.0, "OPENCV", dist)
    rng = np.random.default_rng(1)
    ideal = rng.uniform(10, 182, (40, 2))  # pinhole pixels, semfield convention (centres at +0.5)
    normalised = np.concatenate([(ideal - [96.0, 96.0]) / 160.0, np.ones((40, 1))], axis=1)
    K_cv = K - np.array([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]])
    distorted, _ = cv2.projectPoints(normalised, np.zeros(3), np.zeros(3), K_cv, np.array(dist))
    distorted = distorted.reshape(-1, 2) + 0.5
    assert np.abs(distorted - ideal).max() > 0.5  # the distortion is real
    np.testing.assert_allclose(undistort_pixels(distorted, intr), ideal, atol=1e-3)
    pinhole = Intrinsics(192, 192, 160.0, 160.0, 96.0, 96.0)
    np.testing.assert_array_equal(undistort_pixels(ideal, pinhole), ideal)


def test_neighbour_pairs_on_a_ring():
    c2w = np.stack([look_at(np.array([2 * np.cos(t), 2 * np.sin(t), 1.0]), np.zeros(3))
                    for t in np.linspace(0, 2 * np.pi, 12, endpoint=False)])
    pairs = neighbour_pairs(c2w, k=2)
    assert (0, 1) in pairs and (0, 11) in pairs and (0, 6) not in pairs  # neighbours, not the far side
    assert all(i < j for i, j in pairs)
