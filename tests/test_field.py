"""The grid field: warped axes, trilinear corners, sparse grids with lazy Adam, GridField and render_rays.

References: ``F.grid_sample(align_corners=True)`` for interpolation, dense parameters with plain autograd
and ``torch.optim.Adam`` for the sparse grid, finite differences for gradients w.r.t. rays.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from semfield.field import FieldConfig, GridField, HeadConfig
from semfield.field.renderer import RenderOptions, render_image, render_rays, sample_steps
from semfield.field.sparse_grid import SparseGrid
from semfield.field.warp import make_axis, trilinear_corners, vertex_to_world, world_to_vertex
from semfield.render.rays import image_rays
from semfield.scene.convention import look_at
from semfield.scene.types import Intrinsics

OUTER = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
FOCUS = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]


def ropts(**kw) -> RenderOptions:
    """RenderOptions with the given settings, ignoring those the current renderer does not have (its
    sampling settings are being reworked; these tests check behaviour, not the sampling scheme)."""
    names = {f.name for f in dataclasses.fields(RenderOptions)}
    return RenderOptions(**{k: v for k, v in kw.items() if k in names})


OPTS = ropts(max_samples=256)


def make_field(heads=None, **cfg) -> GridField:
    return GridField(FieldConfig(focus_voxel=0.1, heads=heads or {}, **cfg), outer_aabb=OUTER, focus_aabb=FOCUS)


# ----- warp --------------------------------------------------------------------------------------------
AXES = [
    make_axis((-1.0, 1.0), (-0.5, 0.5), 0.1, 4.0),
    make_axis((-2.0, 3.0), (-0.3, 1.1), 0.07, 3.0),
    make_axis((0.0, 2.0), (0.0, 0.9), 0.1, 4.0),    # no lower outer segment
    make_axis((-1.0, 1.0), (-1.0, 1.0), 0.25, 4.0),  # focus == outer: uniform
]


@pytest.mark.parametrize("axis", AXES)
def test_warp_round_trip(axis):
    torch.manual_seed(0)
    u = torch.rand(300, dtype=torch.float64) * (axis.vertices - 1)
    torch.testing.assert_close(world_to_vertex(vertex_to_world(u, axis), axis), u, atol=1e-9, rtol=0)
    lo, hi = axis.breaks[0], axis.breaks[3]
    x = lo + torch.rand(300, dtype=torch.float64) * (hi - lo)
    torch.testing.assert_close(vertex_to_world(world_to_vertex(x, axis), axis), x, atol=1e-9, rtol=0)
    ends = world_to_vertex(torch.tensor([lo, hi], dtype=torch.float64), axis)
    torch.testing.assert_close(ends, torch.tensor([0.0, axis.vertices - 1.0], dtype=torch.float64))


@pytest.mark.parametrize("axis", AXES)
def test_warp_continuous_and_monotone_at_segment_borders(axis):
    n0, n1, _ = axis.cells
    for b, v in [(axis.breaks[1], n0), (axis.breaks[2], n0 + n1)]:
        x = torch.tensor([b - 1e-9, b, b + 1e-9], dtype=torch.float64)
        u = world_to_vertex(x, axis)
        torch.testing.assert_close(u, torch.full_like(u, float(v)), atol=1e-6, rtol=0)
    x = torch.linspace(axis.breaks[0], axis.breaks[3], 1001, dtype=torch.float64)
    assert (world_to_vertex(x, axis).diff() > 0).all()


def test_finest_cell_is_about_focus_voxel():
    for axis, voxel, factor in [(AXES[0], 0.1, 4.0), (AXES[1], 0.07, 3.0), (AXES[2], 0.1, 4.0)]:
        assert 0.9 * voxel < axis.finest() <= voxel + 1e-12
        b, c = axis.breaks, axis.cells
        for seg in (0, 2):
            if c[seg]:
                assert (b[seg + 1] - b[seg]) / c[seg] <= voxel * factor + 1e-12
    assert AXES[0].cells == (2, 10, 2) and AXES[0].vertices == 15


def test_axis_with_focus_equal_to_outer():
    axis = AXES[3]
    assert axis.cells == (0, 8, 0) and axis.vertices == 9
    assert axis.finest() == pytest.approx(0.25)
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, -1.25, 1.25], dtype=torch.float64)
    torch.testing.assert_close(world_to_vertex(x, axis),
                               torch.tensor([0.0, 2.0, 4.0, 8.0, -1.0, 9.0], dtype=torch.float64))


# ----- trilinear corners -------------------------------------------------------------------------------
def _grid_sample_ref(values, shape, ucoords):
    """Trilinear interpolation by F.grid_sample of vertex coordinates ``[P, 3]`` (x-major storage)."""
    nx, ny, nz = shape
    vol = values.view(nx, ny, nz, -1).permute(3, 0, 1, 2)[None]  # [1, C, D=x, H=y, W=z]
    n = torch.tensor([nx, ny, nz], dtype=values.dtype)
    g = 2 * ucoords / (n - 1) - 1
    grid = g[:, [2, 1, 0]].view(1, 1, 1, -1, 3)  # grid_sample wants (W, H, D) = (z, y, x)
    return F.grid_sample(vol, grid, mode="bilinear", align_corners=True)[0, :, 0, 0].T


def _interp(values, idx, w):
    return (values[idx] * w[..., None]).sum(1)


def _axes_uniform():
    return tuple(make_axis((lo, hi), (lo, hi), 0.2, 4.0) for lo, hi in [(-1.0, 1.0), (-0.5, 0.5), (0.0, 0.6)])


def _axes_warped():
    return (make_axis((-1.0, 1.0), (-0.5, 0.5), 0.1, 4.0), make_axis((-2.0, 3.0), (-0.3, 1.1), 0.2, 3.0),
            make_axis((0.0, 2.0), (0.0, 0.9), 0.15, 4.0))


def _random_points(axes, n, gen):
    lo = torch.tensor([a.breaks[0] for a in axes], dtype=torch.float64)
    hi = torch.tensor([a.breaks[3] for a in axes], dtype=torch.float64)
    pts = lo + torch.rand(n, 3, dtype=torch.float64, generator=gen) * (hi - lo)
    # include the box corners and points on faces
    extra = torch.stack([lo, hi, torch.where(torch.tensor([True, False, True]), lo, hi)])
    return torch.cat([pts, extra])


@pytest.mark.parametrize("which", ["uniform", "warped"])
def test_trilinear_matches_grid_sample(which):
    gen = torch.Generator().manual_seed(0)
    axes = _axes_uniform() if which == "uniform" else _axes_warped()
    shape = tuple(a.vertices for a in axes)
    values = torch.randn(math.prod(shape), 4, dtype=torch.float64, generator=gen)
    pts = _random_points(axes, 200, gen)
    idx, w, inside = trilinear_corners(pts, axes)
    assert idx.shape == (pts.shape[0], 8) and idx.dtype == torch.int64 and w.shape == (pts.shape[0], 8)
    assert inside.all()
    torch.testing.assert_close(w.sum(-1), torch.ones(pts.shape[0], dtype=torch.float64), atol=1e-12, rtol=0)
    assert (w >= 0).all()
    u = torch.stack([world_to_vertex(pts[:, d], axes[d]) for d in range(3)], dim=-1)
    if which == "uniform":  # vertex coordinates are then simply an affine map of world coordinates
        lo = torch.tensor([a.breaks[0] for a in axes], dtype=torch.float64)
        torch.testing.assert_close(u, (pts - lo) / 0.2, atol=1e-9, rtol=0)
    torch.testing.assert_close(_interp(values, idx, w), _grid_sample_ref(values, shape, u), atol=1e-10, rtol=0)


def test_trilinear_reproduces_affine_world_function_on_warped_grid():
    axes = _axes_warped()
    pos = torch.stack(torch.meshgrid(*[vertex_to_world(torch.arange(a.vertices, dtype=torch.float64), a)
                                       for a in axes], indexing="ij"), dim=-1).reshape(-1, 3)
    coef = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    values = (pos @ coef + 0.5)[:, None]
    pts = _random_points(axes, 100, torch.Generator().manual_seed(1))
    idx, w, _ = trilinear_corners(pts, axes)
    torch.testing.assert_close(_interp(values, idx, w)[:, 0], pts @ coef + 0.5, atol=1e-9, rtol=0)


def test_points_outside_get_zero_weights():
    axes = _axes_warped()
    pts = torch.tensor([[-1.01, 0.0, 0.5], [0.0, 3.5, 0.5], [0.0, 0.0, -0.1], [5.0, 5.0, 5.0], [0.0, 0.0, 0.5]],
                       dtype=torch.float64)
    idx, w, inside = trilinear_corners(pts, axes)
    assert inside.tolist() == [False, False, False, False, True]
    assert (w[:4] == 0).all()
    n = math.prod(a.vertices for a in axes)
    assert (idx >= 0).all() and (idx < n).all()


def test_trilinear_weights_differentiable_wrt_points():
    gen = torch.Generator().manual_seed(2)
    axes = _axes_warped()
    values = torch.randn(math.prod(a.vertices for a in axes), 1, dtype=torch.float64, generator=gen)
    pts = torch.tensor([[0.13, 0.27, 0.41], [-0.71, 2.1, 1.3], [0.42, -1.3, 0.07]], dtype=torch.float64)

    def f(p):
        idx, w, _ = trilinear_corners(p, axes)
        return _interp(values, idx, w)

    assert torch.autograd.gradcheck(f, (pts.clone().requires_grad_(),))


# ----- SparseGrid ---------------------------------------------------------------------------------------
def _lookup_case(V=20, C=3, P=30, K=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    K = K or V
    idx = torch.randint(0, K, (P, 8), generator=gen)
    idx[:K, 0] = torch.arange(K)  # every row below K is touched
    w = torch.rand(P, 8, generator=gen) + 0.1
    values = torch.randn(V, C, generator=gen)
    target = torch.randn(P, C, generator=gen)
    return values, idx, w, target


def test_sparse_lookup_equals_gather_sum():
    values, idx, w, _ = _lookup_case()
    grid = SparseGrid(values.clone(), lr=0.1)
    torch.testing.assert_close(grid.lookup(idx, w), _interp(values, idx, w))
    torch.testing.assert_close(grid.lookup_nograd(idx, w), _interp(values, idx, w))


@pytest.mark.parametrize("width", [3, 40])  # narrow grids and wide ones (heads) accumulate differently
def test_sparse_accumulated_grad_equals_dense_autograd(width):
    values, idx, w, target = _lookup_case(C=width)
    grid = SparseGrid(values.clone(), lr=0.1)
    loss = ((grid.lookup(idx, w) - target) ** 2).sum()
    loss.backward()
    dense = values.clone().requires_grad_()
    ((_interp(dense, idx, w) - target) ** 2).sum().backward()
    torch.testing.assert_close(grid.grad, dense.grad, atol=1e-5, rtol=1e-5)
    assert grid.touched.tolist() == [True] * values.shape[0]
    # a second backward accumulates
    ((grid.lookup(idx, w) - target) ** 2).sum().backward()
    torch.testing.assert_close(grid.grad, 2 * dense.grad, atol=1e-5, rtol=1e-5)


def test_sparse_grad_wrt_weights_equals_autograd():
    values, idx, w, target = _lookup_case()
    grid = SparseGrid(values.clone(), lr=0.1)
    w1 = w.clone().requires_grad_()
    ((grid.lookup(idx, w1) - target) ** 2).sum().backward()
    w2 = w.clone().requires_grad_()
    ((_interp(values, idx, w2) - target) ** 2).sum().backward()
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("width", [3, 40])
def test_bagged_lookup_sums_each_bag_with_its_gradient(width):
    """``lookup(..., bags=(bag, B))`` equals the per-point lookup summed per bag (empty bags give zeros),
    values, weight and grid gradients included."""
    values, idx, w, _ = _lookup_case(C=width)
    P = idx.shape[0]
    bag = torch.sort(torch.randint(0, 4, (P,), generator=torch.Generator().manual_seed(3)))[0]
    bag[bag == 2] = 1  # bags 2 and 4 stay empty
    target = torch.randn(5, width, generator=torch.Generator().manual_seed(4))
    grid = SparseGrid(values.clone(), lr=0.1)
    w1 = w.clone().requires_grad_()
    bagged = grid.lookup(idx, w1, bags=(bag, 5))
    ((bagged - target) ** 2).sum().backward()
    dense = values.clone().requires_grad_()
    w2 = w.clone().requires_grad_()
    reference = torch.zeros(5, width).index_add(0, bag, _interp(dense, idx, w2))
    ((reference - target) ** 2).sum().backward()
    torch.testing.assert_close(bagged, reference, atol=1e-5, rtol=1e-5)
    assert bagged[2].abs().max() == 0 and bagged[4].abs().max() == 0
    torch.testing.assert_close(grid.grad, dense.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(w1.grad, w2.grad, atol=1e-4, rtol=1e-5)


def test_sparse_grid_not_trainable_accumulates_nothing():
    values, idx, w, target = _lookup_case()
    grid = SparseGrid(values.clone(), lr=0.1)
    grid.trainable = False
    w1 = w.clone().requires_grad_()
    (grid.lookup(idx, w1) * target).sum().backward()
    assert not grid.touched.any() and (grid.grad == 0).all() and w1.grad is not None


def test_lazy_adam_equals_adam_on_rows_touched_every_step():
    V, K, lr = 20, 12, 0.05
    values, _, _, _ = _lookup_case(V=V, K=K)
    grid = SparseGrid(values.clone(), lr=lr)
    dense = values.clone().requires_grad_()
    opt = torch.optim.Adam([dense], lr=lr, betas=(0.9, 0.99), eps=1e-15)
    for s in range(5):
        _, idx, w, target = _lookup_case(V=V, K=K, seed=10 + s)
        ((grid.lookup(idx, w) - target) ** 2).sum().backward()
        assert grid.step() == K
        opt.zero_grad()
        ((_interp(dense, idx, w) - target) ** 2).sum().backward()
        opt.step()
        assert not grid.touched.any() and (grid.grad == 0).all()
    torch.testing.assert_close(grid.values, dense.detach(), atol=2e-6, rtol=1e-5)
    assert (grid.values[K:] == values[K:]).all()  # untouched rows did not move
    assert (grid.adam[K:] == 0).all()
    assert grid.steps == 5


def test_lazy_adam_rarely_touched_row_uses_grid_step_for_bias_correction():
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-15
    grid = SparseGrid(torch.zeros(3, 2), lr=lr)
    grads = {1: torch.tensor([1.0, -2.0]), 3: torch.tensor([0.5, 0.25])}
    m = torch.zeros(2)
    v = torch.zeros(2)
    expected = torch.zeros(2)
    for s in range(4):
        if s in grads:  # row 0 touched on steps 1 and 3 only; row 1 every step; row 2 never
            g = grads[s]
            grid.add_grad_rows(torch.tensor([0, 1]), torch.stack([g, g]))
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            t = s + 1  # the grid's step count when it applies this update
            expected = expected - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
        else:
            grid.add_grad_rows(torch.tensor([1]), torch.ones(1, 2))
        grid.step()
    torch.testing.assert_close(grid.values[0], expected, atol=1e-6, rtol=1e-5)
    assert grid.steps == 4
    assert (grid.values[2] == 0).all()


def test_shared_second_moments_by_hand():
    """moment_block = 2: each pair of channels shares the mean square of its gradients as Adam's v."""
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-15
    grid = SparseGrid(torch.zeros(2, 4), lr=lr, moment_block=2)
    assert grid.adam_width == 6
    grads = [torch.tensor([1.0, -3.0, 0.5, 0.5]), torch.tensor([-2.0, 0.0, 4.0, 0.0])]
    m, v, expected = torch.zeros(4), torch.zeros(2), torch.zeros(4)
    for t, g in enumerate(grads, start=1):
        grid.add_grad_rows(torch.tensor([1]), g[None])
        assert grid.step() == 1
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * torch.stack([(g[:2] ** 2).mean(), (g[2:] ** 2).mean()])
        root = (v / (1 - b2**t)).sqrt().repeat_interleave(2)  # [1, 1, 2, 2]: each block's channels
        expected = expected - lr * (m / (1 - b1**t)) / (root + eps)
    # first step by hand: v = 0.01 * [5, 0.25] / 0.01 -> sqrt [2.236, 0.5]; m / bc1 = g
    torch.testing.assert_close(grid.values[1], expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(grid.adam[1], torch.cat([m, v]), atol=1e-7, rtol=1e-6)
    assert (grid.values[0] == 0).all() and (grid.adam[0] == 0).all()
    # a block whose channels have equal gradient magnitudes steps exactly as per-channel Adam
    same = SparseGrid(torch.zeros(1, 2), lr=lr, moment_block=2)
    plain = SparseGrid(torch.zeros(1, 2), lr=lr)
    for g in (torch.tensor([[1.0, -1.0]]), torch.tensor([[-0.5, 0.5]])):
        for grid_ in (same, plain):
            grid_.add_grad_rows(torch.tensor([0]), g)
            grid_.step()
    torch.testing.assert_close(same.values, plain.values, atol=1e-7, rtol=1e-6)


def test_shared_moments_load_per_channel_state_and_reject_others():
    values, idx, w, target = _lookup_case()
    old = SparseGrid(values.clone(), lr=0.1)  # a run saved with per-channel moments
    ((old.lookup(idx, w) - target) ** 2).sum().backward()
    old.step()
    state = old.state_tensors("g")
    C = values.shape[1]
    shared = SparseGrid(torch.zeros_like(values), lr=0.1, moment_block=C)
    shared.load_state_tensors(state, "g")
    assert shared.adam.shape == (values.shape[0], C + 1)
    torch.testing.assert_close(shared.adam[:, :C], old.adam[:, :C], rtol=0, atol=0)
    torch.testing.assert_close(shared.adam[:, C], old.adam[:, C:].mean(1), rtol=0, atol=0)
    ((shared.lookup(idx, w) - target) ** 2).sum().backward()
    assert shared.step() > 0  # and it trains on from there
    with pytest.raises(ValueError, match="saved Adam state has 7 columns"):
        SparseGrid(torch.zeros_like(values), lr=0.1, moment_block=C).load_state_tensors(
            {**state, "g.adam": torch.zeros(values.shape[0], 7)}, "g")
    with pytest.raises(ValueError, match="does not divide"):
        SparseGrid(torch.zeros(3, 6), lr=0.1, moment_block=4)


def test_sparse_step_without_gradient_is_noop():
    grid = SparseGrid(torch.ones(4, 2), lr=0.1)
    assert grid.step() == 0
    assert (grid.values == 1).all()


def test_sparse_state_round_trip():
    values, idx, w, target = _lookup_case()
    grid = SparseGrid(values.clone(), lr=0.1)
    for _ in range(2):
        ((grid.lookup(idx, w) - target) ** 2).sum().backward()
        grid.step()
    state = {k: v.clone() for k, v in grid.state_tensors("g").items()}
    assert set(state) == {"g.values", "g.adam", "g.steps", "g.visited"}
    other = SparseGrid(torch.zeros_like(values), lr=0.1)
    other.load_state_tensors(state, "g")
    torch.testing.assert_close(other.values, grid.values, rtol=0, atol=0)
    torch.testing.assert_close(other.adam, grid.adam, rtol=0, atol=0)
    for g in (grid, other):  # both continue identically
        ((g.lookup(idx, w) - target) ** 2).sum().backward()
        g.step()
    torch.testing.assert_close(other.values, grid.values, rtol=0, atol=0)
    assert set(grid.state_tensors("g", moments=False)) == {"g.values", "g.steps", "g.visited"}
    fresh = SparseGrid(torch.zeros_like(values), lr=0.1)
    fresh.load_state_tensors({"g.values": state["g.values"]}, "g")  # no Adam state: starts afresh
    assert (fresh.adam == 0).all() and fresh.adam.shape == (values.shape[0], 2 * values.shape[1]) and fresh.steps == 0


# ----- GridField ----------------------------------------------------------------------------------------
def _vertex_pos(fld):
    return fld.vertex_positions(fld.axes)


def _set_smooth(fld, kind="affine"):
    """Density (σ ≈ 1/m, so every coarse bin is occupied and visible) and colour smooth in world space."""
    p = _vertex_pos(fld)
    if kind == "affine":
        raw = 2.35 + 0.3 * p[:, 0] + 0.2 * p[:, 1] - 0.2 * p[:, 2]
        col = torch.stack([p[:, 0], 0.5 * p[:, 1] - 0.3 * p[:, 2], p.sum(-1) * 0.2], -1)
    else:
        raw = 2.35 + 0.3 * torch.sin(2 * p[:, 0]) + 0.2 * torch.cos(1.5 * p[:, 1] + p[:, 2])
        col = torch.stack([torch.sin(2 * p[:, 0]), torch.cos(p[:, 1] - p[:, 2]), torch.sin(p.sum(-1))], -1)
    fld.density.values = raw[:, None].contiguous()
    vals = torch.zeros_like(fld.color.values)
    vals[:, :3] = col
    vals[:, 3:] = 0.1 * col[:, :1]
    fld.color.values = vals
    fld.refresh_occupancy()


def _randomise_mlp(fld, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in fld.parameters():
            p.normal_(0.0, 0.3)


def _rays():
    o = torch.tensor([[-0.9, 0.03, 0.07], [0.05, -0.9, 0.12], [0.11, 0.23, 0.9], [0.6, 0.7, -0.2]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.1, -1.0], [-1.0, -0.8, 0.3]])
    return o, F.normalize(d, dim=-1), torch.ones(4)


def test_field_output_shapes():
    fld = make_field()
    assert fld.grid_shape == (15, 15, 15)
    assert fld.density.shape == (15 ** 3, 1) and fld.color.shape == (15 ** 3, 12)
    torch.manual_seed(0)
    pts = torch.rand(50, 3) * 2 - 1
    dirs = F.normalize(torch.randn(50, 3), dim=-1)
    idx, w, inside = fld.corners(pts)
    assert idx.shape == (50, 8) and w.shape == (50, 8) and inside.all()
    sigma = fld.sigma(idx, w)
    assert sigma.shape == (50,)
    # fresh field: every point has the initial opacity per finest voxel
    init = fld.config.density_init_alpha
    torch.testing.assert_close(1 - torch.exp(-sigma * fld.final_voxel), torch.full((50,), init), atol=1e-7, rtol=1e-4)
    rgb = fld.rgb(idx, w, dirs)
    assert rgb.shape == (50, 3) and ((rgb > 0) & (rgb < 1)).all()
    assert fld.pooled_raw(pts).shape == (50,)


@pytest.mark.parametrize("latent", [0, 8])
def test_feature_heads_of_any_width(latent):
    heads = {"small": HeadConfig(dim=3, latent=latent), "wide": HeadConfig(dim=37, latent=latent)}
    fld = make_field(heads)
    torch.manual_seed(0)
    for grid in fld.heads.values():
        grid.values.normal_()
    pts = torch.rand(20, 3) * 2 - 1
    for name, dim in [("small", 3), ("wide", 37)]:
        assert fld.heads[name].shape[1] == (latent or dim)
        assert fld.feature(name, pts).shape == (20, dim)
    o, d, z = _rays()
    with torch.no_grad():
        out = render_rays(fld, o, d, z, ropts(max_samples=128, heads=("small", "wide")))
    assert out["small"].shape == (4, 3) and out["wide"].shape == (4, 37)
    assert out["rgb"].shape == (4, 3) and out["depth"].shape == (4,) and out["acc"].shape == (4,)
    assert out["weights"].shape == out["t"].shape and out["t"].shape[0] == 4


@pytest.mark.parametrize("kind,tol", [("affine", 1e-5), ("smooth", 7e-3)])  # O(h^2), h up to 0.25 outside the focus box
def test_resample_to_finer_voxel_keeps_field_and_renders(kind, tol):
    fld = make_field()
    _randomise_mlp(fld)
    _set_smooth(fld, kind)
    torch.manual_seed(0)
    pts = torch.rand(200, 3) * 1.98 - 0.99
    dirs = F.normalize(torch.randn(200, 3), dim=-1)
    o, d, z = _rays()
    with torch.no_grad():
        idx, w, _ = fld.corners(pts)
        raw0, rgb0 = fld.density.lookup_nograd(idx, w), fld.rgb(idx, w, dirs)
        before = render_rays(fld, o, d, z, OPTS)
        fld.resample(0.05)
        assert fld.voxel == 0.05 and fld.final_voxel == 0.1
        assert fld.grid_shape == (27, 27, 27)  # 3 + 20 + 3 cells
        idx, w, _ = fld.corners(pts)
        raw1, rgb1 = fld.density.lookup_nograd(idx, w), fld.rgb(idx, w, dirs)
        after = render_rays(fld, o, d, z, OPTS)
    # trilinear resampling reproduces an affine field exactly, a smooth one to O(h^2) (the colour through the
    # random decoder and its sigmoid: the grid's error of up to 0.04 times the decoder's gain)
    torch.testing.assert_close(raw1, raw0, atol=tol * 3, rtol=0)
    torch.testing.assert_close(rgb1, rgb0, atol=tol * 1.5, rtol=0)
    # renders agree up to the quadrature (the sample spacing may follow the voxel size)
    if after["t"].shape == before["t"].shape:
        torch.testing.assert_close(after["t"], before["t"])
    torch.testing.assert_close(after["rgb"], before["rgb"], atol=2e-3, rtol=0)
    torch.testing.assert_close(after["acc"], before["acc"], atol=2e-3, rtol=0)
    torch.testing.assert_close(after["depth"], before["depth"], atol=1e-2, rtol=0)


def test_from_state_reproduces_renders_exactly():
    heads = {"plain": HeadConfig(dim=5), "lat": HeadConfig(dim=7, latent=3)}
    fld = make_field(heads)
    fld.resample(0.2)  # voxel differs from final_voxel
    _randomise_mlp(fld)
    torch.manual_seed(1)
    for grid in fld.sparse_grids().values():
        grid.values.normal_()
    fld.refresh_occupancy()
    o, d, z = _rays()
    opts = ropts(max_samples=128, heads=("plain", "lat"))
    out = render_rays(fld, o, d, z, opts)  # one training step so the Adam state is not empty
    (out["rgb"].sum() + out["plain"].sum() + out["lat"].sum()).backward()
    for grid in fld.sparse_grids().values():
        assert grid.step() > 0
    fld.refresh_occupancy()
    layout = fld.layout()
    tensors = {k: v.clone() for k, v in fld.state_tensors().items()}
    fld2 = GridField.from_state(layout, tensors)
    assert fld2.voxel == fld.voxel and fld2.final_voxel == fld.final_voxel and fld2.grid_shape == fld.grid_shape
    for name, grid in fld.sparse_grids().items():
        torch.testing.assert_close(fld2.sparse_grids()[name].adam, grid.adam, rtol=0, atol=0)
    with torch.no_grad():
        a = render_rays(fld, o, d, z, opts)
        b = render_rays(fld2, o, d, z, opts)
    for k in ("rgb", "depth", "acc", "weights", "t", "plain", "lat"):
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0)


