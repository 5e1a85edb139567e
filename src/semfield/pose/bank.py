"""The view bank: poses around the training cameras, rendered from the field, with their descriptors.

The field makes its own training data for coarse localisation: poses are drawn near the training cameras
(an orbit-like jitter about the point the capture looks at), rendered small (colour and depth), and
described by the teacher. The training photos themselves, at their known poses, join the bank (their depth
rendered from the field). Every view keeps its descriptors, a colour thumbnail
(:func:`semfield.pose.photometric.thumbnail`) for picture-to-picture comparison, and its teacher patch
features (compressed to ``patch_components`` principal components) with the 3D point under each patch
centre, so a photo is matched to every view in 3D without rendering anything (:mod:`semfield.pose.bank_match`).

Pose sampling (:func:`sample_bank_poses`) is pure; :func:`build_view_bank` does the rendering.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..scene.convention import look_at
from ..scene.types import Frame, Intrinsics
from .bank_match import PatchBasis, fit_patch_basis, patch_centres
from .descriptors import describe_image, resize_image
from .geometry import backproject, closest_point_to_axes, rotation_about_axis, trusted_depth
from .photometric import thumbnail, thumbnail_size

__all__ = ["BankSettings", "ViewBank", "build_view_bank", "capture_up", "sample_bank_poses"]


@dataclass
class BankSettings:
    """How the bank is made. Angles in degrees; ``radius_sigma`` is a log-normal spread of the distance to
    the look-at point; ``target_sigma`` a fraction of the median distance; ``size`` the renders' long side
    in pixels; ``render_step_voxels`` the renders' sample spacing (coarser than evaluation: small renders);
    ``thumb`` the thumbnails' long side in pixels; ``patch_components`` the principal components kept of the
    patch features; ``depth_edge_ratio`` the depth jump (relative) around a patch centre that leaves it
    without a 3D point."""

    n_rendered: int = 384
    azimuth_sigma: float = 12.0
    elevation_sigma: float = 6.0
    roll_sigma: float = 2.0
    radius_sigma: float = 0.12
    target_sigma: float = 0.08
    size: int = 192
    grid: int = 4
    render_step_voxels: float = 3.0
    thumb: int = 16
    patch_components: int = 64
    depth_edge_ratio: float = 0.03
    seed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ViewBank:
    """``c2w [B, 4, 4]``, ``global_vecs [B, 2D]``, ``layout_vecs [B, g² D]``, ``thumbs [B, 3 h w]`` (unit
    thumbnails of ``thumb_size = (h, w)``), ``rendered [B]`` bool (False: a training photo).

    Patches (every view has the same teacher patch grid, ``P`` patches, row-major): ``patch_feats [B, P, k]``
    (fp16, unit length in ``patch_basis``), ``patch_points [B, P, 3]`` world points under the patch centres,
    ``patch_valid [B, P]`` bool (a trusted depth there); ``image_size = (height, width)`` of the views as the
    teacher saw them (photos are described at the same size).
    """

    c2w: torch.Tensor
    global_vecs: torch.Tensor
    layout_vecs: torch.Tensor
    thumbs: torch.Tensor
    thumb_size: tuple[int, int]
    rendered: torch.Tensor
    patch_feats: torch.Tensor
    patch_points: torch.Tensor
    patch_valid: torch.Tensor
    patch_basis: PatchBasis
    image_size: tuple[int, int]

    @property
    def long_side(self) -> int:
        return max(self.image_size)

    def __len__(self) -> int:
        return int(self.c2w.shape[0])


def capture_up(c2w: np.ndarray) -> np.ndarray:
    """The capture's "up" ``[3]``: the mean of the cameras' −y axes (OpenCV y points down), unit length."""
    up = -np.asarray(c2w, dtype=np.float64)[:, :3, 1].mean(0)
    return up / np.linalg.norm(up)


def _roll_deg(c2w: np.ndarray, up: np.ndarray) -> float:
    """Signed roll of a camera about its forward axis relative to the level camera looking the same way."""
    fwd = c2w[:3, 2]
    right = np.cross(fwd, up)
    if np.linalg.norm(right) < 1e-9:
        return 0.0
    right /= np.linalg.norm(right)
    x = c2w[:3, 0]
    return math.degrees(math.atan2(float(np.dot(np.cross(right, x), fwd)), float(np.dot(right, x))))


def sample_bank_poses(train_c2w: np.ndarray, settings: BankSettings) -> np.ndarray:
    """Poses near the training cameras: each is a training camera moved about the capture's look-at point.

    For a random training camera: rotate its position about the look-at point by a Gaussian azimuth (about
    the capture's up) and elevation, scale its distance log-normally, aim it at the look-at point moved by a
    Gaussian offset, and give it the source camera's roll plus Gaussian noise.

    Args:
        train_c2w: ``[N, 4, 4]`` training cameras (N ≥ 2, not all looking along one line).
        settings: spreads and count.
    Returns:
        ``[n_rendered, 4, 4]`` camera-to-world poses.
    """
    train_c2w = np.asarray(train_c2w, dtype=np.float64)
    rng = np.random.default_rng(settings.seed)
    centre = closest_point_to_axes(train_c2w)
    up = capture_up(train_c2w)
    dist = np.linalg.norm(train_c2w[:, :3, 3] - centre, axis=1)
    scale = float(np.median(dist))
    out = []
    for _ in range(settings.n_rendered):
        src = train_c2w[rng.integers(len(train_c2w))]
        offset = src[:3, 3] - centre
        offset = rotation_about_axis(up, rng.normal(0.0, settings.azimuth_sigma)) @ offset
        side = np.cross(up, offset)
        if np.linalg.norm(side) > 1e-9:
            offset = rotation_about_axis(side, rng.normal(0.0, settings.elevation_sigma)) @ offset
        offset *= math.exp(rng.normal(0.0, settings.radius_sigma))
        eye = centre + offset
        target = centre + rng.normal(0.0, settings.target_sigma * scale, size=3)
        try:
            c2w = look_at(eye, target, up)
        except ValueError:  # looking straight along up: keep the source camera
            out.append(src.copy())
            continue
        roll = _roll_deg(src, up) + rng.normal(0.0, settings.roll_sigma)
        c2w[:3, :3] = rotation_about_axis(c2w[:3, 2], roll) @ c2w[:3, :3]
        out.append(c2w)
    return np.stack(out)


def _patch_points(depth: np.ndarray, grid: tuple[int, int], intr: Intrinsics, c2w: np.ndarray,
                  edge_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """World points under the patch centres of a ``grid`` over a depth map: ``([P, 3], valid [P])``."""
    uv = patch_centres(grid, (intr.height, intr.width)).numpy()
    cols = np.clip(np.floor(uv[:, 0]).astype(int), 0, intr.width - 1)
    rows = np.clip(np.floor(uv[:, 1]).astype(int), 0, intr.height - 1)
    valid = trusted_depth(depth, edge_ratio)[rows, cols]
    z = np.where(valid, depth[rows, cols], 1.0)
    return backproject(uv, z, intr.K, c2w).astype(np.float32), valid


def build_view_bank(fld: GridField, teacher, train_frames: list[Frame], train_images: list[torch.Tensor],
                    settings: BankSettings, progress: bool = True) -> ViewBank:
    """Render the bank and describe every view (rendered ones and the training photos).

    Args:
        fld: the trained field.
        teacher: the descriptor teacher (DINOv2).
        train_frames: the training frames (their poses and intrinsics; the first frame's camera renders the bank).
        train_images: their photos ``[H, W, 3]`` in [0, 1].
        settings: :class:`BankSettings`.
    Returns:
        :class:`ViewBank` with the rendered views first, then the training photos.
    """
    train_c2w = np.stack([f.c2w for f in train_frames])
    poses = sample_bank_poses(train_c2w, settings)
    intr = train_frames[0].intrinsics.long_side_at_most(settings.size)  # no detail to gain from upsampling
    opts = RenderOptions(step_voxels=settings.render_step_voxels, max_samples=384)
    device = next(iter(fld.sparse_grids().values())).values.device
    t_size = thumbnail_size(train_frames[0].intrinsics, settings.thumb)
    g_vecs, l_vecs, thumbs, feats, points, valid = [], [], [], [], [], []
    all_c2w = np.concatenate([poses, train_c2w]) if len(train_c2w) else poses
    photos = [None] * len(poses) + list(train_images)
    for c2w, photo in tqdm(list(zip(all_c2w, photos)), desc="pose bank", unit="view", disable=not progress):
        with torch.no_grad():
            out = render_image(fld, torch.as_tensor(c2w, dtype=torch.float32, device=device), intr, opts)
        img = out["rgb"].float().cpu() if photo is None else resize_image(photo, (intr.height, intr.width))
        d = describe_image(teacher, img, max(intr.width, intr.height), settings.grid)
        g_vecs.append(d.global_vec)
        l_vecs.append(d.layout_vec)
        thumbs.append(thumbnail(img, t_size))
        grid = (int(d.patches.shape[0]), int(d.patches.shape[1]))
        pts, ok = _patch_points(out["median_depth"].float().cpu().numpy(), grid, intr, c2w, settings.depth_edge_ratio)
        feats.append(d.patches.reshape(-1, d.patches.shape[-1]).half())
        points.append(torch.as_tensor(pts))
        valid.append(torch.as_tensor(ok))
    raw = torch.stack(feats)  # [B, P, D]
    basis = fit_patch_basis(raw[torch.stack(valid)], settings.patch_components, seed=settings.seed)
    rendered = torch.cat([torch.ones(len(poses), dtype=torch.bool), torch.zeros(len(train_c2w), dtype=torch.bool)])
    return ViewBank(c2w=torch.as_tensor(all_c2w, dtype=torch.float64), global_vecs=torch.stack(g_vecs),
                    layout_vecs=torch.stack(l_vecs), thumbs=torch.stack(thumbs), thumb_size=t_size,
                    rendered=rendered, patch_feats=basis.compress(raw).half(), patch_points=torch.stack(points),
                    patch_valid=torch.stack(valid), patch_basis=basis, image_size=(intr.height, intr.width))
