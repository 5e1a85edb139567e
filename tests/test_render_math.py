"""Pure rendering maths: camera rays, ray/box intersection, sample placement and compositing.

Each function is checked against hand-worked cases and against an explicit reference written here.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semfield.render.composite import alpha_from_density, composite, expected_depth, weights_from_alpha
from semfield.render.rays import camera_directions, image_rays, rays_from_pixels, undistort_opencv
from semfield.render.sampling import ray_aabb
from semfield.scene.convention import look_at
from semfield.scene.types import Intrinsics

INTR = Intrinsics(width=8, height=6, fx=10.0, fy=12.0, cx=4.0, cy=3.0)


def _c2w() -> torch.Tensor:
    return torch.tensor(look_at(np.array([2.0, -1.0, 1.5]), np.array([0.0, 0.2, 0.3])), dtype=torch.float32)


def _project(c2w: torch.Tensor, intr: Intrinsics, p: torch.Tensor):
    """World point ``[3]`` → pixel ``(u, v)`` and camera depth z (pinhole, OpenCV axes)."""
    pc = c2w[:3, :3].T @ (p - c2w[:3, 3])
    return intr.fx * pc[0] / pc[2] + intr.cx, intr.fy * pc[1] / pc[2] + intr.cy, pc[2]


def _distort(x, y, k):
    """Forward OpenCV radial-tangential model (k1, k2, p1, p2) on normalised coordinates."""
    k1, k2, p1, p2 = k
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
            y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y)


# ----- rays ----------------------------------------------------------------------------------------------
def test_principal_point_gives_optical_axis():
    c2w = _c2w()
    o, d, zpt = rays_from_pixels(c2w, INTR, torch.tensor([INTR.cx]), torch.tensor([INTR.cy]))
    torch.testing.assert_close(d[0], c2w[:3, 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(o[0], c2w[:3, 3])
    assert zpt[0].item() == pytest.approx(1.0, abs=1e-7)


def test_camera_directions_have_unit_z_and_follow_pixel_offsets():
    u = torch.tensor([4.0, 14.0, 4.0, -6.0])
    v = torch.tensor([3.0, 3.0, 15.0, -9.0])
    d = camera_directions(INTR, u, v)
    torch.testing.assert_close(d, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0],
                                                [-1.0, -1.0, 1.0]]))


def test_rays_have_unit_directions():
    _, d, _ = image_rays(_c2w(), INTR)
    assert d.shape == (INTR.width * INTR.height, 3)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(d.shape[0]), atol=1e-6, rtol=0)


def test_image_ray_through_pixel_hits_projected_world_point():
    c2w = _c2w()
    R, eye = c2w[:3, :3], c2w[:3, 3]
    origins, dirs, zpt = image_rays(c2w, INTR)
    for i, j, z in [(0, 0, 1.0), (5, 2, 2.5), (7, 5, 0.7)]:  # column, row, camera depth
        u, v = i + 0.5, j + 0.5
        p = R @ torch.tensor([(u - INTR.cx) / INTR.fx * z, (v - INTR.cy) / INTR.fy * z, z]) + eye
        pu, pv, pz = _project(c2w, INTR, p)  # the point really projects into that pixel centre
        assert (pu.item(), pv.item(), pz.item()) == pytest.approx((u, v, z), abs=1e-5)
        r = j * INTR.width + i  # row-major
        t = z / zpt[r]  # planar depth = t * z_per_t
        torch.testing.assert_close(origins[r] + t * dirs[r], p, atol=1e-5, rtol=0)


def test_rays_from_pixels_hits_arbitrary_world_point():
    c2w = _c2w()
    p = torch.tensor([0.3, 0.1, 0.4])
    u, v, z = _project(c2w, INTR, p)
    o, d, zpt = rays_from_pixels(c2w, INTR, u[None], v[None])
    torch.testing.assert_close(o[0] + (z / zpt[0]) * d[0], p, atol=1e-5, rtol=0)


def test_z_per_t_gives_planar_depth():
    torch.manual_seed(0)
    c2w = _c2w()
    u, v = torch.rand(50) * INTR.width, torch.rand(50) * INTR.height
    o, d, zpt = rays_from_pixels(c2w, INTR, u, v)
    t = torch.rand(50) * 3 + 0.1
    pts = o + t[:, None] * d
    z_cam = (pts - c2w[:3, 3]) @ c2w[:3, 2]  # camera-space z of the point
    torch.testing.assert_close(z_cam, t * zpt, atol=1e-5, rtol=1e-5)
    assert (zpt > 0).all() and (zpt <= 1).all()


@pytest.mark.parametrize("k", [(-0.1, 0.01, 0.001, -0.0005), (-0.3, 0.1, 0.001, 0.001), (0.05, -0.01, -0.002, 0.003)])
def test_undistort_inverts_opencv_model(k):
    torch.manual_seed(1)
    x = (torch.rand(500, dtype=torch.float64) * 2 - 1) * 0.6
    y = (torch.rand(500, dtype=torch.float64) * 2 - 1) * 0.45
    xd, yd = _distort(x, y, k)
    xu, yu = undistort_opencv(xd, yd, k)
    torch.testing.assert_close(xu, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(yu, y, atol=1e-6, rtol=0)


def test_undistort_converges_for_pincushion_at_corner():
    k = (0.2, 0.05, 0.002, 0.001)
    x = torch.tensor([0.8, 1.0], dtype=torch.float64)
    y = torch.tensor([0.6, 0.75], dtype=torch.float64)
    xd, yd = _distort(x, y, k)
    xu, yu = undistort_opencv(xd, yd, k)
    torch.testing.assert_close(xu, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(yu, y, atol=1e-6, rtol=0)


def test_distorted_camera_pixel_back_projects_through_distorted_point():
    k = (-0.2, 0.03, 0.001, -0.002)
    intr = Intrinsics(width=8, height=6, fx=10.0, fy=12.0, cx=4.0, cy=3.0, model="OPENCV", distortion=k)
    x, y = torch.tensor([0.25, -0.1]), torch.tensor([-0.15, 0.2])
    xd, yd = _distort(x.double(), y.double(), k)
    u, v = (xd * intr.fx + intr.cx).float(), (yd * intr.fy + intr.cy).float()
    d = camera_directions(intr, u, v)
    torch.testing.assert_close(d[:, 0], x, atol=1e-5, rtol=0)
    torch.testing.assert_close(d[:, 1], y, atol=1e-5, rtol=0)


# ----- ray / box ---------------------------------------------------------------------------------------
BOX = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_ray_aabb_hand_worked():
    o = torch.tensor([[-3.0, 0.0, 0.0],   # axis-parallel, hits x faces
                      [0.0, 0.0, 0.0],    # inside the box
                      [-3.0, 2.0, 0.0],   # axis-parallel, passes beside the box
                      [3.0, 0.0, 0.0],    # box behind the ray
                      [-3.0, -3.0, 0.0],  # diagonal through two edges
                      [0.0, 0.0, 5.0]])   # straight down, not unit length
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0],
                      [1.0, 1.0, 0.0], [0.0, 0.0, -2.0]])
    near, far, hit = ray_aabb(o, d, BOX)
    assert hit.tolist() == [True, True, False, False, True, True]
    torch.testing.assert_close(near[hit], torch.tensor([2.0, 0.0, 2.0, 2.0]))
    torch.testing.assert_close(far[hit], torch.tensor([4.0, 1.0, 4.0, 3.0]))
    torch.testing.assert_close(far[~hit], near[~hit])  # misses get near = far


def test_ray_aabb_near_min_clamps_entry():
    near, far, hit = ray_aabb(torch.tensor([[0.0, 0.5, 0.0]]), torch.tensor([[0.0, -1.0, 0.0]]), BOX, near_min=0.3)
    assert hit.item() and near.item() == pytest.approx(0.3) and far.item() == pytest.approx(1.5)


def test_ray_aabb_negative_axis_direction():
    near, far, hit = ray_aabb(torch.tensor([[0.2, 0.3, 4.0]]), torch.tensor([[0.0, 0.0, -1.0]]), BOX)
    assert hit.item() and near.item() == pytest.approx(3.0) and far.item() == pytest.approx(5.0)


# ----- sample_steps (occupancy marching) -------------------------------------------------------------
def test_sample_steps_cover_each_ray_exactly():
    from semfield.field.renderer import sample_steps

    near, far = torch.tensor([0.5, 1.0, 2.0]), torch.tensor([1.5, 1.3, 2.0])  # last ray has zero length
    t, deltas = sample_steps(near, far, step=0.1, max_samples=64, stratified=False)
    assert t.shape == deltas.shape == (3, 10)  # the longest ray needs ceil(1.0 / 0.1) steps
    torch.testing.assert_close(deltas.sum(1), far - near)
    assert (t >= near[:, None] - 1e-6).all() and (t <= far[:, None] + 1e-6).all()
    assert (t[:, 1:] >= t[:, :-1]).all()
    torch.testing.assert_close(t[0, :3], torch.tensor([0.55, 0.65, 0.75]))  # step midpoints
    assert (deltas[2] == 0).all() and (deltas[1, 3:] == 0).all()  # nothing past far


def test_sample_steps_stratified_jitter_stays_in_its_step():
    from semfield.field.renderer import sample_steps

    g = torch.Generator().manual_seed(0)
    near, far = torch.zeros(200), torch.full((200,), 1.0)
    t, _ = sample_steps(near, far, step=0.125, max_samples=64, stratified=True, generator=g)
    k = torch.arange(8, dtype=torch.float32)
    assert ((t >= k * 0.125) & (t <= (k + 1) * 0.125)).all()
    assert float((t - (k + 0.5) * 0.125).abs().max()) > 0.03  # really jittered


def test_sample_steps_cap_stretches_steps_of_long_rays():
    from semfield.field.renderer import sample_steps

    t, deltas = sample_steps(torch.tensor([0.0]), torch.tensor([10.0]), step=0.01, max_samples=50,
                             stratified=False)
    assert t.shape == (1, 50)
    torch.testing.assert_close(deltas, torch.full((1, 50), 0.2))


# ----- compositing -------------------------------------------------------------------------------------
def test_weights_hand_worked():
    alpha = torch.tensor([[0.5, 0.5, 1.0], [0.0, 0.0, 0.0]])
    w, t_final, trans = weights_from_alpha(alpha, return_transmittance=True)
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(trans, torch.tensor([[1.0, 0.5, 0.25], [1.0, 1.0, 1.0]]))
    torch.testing.assert_close(t_final, torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    w2, t2 = weights_from_alpha(alpha)
    torch.testing.assert_close(w2, w)
    torch.testing.assert_close(t2, t_final)


def test_weights_sum_to_one_minus_final_transmittance():
    torch.manual_seed(0)
    alpha = torch.rand(20, 32) * 0.3
    w, t_final = weights_from_alpha(alpha)
    torch.testing.assert_close(w.sum(-1), 1 - t_final, atol=1e-6, rtol=0)
    torch.testing.assert_close(t_final, torch.prod(1 - alpha, dim=-1), atol=1e-6, rtol=1e-5)


def test_alpha_from_density():
    sigma = torch.tensor([[0.0, 1.0, 2.0]])
    deltas = torch.tensor([[1.0, 0.5, 0.25]])
    torch.testing.assert_close(alpha_from_density(sigma, deltas), 1 - torch.exp(torch.tensor([[0.0, -0.5, -0.5]])))


def test_composite_matches_explicit_loop():
    torch.manual_seed(0)
    alpha = torch.rand(4, 6) * 0.6
    values = torch.rand(4, 6, 5)
    w, _ = weights_from_alpha(alpha)
    ref = torch.zeros(4, 5)
    for r in range(4):
        trans = 1.0
        for s in range(6):
            ref[r] += trans * alpha[r, s] * values[r, s]
            trans *= 1 - alpha[r, s].item()
    torch.testing.assert_close(composite(w, values), ref, atol=1e-6, rtol=1e-5)


def test_expected_depth_puts_missing_mass_at_far():
    w = torch.tensor([[0.2, 0.3], [0.0, 0.0], [0.5, 0.5]])
    t = torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 3.0]])
    far = torch.tensor([5.0, 7.0, 9.0])
    torch.testing.assert_close(expected_depth(w, t, far), torch.tensor([0.2 + 0.6 + 0.5 * 5.0, 7.0, 2.0]))


def test_weights_gradient_gradcheck():
    torch.manual_seed(0)
    alpha = (torch.rand(3, 5, dtype=torch.float64) * 0.8 + 0.05).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: weights_from_alpha(a), (alpha,))
    assert torch.autograd.gradcheck(lambda a: weights_from_alpha(a, return_transmittance=True), (alpha,))


def test_distortion_loss_matches_quadratic_definition():
    from semfield.render.composite import distortion_loss

    g = torch.Generator().manual_seed(3)
    w = torch.rand(4, 9, generator=g, dtype=torch.float64)
    t = torch.sort(torch.rand(4, 9, generator=g, dtype=torch.float64) * 5).values
    d = torch.rand(4, 9, generator=g, dtype=torch.float64) * 0.1
    ref = (w[:, :, None] * w[:, None, :] * (t[:, :, None] - t[:, None, :]).abs()).sum((1, 2))
    ref = ref + (w**2 * d).sum(1) / 3
    torch.testing.assert_close(distortion_loss(w, t, d), ref)


def test_distortion_loss_prefers_concentrated_weight():
    from semfield.render.composite import distortion_loss

    t = torch.linspace(0.05, 0.95, 10)[None]
    d = torch.full_like(t, 0.1)
    spread = torch.full_like(t, 0.1)
    peak = torch.zeros_like(t)
    peak[0, 4] = 1.0
    assert float(distortion_loss(peak, t, d)) < float(distortion_loss(spread, t, d)) / 5


def test_median_depth_hand_cases():
    from semfield.render.composite import median_depth

    t = torch.tensor([[1.0, 2.0, 3.0, 4.0]] * 3)
    w = torch.tensor([[0.1, 0.3, 0.5, 0.1],    # cumulative 0.1, 0.4, 0.9: median at t=3
                      [0.5, 0.0, 0.0, 0.0],    # reaches 1/2 exactly at the first sample
                      [0.1, 0.1, 0.1, 0.1]])   # never reaches 1/2: the boundary behind
    far = torch.tensor([9.0, 9.0, 9.0])
    torch.testing.assert_close(median_depth(w, t, far), torch.tensor([3.0, 1.0, 9.0]))
    # a thin veil in front does not move it, unlike the expected depth
    veil = torch.tensor([[0.05, 0.05, 0.9, 0.0]])
    assert median_depth(veil, t[:1], far[:1]).item() == 3.0


def test_near_opacity_sums_only_samples_in_front():
    from semfield.render.composite import near_opacity

    alpha = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.0, 0.5]])
    t = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4]])
    torch.testing.assert_close(near_opacity(alpha, t, 0.25), torch.tensor([0.3, 0.5]))
    torch.testing.assert_close(near_opacity(alpha, t, torch.tensor([0.05, 0.5])), torch.tensor([0.0, 1.0]))
