"""View-dependent feature heads (HeadConfig.sh_degree): the direction mix, compositing, and that such a head
fits a teacher whose features change with the viewing direction where a plain head cannot."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from semfield.field import FieldConfig, GridField, HeadConfig
from semfield.field.renderer import RenderOptions, render_rays
from semfield.render.sampling import ray_aabb
from semfield.train.features import feature_loss

OUTER = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
FOCUS = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]
Y1 = 0.4886025119029199  # the degree-1 real spherical harmonics: (-Y1 y, Y1 z, -Y1 x)


def make_field(heads) -> GridField:
    return GridField(FieldConfig(focus_voxel=0.1, heads=heads), outer_aabb=OUTER, focus_aabb=FOCUS)


def fibonacci_directions(n: int) -> torch.Tensor:
    """``[n, 3]`` unit directions spread evenly over the sphere."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    phi = math.pi * (1.0 + 5.0 ** 0.5) * i
    r = (1.0 - z * z).sqrt()
    return torch.stack([r * phi.cos(), r * phi.sin(), z], dim=-1).float()


def test_view_latent_by_hand():
    fld = make_field({"h": HeadConfig(dim=2, sh_degree=1)})
    assert fld.heads["h"].values.shape[1] == 8  # 4 latents of width 2 per vertex
    z0, z1, z2, z3 = [1.0, 2.0], [1.0, 0.0], [0.0, 1.0], [2.0, 2.0]
    values = torch.tensor([z0 + z1 + z2 + z3] * 3)
    dirs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    expected = torch.tensor([[1.0, 2.0 + Y1],  # +z: z0 + Y1 z2
                             [1.0 - 2 * Y1, 2.0 - 2 * Y1],  # +x: z0 - Y1 z3
                             [1.0 + Y1, 2.0]])  # -y: z0 + Y1 z1
    torch.testing.assert_close(fld.view_latent("h", values, dirs), expected)
    torch.testing.assert_close(fld.view_latent("h", values), torch.tensor([z0] * 3))  # no direction: z0


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_directions_average_to_the_first_latent(degree):
    fld = make_field({"h": HeadConfig(dim=3, sh_degree=degree)})
    torch.manual_seed(degree)
    values = torch.randn(1, 3 * (degree + 1) ** 2).expand(4000, -1)
    seen = fld.view_latent("h", values, fibonacci_directions(4000))
    assert float((seen - seen[:1]).abs().max()) > 0.1  # it does change with the direction
    torch.testing.assert_close(seen.mean(dim=0), values[0, :3], atol=2e-3, rtol=0)


def test_a_plain_head_ignores_directions():
    fld = make_field({"h": HeadConfig(dim=3, latent=2)})
    torch.manual_seed(0)
    fld.heads["h"].values.normal_()
    pts, dirs = torch.rand(10, 3) - 0.5, F.normalize(torch.randn(10, 3), dim=-1)
    torch.testing.assert_close(fld.feature("h", pts, dirs), fld.feature("h", pts))


def test_rendering_mixes_the_composited_latents_by_the_ray_direction():
    """Compositing every sample's latents and mixing once per ray equals mixing each sample seen along the
    ray and compositing the decoded features (the mix and the decoder are linear)."""
    fld = make_field({"v": HeadConfig(dim=5, latent=3, sh_degree=2)})
    torch.manual_seed(1)
    fld.density.values.normal_(mean=-2.6 - fld.density_shift)
    fld.heads["v"].values.normal_()
    torch.nn.init.normal_(fld.head_decoders["v"].bias)
    fld.refresh_occupancy()
    o = torch.tensor([[-0.9, 0.03, 0.07], [0.05, -0.9, 0.12], [0.11, 0.23, 0.9], [0.6, 0.7, -0.2]])
    d = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.1, -1.0], [-1.0, -0.8, 0.3]]), dim=-1)
    opts = RenderOptions(max_samples=128, heads=("v",))
    with torch.no_grad():
        out = render_rays(fld, o, d, torch.ones(4), opts)
        S = out["t"].shape[1]
        pts = (o[:, None, :] + d[:, None, :] * out["t"][..., None]).reshape(-1, 3)
        per_sample = fld.feature("v", pts, d.repeat_interleave(S, dim=0)).view(4, S, 5)
        _, far, _ = ray_aabb(o, d, torch.as_tensor(fld.outer_aabb, dtype=o.dtype), near_min=opts.near)
        reference = torch.einsum("rs,rsc->rc", out["weights"], per_sample)
        reference += (1 - out["acc"])[:, None] * fld.feature("v", o + d * (far - 1e-4)[:, None], d)
    assert out["acc"].min() > 0.1
    torch.testing.assert_close(out["v"], reference, atol=5e-3, rtol=0)


