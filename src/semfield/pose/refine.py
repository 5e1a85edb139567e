"""Photometric pose refinement through the differentiable renderer (iNeRF's optimisation).

The pose is ``c2w₀ · [exp(ω) | v]`` with ``(ω, v)`` optimised by Adam on the photometric error of a few
hundred rays per step, sampled where the photo has texture (iNeRF's "interest region" sampling: probability
proportional to the image-gradient magnitude, plus a uniform floor). The field itself is frozen: no grid
gradient is accumulated. Two robustness measures, both optional: a per-channel gain and bias between render
and photo fitted in closed form each step (a photo at another exposure), and a Huber loss (small occluders).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_rays
from ..render.rays import rays_from_pixels
from ..scene.types import Intrinsics
from .geometry import pose_update

__all__ = [
    "RefineOptions",
    "fit_colour_affine",
    "frozen_field",
    "interest_pixel_weights",
    "refine_pose_photometric",
]


@dataclass
class RefineOptions:
    """Settings of photometric refinement.

    ``lr_rotation`` is in radians per step, ``lr_translation`` in scene units per step (both decay
    geometrically to ``lr_final_factor`` of themselves); ``rays`` per step; ``huber`` the loss's transition
    (in colour units; 0 = squared error); ``colour_affine`` fits a gain and bias per channel.
    """

    iterations: int = 30
    rays: int = 768
    lr_rotation: float = 2e-3
    lr_translation: float = 2e-3
    lr_final_factor: float = 0.1
    huber: float = 0.1
    colour_affine: bool = True
    uniform_floor: float = 0.2
    render: RenderOptions = field(default_factory=lambda: RenderOptions(step_voxels=1.5, max_samples=384))


@contextmanager
def frozen_field(fld: GridField):
    """Within the block, backward passes through ``fld`` reach the sample points, not the field's values."""
    grids = list(fld.sparse_grids().values())
    trainable = [g.trainable for g in grids]
    params = [(p, p.requires_grad) for p in fld.parameters()]
    try:
        for g in grids:
            g.trainable = False
        for p, _ in params:
            p.requires_grad_(False)
        yield fld
    finally:
        for g, t in zip(grids, trainable, strict=True):
            g.trainable = t
        for p, r in params:
            p.requires_grad_(r)


def interest_pixel_weights(image: torch.Tensor, uniform_floor: float = 0.2) -> torch.Tensor:
    """Sampling weights favouring textured pixels.

    Args:
        image: ``[H, W, 3]`` in [0, 1].
        uniform_floor: share of the probability mass spread uniformly (so flat regions are still seen).
    Returns:
        ``[H * W]`` non-negative weights summing to 1 (row-major).
    """
    grey = image.float().mean(-1)
    gx = torch.zeros_like(grey)
    gy = torch.zeros_like(grey)
    gx[:, 1:-1] = (grey[:, 2:] - grey[:, :-2]) / 2
    gy[1:-1, :] = (grey[2:, :] - grey[:-2, :]) / 2
    mag = (gx * gx + gy * gy).sqrt().reshape(-1)
    n = mag.numel()
    total = float(mag.sum())
    textured = mag / total if total > 0 else torch.full_like(mag, 1.0 / n)
    return (1.0 - uniform_floor) * textured + uniform_floor / n


def fit_colour_affine(render: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel gain and bias minimising ``‖gain · render + bias − target‖²`` (closed form).

    Args:
        render, target: ``[N, 3]`` colours.
    Returns:
        ``(gain [3], bias [3])``; gain 1, bias 0 where the render has no variance.
    """
    r_mean, t_mean = render.mean(0), target.mean(0)
    rc, tc = render - r_mean, target - t_mean
    var = (rc * rc).mean(0)
    cov = (rc * tc).mean(0)
    gain = torch.where(var > 1e-8, cov / var.clamp(min=1e-8), torch.ones_like(var))
    bias = t_mean - gain * r_mean
    return gain, bias


def refine_pose_photometric(fld: GridField, image: torch.Tensor, intr: Intrinsics, c2w_init: np.ndarray,
                            opts: RefineOptions, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Refine a camera pose by gradient descent on the photometric error of rendered rays.

    Args:
        fld: the trained field (left unchanged).
        image: ``[H, W, 3]`` the photo, in [0, 1].
        intr: the photo's intrinsics (``H × W``).
        c2w_init: ``[4, 4]`` starting pose.
        opts: :class:`RefineOptions`.
        seed: pixel sampling seed.
    Returns:
        ``(c2w [4, 4], info)``; info has ``loss_first``, ``loss_last`` (robust loss of the first / last step)
        and ``iterations``.
    """
    device = next(iter(fld.sparse_grids().values())).values.device
    target = image.to(device, torch.float32).reshape(-1, 3)
    weights = interest_pixel_weights(image, opts.uniform_floor).to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    c2w0 = torch.as_tensor(np.asarray(c2w_init), dtype=torch.float32, device=device)
    rot = torch.zeros(3, device=device, requires_grad=True)
    trans = torch.zeros(3, device=device, requires_grad=True)
    optim = torch.optim.Adam([{"params": [rot], "lr": opts.lr_rotation},
                              {"params": [trans], "lr": opts.lr_translation}])
    gamma = opts.lr_final_factor ** (1.0 / max(1, opts.iterations - 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(optim, gamma)
    losses: list[float] = []
    W = intr.width
    with frozen_field(fld), torch.enable_grad():
        for _ in range(opts.iterations):
            pick = torch.multinomial(weights.cpu(), opts.rays, replacement=False, generator=gen).to(device)
            u = (pick % W).to(torch.float32) + 0.5
            v = torch.div(pick, W, rounding_mode="floor").to(torch.float32) + 0.5
            c2w = pose_update(c2w0, torch.cat([rot, trans]))
            origins, dirs, zpt = rays_from_pixels(c2w, intr, u, v)
            rgb = render_rays(fld, origins, dirs, zpt, opts.render)["rgb"]
            goal = target[pick]
            if opts.colour_affine:
                gain, bias = fit_colour_affine(rgb.detach(), goal)
                rgb = rgb * gain + bias
            err = rgb - goal
            if opts.huber > 0:
                loss = torch.nn.functional.huber_loss(err, torch.zeros_like(err), delta=opts.huber)
            else:
                loss = (err * err).mean()
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            sched.step()
            losses.append(float(loss.detach()))
    with torch.no_grad():
        final = pose_update(c2w0, torch.cat([rot, trans])).double().cpu().numpy()
    info = {"iterations": opts.iterations, "loss_first": losses[0] if losses else math.nan,
            "loss_last": losses[-1] if losses else math.nan}
    return final, info
