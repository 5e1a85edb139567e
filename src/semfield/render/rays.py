"""Camera rays in the semfield convention (OpenCV axes, camera-to-world, see semfield.scene.convention)."""

from __future__ import annotations

import torch

from ..scene.types import Intrinsics


def undistort_opencv(xd: torch.Tensor, yd: torch.Tensor, k: tuple[float, ...], iters: int = 100):
    """Invert OpenCV radial-tangential distortion ``(k1, k2, p1, p2)`` by fixed-point iteration
    (stops early once converged; strong pincushion near the corners needs many iterations).

    Args:
        xd, yd: distorted normalised image coordinates ``[N]``.
    Returns:
        undistorted normalised coordinates ``(x [N], y [N])``.
    """
    k1, k2, p1, p2 = (tuple(k) + (0.0, 0.0, 0.0, 0.0))[:4]
    x, y = xd.clone(), yd.clone()
    for _ in range(iters):
        r2 = x * x + y * y
        radial = 1 + k1 * r2 + k2 * r2 * r2
        dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        x_new = (xd - dx) / radial
        y_new = (yd - dy) / radial
        done = bool(torch.maximum((x_new - x).abs().max(), (y_new - y).abs().max()) < 1e-9) if x.numel() else True
        x, y = x_new, y_new
        if done:
            break
    return x, y


def camera_directions(intr: Intrinsics, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Camera-space ray directions with z = 1 for pixel coordinates ``u, v`` ``[N]`` (pixel centres at +0.5).

    Returns:
        ``[N, 3]`` directions ``(x, y, 1)`` in OpenCV camera axes (not unit length).
    """
    x = (u - intr.cx) / intr.fx
    y = (v - intr.cy) / intr.fy
    if intr.model == "OPENCV" and any(abs(c) > 0 for c in intr.distortion):
        x, y = undistort_opencv(x, y, intr.distortion)
    return torch.stack([x, y, torch.ones_like(x)], dim=-1)


def rays_from_pixels(c2w: torch.Tensor, intr: Intrinsics, u: torch.Tensor, v: torch.Tensor):
    """World-space rays through pixel coordinates of one camera.

    Args:
        c2w: camera-to-world ``[4, 4]``.
        intr: the camera's intrinsics.
        u, v: pixel coordinates ``[N]`` (column, row), pixel centres at ``i + 0.5``.
    Returns:
        origins ``[N, 3]``, unit directions ``[N, 3]``, and ``z_per_t [N]``: the camera-space depth gained
        per unit of distance along the ray (planar depth = t · z_per_t).
    """
    d_cam = camera_directions(intr, u, v).to(c2w)
    norm = d_cam.norm(dim=-1, keepdim=True)
    dirs = (d_cam / norm) @ c2w[:3, :3].T
    origins = c2w[:3, 3].expand_as(dirs)
    return origins, dirs, (1.0 / norm.squeeze(-1))


def image_rays(c2w: torch.Tensor, intr: Intrinsics):
    """Rays through every pixel centre of an image, row-major (``[H*W, ...]`` as in :func:`rays_from_pixels`)."""
    dev = c2w.device
    vv, uu = torch.meshgrid(
        torch.arange(intr.height, device=dev, dtype=torch.float32) + 0.5,
        torch.arange(intr.width, device=dev, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    return rays_from_pixels(c2w, intr, uu.reshape(-1), vv.reshape(-1))
