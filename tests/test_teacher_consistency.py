"""The teacher-consistency ceiling: projection round trips and hand-made feature fields with known answers."""

import math

import torch

from semfield.eval.teacher_consistency import (
    Camera,
    cross_view_consistency,
    lift_cell_centres,
    project,
    rank_ceiling,
)
from semfield.train.features import FeatureTargets


def _look_down(x: float, y: float, height: float = 2.0) -> Camera:
    """A 64×64 camera at (x, y, height) looking straight down (OpenCV axes: z forward = -world z)."""
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, :3] = torch.tensor([[1.0, 0, 0], [0, -1.0, 0], [0, 0, -1.0]], dtype=torch.float64)
    c2w[:3, 3] = torch.tensor([x, y, height], dtype=torch.float64)
    return Camera(c2w=c2w, fx=64.0, fy=64.0, cx=32.0, cy=32.0, width=64, height=64)


def _plane_map(cam: Camera, field, h: int = 16, w: int = 16) -> torch.Tensor:
    """A teacher map ``[h, w, D]`` of the ground plane z = 0 whose features are ``field(world_xy)``."""
    depth = torch.full((cam.height, cam.width), float(cam.c2w[2, 3]))
    pts, _ = lift_cell_centres(cam, depth, (h, w))
    return field(pts[:, :2]).reshape(h, w, -1).float(), depth


def _targets(maps) -> FeatureTargets:
    return FeatureTargets(list(maps), [(64, 64)] * len(maps))


def test_lift_then_project_returns_the_cell_centres():
    cam = _look_down(0.1, -0.2)
    depth = torch.full((64, 64), 2.0)
    pts, valid = lift_cell_centres(cam, depth, (8, 8))
    assert valid.all() and torch.allclose(pts[:, 2], torch.zeros(64, dtype=torch.float64), atol=1e-12)
    u, v, z = project(cam, pts)
    assert torch.allclose(z, torch.full_like(z, 2.0))
    assert torch.allclose(u[:8], torch.arange(8, dtype=torch.float64) * 8 + 4)  # cell centres of the top row
    assert torch.allclose(v[::8], torch.arange(8, dtype=torch.float64) * 8 + 4)
    # a pixel one metre right of the camera at 2 m depth lands fx / 2 pixels right of the centre
    u1, _, _ = project(cam, torch.tensor([[1.1, -0.2, 0.0]], dtype=torch.float64))
    assert math.isclose(float(u1[0]), 32.0 + 32.0)


def test_a_view_independent_teacher_is_fully_consistent():
    def field(xy):  # smooth, 3 channels, positive
        return torch.stack([1 + 0.0 * xy[:, 0], torch.sin(xy[:, 0]), torch.cos(xy[:, 1])], dim=-1)

    target = _look_down(0.0, 0.0)
    sources = [_look_down(0.3, 0.0), _look_down(-0.2, 0.25)]
    tmap, tdepth = _plane_map(target, field)
    smaps, sdepths = zip(*(_plane_map(c, field) for c in sources))
    res = cross_view_consistency(tmap, target, tdepth, _targets(smaps), sources, list(sdepths))
    assert res["points"] > 100 and 1.0 < res["views_per_point"] <= 2.0
    assert res["pair_cosine"] > 0.999 and res["mean_view_cosine"] > 0.999


def test_view_dependent_features_lower_the_ceiling_and_averaging_helps():
    def field_for(view_vector):  # a shared component plus one that each view sees differently
        return lambda xy: torch.cat([torch.ones(xy.shape[0], 1), view_vector.expand(xy.shape[0], 2)], dim=-1)

    target = _look_down(0.0, 0.0)
    sources = [_look_down(0.1, 0.0), _look_down(-0.1, 0.0)]
    tmap, tdepth = _plane_map(target, field_for(torch.tensor([[0.0, 0.0]])))
    smaps, sdepths = zip(*(_plane_map(c, field_for(vec)) for c, vec in
                           zip(sources, (torch.tensor([[1.0, 0.0]]), torch.tensor([[-1.0, 0.0]])))))
    res = cross_view_consistency(tmap, target, tdepth, _targets(smaps), sources, list(sdepths))
    # each source: (1, ±1, 0) against (1, 0, 0): cosine 1/sqrt(2); their mean (1, 0, 0) where both see it
    assert math.isclose(res["pair_cosine"], 1 / math.sqrt(2), rel_tol=1e-5)
    assert res["mean_view_cosine"] > res["pair_cosine"]


def test_direction_weighting_recovers_a_teacher_that_varies_with_the_viewing_direction():
    # three sources look down from x = -0.5, 0 (over the target) and +0.5; each sees the plane as a shared
    # component plus a view-specific one: (1, 1, 0), (1, 0, 0) and (1, -1, 0). The target, also over x = 0 at
    # the same height, sees (1, 0, 0): nearest in viewing direction is the middle source, which agrees with it.
    def field_for(view_vector):
        return lambda xy: torch.cat([torch.ones(xy.shape[0], 1), view_vector.expand(xy.shape[0], 2)], dim=-1)

    target = _look_down(0.0, 0.0)
    sources = [_look_down(-0.5, 0.0), _look_down(0.0, 0.0), _look_down(0.5, 0.0)]
    vectors = (torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[-1.0, 0.0]]))
    tmap, tdepth = _plane_map(target, field_for(torch.tensor([[0.0, 0.0]])))
    smaps, sdepths = zip(*(_plane_map(c, field_for(v)) for c, v in zip(sources, vectors)))
    res = cross_view_consistency(tmap, target, tdepth, _targets(smaps), sources, list(sdepths),
                                 direction_kappas=(0.0, 1000.0))
    by_dir = res["direction_weighted_cosine"]
    assert math.isclose(by_dir["0.0"], res["mean_view_cosine"], rel_tol=1e-5)  # kappa 0: the plain mean
    # where only the outer sources see a point their mean is (1, 0, 0) too, so the plain mean's shortfall comes
    # from points seen by the middle source and one outer one: (1, ±0.5, 0), cosine 2/sqrt(5)
    assert res["mean_view_cosine"] < 0.99
    assert by_dir["1000.0"] > 0.999  # the middle source (same viewing direction) dominates
    assert res["pair_cosine"] < res["mean_view_cosine"] < by_dir["1000.0"]


def test_occluded_points_are_not_compared():
    target = _look_down(0.0, 0.0)
    source = _look_down(0.0, 0.0)
    tmap, tdepth = _plane_map(target, lambda xy: torch.ones(xy.shape[0], 2))
    blocked = torch.full((64, 64), 1.0)  # something at 1 m hides the plane at 2 m
    res = cross_view_consistency(tmap, target, tdepth, _targets([tmap]), [source], [blocked])
    assert res["points"] == 0 and math.isnan(res["pair_cosine"])


def test_rank_ceiling():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 16, generator=g))[0][:, :3]  # features live in 3 directions
    train = 5.0 + torch.randn(500, 3, generator=g) @ basis.T
    test = 5.0 + torch.randn(100, 3, generator=g) @ basis.T
    ceil = rank_ceiling(train, test, [1, 3, 8])
    assert ceil[3] > 0.9999 and ceil[8] > 0.9999
    assert ceil[1] < ceil[3]