# ----- render_rays --------------------------------------------------------------------------------------
def _logit(p):
    return math.log(p / (1 - p))


def test_render_opaque_slab_depth_and_colour():
    fld = make_field()
    p = _vertex_pos(fld)
    slab = (p[:, 0] > 0.15) & (p[:, 0] < 0.45)  # opaque vertices at x = 0.2, 0.3, 0.4
    fld.density.values = torch.where(slab, 30.0, -30.0)[:, None].contiguous()
    near_slab = (p[:, 0] > 0.05) & (p[:, 0] < 0.55)  # colour A on the slab and one voxel around it
    col_a, col_b = (0.2, 0.6, 0.9), (0.7, 0.3, 0.1)
    logits = torch.where(near_slab[:, None], torch.tensor([_logit(c) for c in col_a]),
                         torch.tensor([_logit(c) for c in col_b]))
    fld.color.values[:, :3] = logits
    fld.refresh_occupancy()
    o = torch.tensor([[-0.9, 0.03, 0.07], [0.9, -0.33, 0.21], [-0.7, -0.9, 0.0], [-0.8, 0.1, -0.2]])
    d = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.2, 0.1]]), dim=-1)
    zpt = torch.tensor([0.5, 1.0, 1.0, 1.0])
    with torch.no_grad():
        out = render_rays(fld, o, d, zpt, OPTS)
    # slab front faces: opacity ramps up between the empty vertex and the first opaque one
    expected = torch.tensor([1.1, 0.5, float("nan"), 1.1 / d[3, 0].item()])
    hits = torch.tensor([True, True, False, True])
    assert (out["distance"][hits] - expected[hits]).abs().max() < 0.1 / d[3, 0].item()
    torch.testing.assert_close(out["depth"], out["distance"] * zpt)
    assert (out["acc"][hits] > 0.999).all()
    torch.testing.assert_close(out["rgb"][hits], torch.tensor(col_a).expand(3, 3), atol=2e-3, rtol=0)
    # the ray beside the slab sees nothing and ends on the box wall (y = 1) coloured B
    assert out["acc"][2] < 1e-3
    assert out["distance"][2].item() == pytest.approx(1.9, abs=1e-3)
    torch.testing.assert_close(out["rgb"][2], torch.tensor(col_b), atol=2e-3, rtol=0)