def test_settings_are_checked_and_saved():
    with pytest.raises(ValueError, match="0 to 3"):
        HeadConfig(dim=4, sh_degree=4)
    with pytest.raises(ValueError, match="view-dependent"):
        HeadConfig(dim=4, unit=True, sh_degree=1)
    fld = make_field({"v": HeadConfig(dim=4, latent=2, sh_degree=1, shared_moments=True)})
    fld.heads["v"].values.normal_()
    assert fld.heads["v"].moment_block == 2 and fld.heads["v"].adam_width == 8 + 4  # 4 directions x 2 channels
    fld.heads["v"].adam.normal_()
    back = GridField.from_state(fld.layout(), fld.state_tensors())
    assert back.config.heads["v"].sh_degree == 1 and back.config.heads["v"].shared_moments
    torch.testing.assert_close(back.heads["v"].values, fld.heads["v"].values)
    torch.testing.assert_close(back.heads["v"].adam, fld.heads["v"].adam)


def _fit_direction_dependent_teacher(degree: int, steps: int = 150) -> float:
    """Fit a head to a teacher that sees every point of an opaque floor as ``(d_x, d_y, 0.3)`` along a ray
    of direction ``d`` (rays from 20-70 degrees off the vertical, every azimuth, to points spread over the
    floor: a point's position says nothing of the direction it is seen from); returns the mean cosine over
    fresh rays afterwards."""
    fld = make_field({"h": HeadConfig(dim=3, sh_degree=degree, loss="cosine_mse")})
    z = fld.vertex_positions(fld.axes)[:, 2]
    fld.density.values = torch.where(z < 0.0, 8.0, -12.0)[:, None].contiguous()  # opaque below z = 0
    fld.refresh_occupancy()
    fld.occupancy_ready = True
    fld.heads["h"].lr = 0.2
    opts = RenderOptions(max_samples=128, heads=("h",))
    gen = torch.Generator().manual_seed(0)

    def batch(n):
        polar = torch.empty(n).uniform_(0.35, 1.22, generator=gen)
        azimuth = torch.empty(n).uniform_(0.0, 2 * math.pi, generator=gen)
        d = -torch.stack([polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos()], dim=-1)
        floor = torch.cat([torch.empty(n, 2).uniform_(-0.3, 0.3, generator=gen), torch.zeros(n, 1)], dim=-1)
        return floor - 0.6 * d, d, torch.cat([d[:, :2], torch.full((n, 1), 0.3)], dim=-1)

    for _ in range(steps):
        o, d, target = batch(256)
        out = render_rays(fld, o, d, torch.ones(256), opts, stratified=True, generator=gen)
        feature_loss(out["h"], target, "cosine_mse").backward()
        fld.heads["h"].step()
    o, d, target = batch(512)
    with torch.no_grad():
        out = render_rays(fld, o, d, torch.ones(512), opts)
    assert float(out["acc"].min()) > 0.99
    return float(F.cosine_similarity(out["h"], target, dim=-1).mean())


def test_a_view_dependent_head_fits_what_a_plain_head_cannot():
    plain, view_dependent = _fit_direction_dependent_teacher(0), _fit_direction_dependent_teacher(1)
    # a plain head can only learn the average over directions, (0, 0, 0.3): cosine 0.3 / |(d_x, d_y, 0.3)|,
    # 0.35 to 0.65 over these rays
    assert plain < 0.7
    assert view_dependent > 0.95
