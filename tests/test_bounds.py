"""Bounds from the data: the pure box functions, worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from semfield.scene.bounds import (
    BoundsConfig,
    camera_bounds,
    check_box,
    choose_focus,
    clip_box,
    outer_from_rays,
    percentile_box,
    resolution_deficit,
)


def _ring_cameras(centre, radius: float, n: int = 12, height: float = 0.8) -> np.ndarray:
    """Camera-to-world ``[n, 4, 4]`` (OpenCV axes) on a ring, each looking at ``centre``."""
    out = []
    for k in range(n):
        a = 2 * math.pi * k / n
        eye = np.asarray(centre) + np.array([radius * math.cos(a), radius * math.sin(a), height])
        z = np.asarray(centre) - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye
        out.append(c2w)
    return np.stack(out)


def test_camera_bounds_centre_on_what_the_cameras_look_at():
    c2w = _ring_cameras([0.5, -0.2, 0.7], radius=1.5)
    outer, focus = camera_bounds(c2w)
    np.testing.assert_allclose(focus.mean(0), [0.5, -0.2, 0.7], atol=1e-6)
    distance = math.hypot(1.5, 0.8)
    np.testing.assert_allclose(focus[1] - focus[0], 1.2 * distance, rtol=1e-6)
    assert np.all(outer[0] < c2w[:, :3, 3].min(0)) and np.all(outer[1] > c2w[:, :3, 3].max(0))
    user = np.array([[-1.0, -1.0, 0.0], [1.0, 1.0, 1.0]])
    outer2, focus2 = camera_bounds(c2w, user)
    np.testing.assert_array_equal(outer2, user)
    assert np.all(focus2[0] >= user[0]) and np.all(focus2[1] <= user[1])


def test_clip_box_keeps_a_sliver_when_an_axis_falls_outside():
    limit = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    box = clip_box(np.array([[-1.0, 0.2, 2.0], [0.5, 0.8, 3.0]]), limit)
    np.testing.assert_allclose(box[:, :2], [[0.0, 0.2], [0.5, 0.8]])
    assert 0.0 <= box[0, 2] < box[1, 2] <= 1.0


def test_outer_box_holds_what_the_rays_saw_not_a_few_strays():
    rng = np.random.default_rng(0)
    walls = rng.uniform([-2, -2, 0], [2, 2, 2.5], (5000, 3))
    strays = np.array([[9.0, 0.0, 1.0], [0.0, -9.0, 1.0]])  # two flyers far out
    cameras = np.array([[0.0, 0.0, 1.2], [1.0, 0.5, 1.4]])
    limit = np.array([[-10.0, -10.0, -10.0], [10.0, 10.0, 10.0]])
    none = np.zeros((0, 3))
    box = outer_from_rays(np.concatenate([walls, strays]), none, cameras, limit, pad=0.1)
    np.testing.assert_allclose(box, [[-2.1, -2.1, -0.1], [2.1, 2.1, 2.6]], atol=0.06)
    # without triangulated points, a ray that found no surface counts where it left the limit: every one
    box = outer_from_rays(walls, np.array([[10.0, 0.0, 1.0]]), cameras, limit, pad=0.1)
    assert box[1, 0] == 10.0
    # with them, the walls they found bound the box and such rays do not stretch it
    sparse = np.concatenate([rng.uniform([-3, -3, 0], [3, 3, 2.0], (400, 3)), strays])
    box = outer_from_rays(walls, np.array([[10.0, 0.0, 1.0]]), cameras, limit, pad=0.1, sparse=sparse)
    np.testing.assert_allclose(box, [[-3.1, -3.1, -0.1], [3.1, 3.1, 2.6]], atol=0.1)
    # too few triangulated points to trust: as without them
    box = outer_from_rays(walls, np.array([[10.0, 0.0, 1.0]]), cameras, limit, pad=0.1, sparse=sparse[:50])
    assert box[1, 0] == 10.0


def test_resolution_deficit_by_hand():
    points = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    box = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    # inside at exactly the voxel it needs: 0; outside, 4x coarser than needed: log 4
    assert resolution_deficit(points, np.array([0.01, 0.01]), box, 0.01, 4.0) == pytest.approx(math.log(4) / 2)
    # finer than needed costs nothing
    assert resolution_deficit(points, np.array([0.02, 0.08]), box, 0.01, 4.0) == 0.0


def test_focus_goes_where_the_pixels_look_closely():
    """A table seen from close by many pixels inside a room seen from far: the focus box is the table."""
    rng = np.random.default_rng(1)
    table = rng.uniform([-0.6, -0.45, 0.0], [0.6, 0.45, 0.9], (6000, 3))
    walls = np.concatenate([rng.uniform([-2, -2, 0], [2, 2, 2.5], (3000, 3)) * [1, 1, 1]])
    walls[:, 0] = np.where(rng.random(3000) < 0.5, -2.0, 2.0)
    points = np.concatenate([table, walls])
    need = np.concatenate([np.full(len(table), 0.008), np.full(len(walls), 0.025)])
    limit = np.array([[-2.1, -2.1, -0.1], [2.1, 2.1, 2.6]])

    def voxel_of(box):  # a 6 M vertex budget, never finer than the table's pixels
        return max((np.prod(box[1] - box[0]) / 6e6) ** (1 / 3), 0.008)

    focus, table_rows = choose_focus(points, need, voxel_of, 4.0, pad=0.05, limit=limit)
    np.testing.assert_allclose(focus, [[-0.65, -0.5, -0.05], [0.65, 0.5, 0.95]], atol=0.03)
    deficits = [row["deficit"] for row in table_rows]
    assert min(deficits) < deficits[-1]  # the box of every point (walls too) is worse
    # with the walls seen from as close as the table, the best box takes the whole room
    focus, _ = choose_focus(points, np.full(len(points), 0.008), voxel_of, 4.0, pad=0.05, limit=limit)
    assert focus[0, 0] < -1.9 and focus[1, 0] > 1.9


def test_percentile_box():
    pts = np.stack([np.arange(101.0), np.zeros(101), np.arange(101.0) * 2], axis=1)
    np.testing.assert_allclose(percentile_box(pts, 1.0), [[1.0, 0.0, 2.0], [99.0, 0.0, 198.0]])


@pytest.mark.parametrize("box, words", [
    ([[0, 0, 0], [1, 1]], "must be"),
    ([[0, 0, 0], [1, 1, 1], [2, 2, 2]], "finite numbers"),
    ([[0, 0, 0], [1, 0, 1]], "min < max"),
    ([[0, 0, "a"], [1, 1, 1]], "must be"),
    ([[0, 0, float("nan")], [1, 1, 1]], "finite"),
])
def test_bad_boxes_are_refused_by_name(box, words):
    with pytest.raises(ValueError, match="bounds.focus") as err:
        check_box(box, "bounds.focus")
    assert words in str(err.value)
    with pytest.raises(ValueError):
        BoundsConfig(focus=box)


def test_bounds_config_checks_its_settings():
    with pytest.raises(ValueError, match="mode"):
        BoundsConfig(mode="gt")
    with pytest.raises(ValueError, match=">= 1"):
        BoundsConfig(pass_iterations=0)
    assert BoundsConfig(outer=[[0, 0, 0], [1, 2, 3]]).outer == [[0.0, 0.0, 0.0], [1.0, 2.0, 3.0]]


def test_outlier_cameras():
    from semfield.scene.bounds import outlier_cameras

    c2w = _ring_cameras([0.0, 0.0, 0.5], radius=1.5, n=16)
    assert not outlier_cameras(c2w).any()
    c2w[5, :3, 3] = [1.0e4, 0.0, 0.0]
    c2w[9, :3, 3] = [0.0, 30.0, 1.0]
    assert np.flatnonzero(outlier_cameras(c2w)).tolist() == [5, 9]
    assert not outlier_cameras(c2w[:3]).any()  # too few to judge
