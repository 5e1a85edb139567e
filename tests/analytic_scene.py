"""An analytic test scene, ray-traced exactly with numpy: a textured sphere and box in a closed room.

Used by tests that must not depend on MuJoCo; ground-truth depth is exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semfield.scene.convention import look_at
from semfield.scene.images import save_rgb, save_uint16
from semfield.scene.nerfstudio import write_transforms
from semfield.scene.types import Frame, Intrinsics, Scene

ROOM = np.array([[-1.5, -1.5, 0.0], [1.5, 1.5, 2.0]])
SPHERE_C, SPHERE_R = np.array([0.15, -0.1, 0.3]), 0.25
BOX = np.array([[-0.45, 0.05, 0.0], [-0.1, 0.4, 0.35]])


def _texture(p: np.ndarray, n: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Smooth procedural colours per surface kind (0 room, 1 sphere, 2 box)."""
    s = np.sin(6 * p[:, 0]) * np.cos(5 * p[:, 1]) + np.sin(4 * p[:, 2])
    base = np.stack([0.5 + 0.25 * s, 0.45 + 0.2 * np.cos(3 * p[:, 0] + 2 * p[:, 2]), 0.4 + 0.1 * s], -1)
    sphere = np.stack([0.8 + 0.15 * np.sin(12 * p[:, 2]), 0.2 + 0.1 * n[:, 0], 0.2 + 0.1 * n[:, 1]], -1)
    box = np.stack([0.2 + 0.1 * np.sin(15 * p[:, 0]), 0.3 + 0.2 * np.cos(15 * p[:, 1]), 0.8 + 0 * p[:, 0]], -1)
    col = np.where(kind[:, None] == 1, sphere, np.where(kind[:, None] == 2, box, base))
    shade = 0.75 + 0.25 * np.clip(n @ np.array([0.3, 0.2, 0.93]), -1, 1)
    return np.clip(col * shade[:, None], 0, 1)


def _box_hit(o, d, box, inside):
    inv = 1.0 / np.where(np.abs(d) < 1e-12, 1e-12, d)
    t0, t1 = (box[0] - o) * inv, (box[1] - o) * inv
    tmin, tmax = np.minimum(t0, t1), np.maximum(t0, t1)
    if inside:
        t = tmax.min(1)
        axis = tmax.argmin(1)
        sign = -np.sign(d[np.arange(len(d)), axis])
    else:
        t = tmin.max(1)
        t = np.where((t < tmax.min(1)) & (t > 0), t, np.inf)
        axis = tmin.argmax(1)
        sign = -np.sign(d[np.arange(len(d)), axis])
    n = np.zeros_like(d)
    n[np.arange(len(d)), axis] = sign
    return t, n


def trace(o: np.ndarray, d: np.ndarray):
    """Ray-trace unit rays ``[N, 3]``: returns colour ``[N, 3]``, distance ``[N]``, object id ``[N]``."""
    t_room, n_room = _box_hit(o, d, ROOM, inside=True)
    oc = o - SPHERE_C
    b = (oc * d).sum(1)
    disc = b * b - ((oc * oc).sum(1) - SPHERE_R**2)
    t_sph = np.where(disc > 0, -b - np.sqrt(np.maximum(disc, 0)), np.inf)
    t_sph = np.where(t_sph > 0, t_sph, np.inf)
    t_box, n_box = _box_hit(o, d, BOX, inside=False)
    t = np.minimum(np.minimum(t_room, t_sph), t_box)
    kind = np.where(t == t_sph, 1, np.where(t == t_box, 2, 0))
    p = o + d * t[:, None]
    n = np.where(kind[:, None] == 1, (p - SPHERE_C) / SPHERE_R, np.where(kind[:, None] == 2, n_box, n_room))
    return _texture(p, n, kind), t, kind


def make_analytic_scene(out: Path, n_train: int = 24, n_test: int = 4, size: int = 48, seed: int = 0) -> Path:
    """Write the analytic scene as a nerfstudio dataset with mm depth and instance PNGs; returns its path."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    intr = Intrinsics(size, size, size * 0.9, size * 0.9, size / 2, size / 2)
    frames = []
    n = n_train + n_test
    for i in range(n):
        az = 2 * np.pi * i / n + rng.uniform(-0.05, 0.05)
        el = np.deg2rad(25 + 20 * ((i * 7) % n) / n)
        r = 1.1
        eye = np.array([r * np.cos(az) * np.cos(el), r * np.sin(az) * np.cos(el), 0.25 + r * np.sin(el)])
        c2w = look_at(eye, np.array([0.0, 0.0, 0.25]) + rng.normal(0, 0.03, 3))
        vv, uu = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5, indexing="ij")
        dc = np.stack([(uu - intr.cx) / intr.fx, (vv - intr.cy) / intr.fy, np.ones_like(uu)], -1).reshape(-1, 3)
        z_per_t = 1.0 / np.linalg.norm(dc, axis=1)
        dw = (dc * z_per_t[:, None]) @ c2w[:3, :3].T
        col, t, kind = trace(np.broadcast_to(c2w[:3, 3], dw.shape), dw)
        name = f"images/frame_{i:03d}.png"
        save_rgb(out / name, col.reshape(size, size, 3))
        save_uint16(out / f"depth/frame_{i:03d}.png", np.round(t * z_per_t * 1000).reshape(size, size))
        save_uint16(out / f"instance/frame_{i:03d}.png", kind.reshape(size, size))
        split = "test" if i % ((n // n_test) or 1) == 1 and sum(f.split == "test" for f in frames) < n_test else "train"
        frames.append(Frame(name=name, image_path=out / name, c2w=c2w, intrinsics=intr, split=split,
                            depth_path=out / f"depth/frame_{i:03d}.png",
                            extra={"instance": out / f"instance/frame_{i:03d}.png"}))
    scene = Scene(root=out, frames=frames, depth_scale=0.001, aabb=ROOM)
    return write_transforms(scene, out / "transforms.json")