def test_packed_occupied_samples_render_like_every_candidate():
    """The renderer keeps only each ray's occupied candidates: colour, depths, opacity and the losses on
    its samples equal a dense composite of every candidate with the empty ones at zero density."""
    from semfield.render.composite import (
        alpha_from_density,
        distortion_loss,
        expected_depth,
        median_depth,
        weights_from_alpha,
    )
    from semfield.render.sampling import ray_aabb

    fld = make_field()
    _randomise_mlp(fld)
    p = _vertex_pos(fld)
    blobs = ((p - torch.tensor([0.2, 0.0, 0.1])).norm(dim=-1) < 0.3) | ((p - torch.tensor([-0.5, 0.4, -0.3])).norm(dim=-1) < 0.2)
    fld.density.values = torch.where(blobs, 2.0, -30.0)[:, None].contiguous()
    torch.manual_seed(1)
    fld.color.values.normal_()
    fld.refresh_occupancy()
    fld.occupancy_ready = True
    o = torch.rand(64, 3) * 1.6 - 0.8
    d = F.normalize(torch.randn(64, 3), dim=-1)
    opts = ropts(max_samples=256, min_transmittance=0.0, min_alpha=0.0)
    with torch.no_grad():
        out = render_rays(fld, o, d, torch.ones(64), opts)
        near, far, _ = ray_aabb(o, d, torch.as_tensor(fld.outer_aabb, dtype=o.dtype), near_min=opts.near)
        t, deltas = sample_steps(near, far, opts.step_voxels * fld.voxel, opts.max_samples, False)
        R, S = t.shape
        pts = (o[:, None] + d[:, None] * t[..., None]).reshape(-1, 3)
        raw_min = fld.raw_for_sigma(-math.log1p(-opts.occupied_alpha) / fld.voxel)
        occupied = (deltas > 0) & (fld.pooled_raw(pts).view(R, S) > raw_min)
        idx, w, _ = fld.corners(pts)
        sigma = fld.sigma(idx, w).view(R, S) * occupied
        weights, t_final = weights_from_alpha(alpha_from_density(sigma, deltas))
        rgb = torch.einsum("rs,rsc->rc", weights, fld.rgb(idx, w, d.repeat_interleave(S, 0)).view(R, S, 3))
        fidx, fw, _ = fld.corners(_boundary_points(fld, o, d))
        rgb = rgb + t_final[:, None] * fld.rgb(fidx, fw, d)
    assert 0 < out["t"].shape[1] < S / 2  # most candidates are empty space
    assert (out["t"].diff(dim=1) >= 0).all()
    torch.testing.assert_close(out["rgb"], rgb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["acc"], weights.sum(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out["distance"], expected_depth(weights, t, far), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["median_distance"], median_depth(weights, t, far))
    torch.testing.assert_close(distortion_loss(out["weights"], out["t"], out["deltas"]),
                               distortion_loss(weights, t, deltas), atol=1e-6, rtol=1e-4)


def _boundary_points(fld, o, d):
    """Where rays leave the outer box (the "boundary" background), as the renderer computes it."""
    from semfield.render.sampling import ray_aabb

    _, far, _ = ray_aabb(o, d, torch.as_tensor(fld.outer_aabb, dtype=o.dtype), near_min=OPTS.near)
    return o + d * (far - 1e-4)[:, None]


def _smooth_field_with_random_head():
    """A smooth field with a random 4-wide head ``feat``, and the test rays."""
    fld = make_field({"feat": HeadConfig(dim=4)})
    torch.manual_seed(0)
    fld.heads["feat"].values.normal_()
    _set_smooth(fld)
    return fld, *_rays()


def test_heads_composite_with_detached_weights():
    fld, o, d, z = _smooth_field_with_random_head()
    out = render_rays(fld, o, d, z, ropts(max_samples=128, heads=("feat",)))
    # features are the weighted sum of the head at the samples, plus the boundary's for what passes them
    pts = (o[:, None, :] + d[:, None, :] * out["t"][..., None]).reshape(-1, 3)
    with torch.no_grad():
        ref = (out["weights"][..., None] * fld.feature("feat", pts).view(*out["t"].shape, 4)).sum(1)
        ref = ref + (1 - out["acc"])[:, None] * fld.feature("feat", _boundary_points(fld, o, d))
    torch.testing.assert_close(out["feat"].detach(), ref, atol=1e-5, rtol=1e-4)
    (out["feat"] ** 2).sum().backward()
    assert fld.heads["feat"].touched.any()
    assert not fld.density.touched.any() and (fld.density.grad == 0).all()
    assert not fld.color.touched.any()


def test_head_roulette_keeps_each_rays_feature_in_expectation():
    """Training renders thin the low-weight samples of the heads that opt in by Russian roulette: fewer
    samples, same mean; a head that does not opt in renders exactly as without the roulette."""
    fld = make_field({"feat": HeadConfig(dim=4, roulette=True), "other": HeadConfig(dim=4)})
    torch.manual_seed(0)
    fld.heads["feat"].values.normal_()
    fld.heads["other"].values.normal_()
    _set_smooth(fld)
    o, d, z = _rays()
    heads = ("feat", "other")
    exact, thinned, counts = [], [], []
    for seed in range(300):  # the same jitter per seed: only the roulette differs
        for opts, into in ((ropts(max_samples=128, heads=heads, head_roulette=0.0), exact),
                           (ropts(max_samples=128, heads=heads, head_roulette=0.05), thinned)):
            with torch.no_grad():
                out = render_rays(fld, o, d, z, opts, stratified=True, generator=torch.Generator().manual_seed(seed))
            into.append(out)
            counts.append((out["samples"]["head"], out["samples"]["head_thinned"]))
        torch.testing.assert_close(thinned[-1]["other"], exact[-1]["other"], rtol=0, atol=0)
    exact, thinned = torch.stack([x["feat"] for x in exact]), torch.stack([x["feat"] for x in thinned])
    assert (thinned - exact).abs().max() > 0.05  # single renders do differ
    spread = (thinned - exact).std(0) / 300 ** 0.5
    assert ((thinned - exact).mean(0).abs() < 4 * spread + 1e-6).all()  # but not on average
    assert all(every == kept for every, kept in counts[::2])  # without the roulette nothing is thinned
    assert sum(kept for _, kept in counts[1::2]) < 0.8 * sum(every for every, _ in counts[1::2])
    with torch.no_grad():  # evaluation (not stratified) ignores the setting
        a = render_rays(fld, o, d, z, ropts(max_samples=128, heads=heads, head_roulette=0.05))["feat"]
        b = render_rays(fld, o, d, z, ropts(max_samples=128, heads=heads, head_roulette=0.0))["feat"]
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unit_head_composites_directions_not_lengths():
    fld = make_field({"inst": HeadConfig(dim=4, unit=True)})
    torch.manual_seed(0)
    vals = fld.heads["inst"].values
    vals.copy_(F.normalize(torch.randn_like(vals), dim=-1) * torch.empty(vals.shape[0], 1).uniform_(0.1, 10.0))
    _set_smooth(fld)
    pts = torch.rand(50, 3) * 1.6 - 0.8
    torch.testing.assert_close(fld.head_latent("inst", pts).norm(dim=-1), torch.ones(50))
    o, d, z = _rays()
    out = render_rays(fld, o, d, z, ropts(max_samples=128, heads=("inst",)))
    # the rendered feature blends the samples' unit directions by their weights: a vector ten times
    # longer than its neighbour's does not outweigh it, and no blend is longer than one
    spts = (o[:, None, :] + d[:, None, :] * out["t"][..., None]).reshape(-1, 3)
    with torch.no_grad():
        unit = F.normalize(fld.heads["inst"].lookup_nograd(*trilinear_corners(spts, fld.head_axes["inst"])[:2]), dim=-1)
        ref = (out["weights"][..., None] * unit.view(*out["t"].shape, 4)).sum(1)
        far = _boundary_points(fld, o, d)
        ref = ref + (1 - out["acc"])[:, None] * F.normalize(
            fld.heads["inst"].lookup_nograd(*trilinear_corners(far, fld.head_axes["inst"])[:2]), dim=-1)
    torch.testing.assert_close(out["inst"].detach(), ref, atol=1e-5, rtol=1e-4)
    assert (out["inst"].norm(dim=-1) <= 1 + 1e-5).all()


def test_colour_loss_does_reach_density():  # control for the test above
    fld = make_field({"feat": HeadConfig(dim=4)})
    _set_smooth(fld)
    o, d, z = _rays()
    out = render_rays(fld, o, d, z, ropts(max_samples=128, heads=("feat",)))
    out["rgb"].sum().backward()
    assert fld.density.touched.any() and fld.density.grad.abs().sum() > 0
    assert not fld.heads["feat"].touched.any()


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")
def test_gradient_flows_to_ray_origins_and_directions():
    fld = make_field()
    _randomise_mlp(fld, seed=3)
    _set_smooth(fld)
    # a ray along +x, starting inside the box: near (= opts.near) and far (the x = 1 wall) do not change when
    # the origin or direction moves in y or z, so the samples stay put and a finite difference is exact
    o0 = torch.tensor([[-0.9, 0.03, 0.07]])
    d0 = torch.tensor([[1.0, 0.0, 0.0]])
    z = torch.ones(1)
    c = torch.tensor([0.7, -1.1, 0.4])

    def loss(o, d):
        out = render_rays(fld, o, d, z, OPTS)
        return (out["rgb"][0] * c).sum() + 0.3 * out["depth"][0]

    o, d = o0.clone().requires_grad_(), d0.clone().requires_grad_()
    loss(o, d).backward()
    assert o.grad is not None and d.grad is not None
    eps = 2e-3
    for name, base, grad in [("origin", o0, o.grad), ("dir", d0, d.grad)]:
        for k in (1, 2):
            step = torch.zeros_like(base)
            step[0, k] = eps
            with torch.no_grad():
                if name == "origin":
                    fd = (loss(base + step, d0) - loss(base - step, d0)) / (2 * eps)
                else:
                    fd = (loss(o0, base + step) - loss(o0, base - step)) / (2 * eps)
            assert abs(fd.item()) > 1e-3, (name, k)
            assert grad[0, k].item() == pytest.approx(fd.item(), rel=2e-2, abs=2e-3), (name, k)


def _small_image_scene():
    """A smooth field with a 5-wide head, a 4 x 3 camera looking at it, and options rendering the head."""
    fld = make_field({"feat": HeadConfig(dim=5)})
    _set_smooth(fld)
    intr = Intrinsics(width=4, height=3, fx=4.0, fy=4.0, cx=2.0, cy=1.5)
    c2w = torch.tensor(look_at([0.9, -0.8, 0.5], [0.0, 0.0, 0.0]), dtype=torch.float32)
    return fld, c2w, intr, ropts(heads=("feat",))


def test_render_image_shapes():
    fld, c2w, intr, opts = _small_image_scene()
    img = render_image(fld, c2w, intr, opts, chunk=5)  # chunks that do not divide the image
    assert img["rgb"].shape == (3, 4, 3) and img["feat"].shape == (3, 4, 5)
    assert img["depth"].shape == (3, 4) and img["acc"].shape == (3, 4)
    o, d, z = image_rays(c2w, intr)
    with torch.no_grad():
        ref = render_rays(fld, o, d, z, opts)
    torch.testing.assert_close(img["rgb"].reshape(-1, 3), ref["rgb"], atol=1e-5, rtol=0)
    torch.testing.assert_close(img["depth"].reshape(-1), ref["depth"], atol=1e-5, rtol=0)


def test_depth_only_render_matches_the_full_one():
    fld, c2w, intr, opts = _small_image_scene()
    full = render_image(fld, c2w, intr, opts)
    depth_only = render_image(fld, c2w, intr, opts, colour=False)
    assert float(full["rgb"].abs().sum()) > 0 and float(depth_only["rgb"].abs().sum()) == 0.0
    for key in ("depth", "median_depth", "acc", "feat"):
        torch.testing.assert_close(depth_only[key], full[key], atol=0, rtol=0)


def test_heads_composite_latents_like_decoding_every_sample():
    """Reference check: decoding the composited latent equals compositing per-sample decoded features
    (the decoder is affine), and ``head_rays`` renders heads for the first rays only."""
    fld = make_field({"lat": HeadConfig(dim=6, latent=3)})
    _randomise_mlp(fld)
    torch.manual_seed(2)
    fld.density.values.normal_(mean=-2.6 - fld.density_shift)  # softplus(N(-2.6, 1)): partly opaque rays
    fld.heads["lat"].values.normal_()
    torch.nn.init.normal_(fld.head_decoders["lat"].bias)
    fld.refresh_occupancy()
    o, d, z = _rays()
    opts = ropts(max_samples=128, heads=("lat",))
    with torch.no_grad():
        out = render_rays(fld, o, d, z, opts)
        pts = o[:, None, :] + d[:, None, :] * out["t"][..., None]
        per_sample = fld.feature("lat", pts.reshape(-1, 3)).view(*out["t"].shape, 6)
        reference = torch.einsum("rs,rsc->rc", out["weights"], per_sample)
        reference += (1 - out["acc"])[:, None] * fld.feature("lat", _boundary_points(fld, o, d))
        part = render_rays(fld, o, d, z, opts, head_rays=2)
    assert out["acc"].min() > 0.1  # the bias term matters: rays are not all empty
    # samples below min_alpha are skipped by the renderer: they carry < 1e-4 weight each
    torch.testing.assert_close(out["lat"], reference, atol=5e-3, rtol=0)
    assert part["lat"].shape == (2, 6)
    torch.testing.assert_close(part["lat"], out["lat"][:2])


def test_head_mean_is_added_on_decoding_and_saved():
    fld = make_field({"lat": HeadConfig(dim=4, latent=2)})
    fld.set_head_mean("lat", torch.tensor([1.0, 2.0, 3.0, 4.0]))
    latent = torch.randn(5, 2)
    centred = fld.decode_head("lat", latent, centred=True)
    torch.testing.assert_close(fld.decode_head("lat", latent), centred + torch.tensor([1.0, 2.0, 3.0, 4.0]))
    acc = torch.tensor([0.0, 0.5, 1.0, 1.0, 1.0])
    composited = fld.decode_head("lat", latent, acc)  # constant terms weighted by opacity
    bias = fld.head_decoders["lat"].bias + torch.tensor([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(composited, F.linear(latent, fld.head_decoders["lat"].weight) + acc[:, None] * bias)
    back = GridField.from_state(fld.layout(), fld.state_tensors())
    torch.testing.assert_close(back.head_mean("lat"), torch.tensor([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="identifier"):
        make_field({"bad.name": HeadConfig(dim=2)})
