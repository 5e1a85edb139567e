"""Matching a photo's patches against the whole view bank: hand-worked matches, and PnP from bank points."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from semfield.eval.pose import pose_errors
from semfield.pose.bank import ViewBank
from semfield.pose.bank_match import PatchBasis, fit_patch_basis, match_bank, patch_centres
from semfield.pose.geometry import backproject
from semfield.pose.locate import LocateOptions, bank_pnp_poses
from semfield.scene.convention import look_at
from semfield.scene.types import Intrinsics


def test_patch_centres_hand_worked():
    c = patch_centres((2, 3), (28, 42))
    np.testing.assert_allclose(c.numpy(), [[7, 7], [21, 7], [35, 7], [7, 21], [21, 21], [35, 21]])


def test_patch_basis_is_orthonormal_and_keeps_a_low_rank_structure():
    gen = torch.Generator().manual_seed(0)
    latent = torch.randn(500, 3, generator=gen)
    mix = torch.randn(3, 16, generator=gen)
    x = latent @ mix + 5.0  # rank 3 plus an offset every row shares
    basis = fit_patch_basis(x, k=3)
    torch.testing.assert_close(basis.basis.T @ basis.basis, torch.eye(3), atol=1e-5, rtol=0)
    # the compressed cosine of two rows equals the cosine of their centred originals
    z = basis.compress(x[:2])
    c = x[:2] - x.mean(0)
    torch.testing.assert_close(z[0] @ z[1], F.cosine_similarity(c[0], c[1], dim=0), atol=1e-4, rtol=0)
    assert torch.allclose(z.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_match_bank_finds_the_mutual_pairs_of_every_view():
    q = torch.eye(4)  # four photo patches, orthogonal
    bank = torch.stack([
        q[[2, 0, 3, 1]],  # view 0: the same patches, shuffled
        F.normalize(q + 0.1, dim=-1)[[1, 1, 1, 1]],  # view 1: four copies of patch 1 (only one can be mutual)
        -q,  # view 2: nothing similar
    ])
    valid = torch.ones(3, 4, dtype=torch.bool)
    valid[0, 3] = False  # view 0's copy of patch 1 has no 3D point
    m = match_bank(q, bank, valid, min_similarity=0.5, chunk=2)
    assert m.counts.tolist() == [3, 1, 0]
    qi, pi = m.of_view(0)
    assert sorted(zip(qi.tolist(), pi.tolist())) == [(0, 1), (2, 0), (3, 2)]
    qi, pi = m.of_view(1)
    assert qi.tolist() == [1] and pi.tolist() == [0]  # argmax takes the first of equal copies
    assert (m.similarity > 0.9).all()


def _codes(world: np.ndarray) -> torch.Tensor:
    """A smooth, distinctive "texture" of the z = 0 plane: 64 random Fourier features of (x, y) with
    wavelengths of 0.15–0.6 m, unit length: ``[N, 3]`` → ``[N, 64]``."""
    rng = np.random.default_rng(1)
    direction = rng.normal(size=(64, 2))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    freq = direction * (2 * np.pi / rng.uniform(0.15, 0.6, size=(64, 1)))
    phase = rng.uniform(0, 2 * np.pi, size=64)
    return F.normalize(torch.as_tensor(np.cos(world[:, :2] @ freq.T + phase), dtype=torch.float32), dim=-1)


def _bank_of(views: list[tuple[np.ndarray, np.ndarray]], intr: Intrinsics, grid: tuple[int, int]) -> ViewBank:
    """A bank whose patches carry the plane's code at the point under their centre, with that point."""
    feats, pts, valid = [], [], []
    centres = patch_centres(grid, (intr.height, intr.width)).numpy()
    for c2w, depth in views:
        world = backproject(centres, depth, intr.K, c2w)
        feats.append(_codes(world))
        pts.append(torch.as_tensor(world, dtype=torch.float32))
        valid.append(torch.ones(len(centres), dtype=torch.bool))
    n = len(views)
    basis = PatchBasis(mean=torch.zeros(64), basis=torch.eye(64))
    return ViewBank(c2w=torch.zeros(n, 4, 4, dtype=torch.float64), global_vecs=torch.zeros(n, 2),
                    layout_vecs=torch.zeros(n, 2), thumbs=torch.zeros(n, 3), thumb_size=(1, 1),
                    rendered=torch.ones(n, dtype=torch.bool), patch_feats=torch.stack(feats).half(),
                    patch_points=torch.stack(pts), patch_valid=torch.stack(valid), patch_basis=basis,
                    image_size=(intr.height, intr.width))


def test_bank_pnp_recovers_a_pose_no_bank_view_has():
    """A textured plane seen by two bank views; the photo's camera is 15° of azimuth and 20 cm of height
    from the nearest. Patches carry the texture at the point under them, so a patch match is a 2D–3D
    correspondence accurate to about half a patch, and PnP must land within a degree and 2 cm."""
    intr = Intrinsics(width=160, height=160, fx=160.0, fy=160.0, cx=80.0, cy=80.0)
    grid = (16, 16)
    xs, ys = np.meshgrid(np.linspace(-0.6, 0.6, 61), np.linspace(-0.6, 0.6, 61))
    points = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=-1)
    codes = F.normalize(torch.randn(len(points), 32, generator=torch.Generator().manual_seed(1)), dim=-1)

    def camera(azimuth_deg: float, height: float) -> np.ndarray:
        a = np.radians(azimuth_deg)
        return look_at(np.array([1.0 * np.cos(a), 1.0 * np.sin(a), height]), np.zeros(3))

    def plane_depth(c2w: np.ndarray) -> np.ndarray:  # planar depth of the z = 0 plane at each patch centre
        uv = patch_centres(grid, (intr.height, intr.width)).numpy()
        rays = np.stack([(uv[:, 0] - intr.cx) / intr.fx, (uv[:, 1] - intr.cy) / intr.fy, np.ones(len(uv))], -1)
        dirs = rays @ c2w[:3, :3].T
        return -c2w[2, 3] / dirs[:, 2]

    bank_views = [camera(a, 1.2) for a in (0.0, 180.0)]
    bank = _bank_of([(c, plane_depth(c)) for c in bank_views], intr, grid)
    truth = camera(15.0, 1.0)
    # the photo's patch features: the texture under each patch centre, plus a little noise
    centres = patch_centres(grid, (intr.height, intr.width)).numpy()
    codes = _codes(backproject(centres, plane_depth(truth), intr.K, truth))
    noise = 0.05 * torch.randn(codes.shape, generator=torch.Generator().manual_seed(2))
    photo = F.normalize(codes + noise, dim=-1).reshape(*grid, 64)
    poses = bank_pnp_poses(bank, photo, intr, LocateOptions(match_views=2, min_inliers=10))
    assert poses, "no PnP pose from the bank"
    names = [n for n, _ in poses]
    assert names[0] == "bank:0"
    r, t = pose_errors(truth, poses[0][1].c2w)
    assert float(r) < 1.0 and float(t) < 0.02, (float(r), float(t))
    # the far view sees the plane from 165° away, its patches' footprints stretched differently: its pose
    # (and the pooled one) is coarser, but well within the SIFT rounds' reach
    assert set(names) == {"bank:0", "bank:1", "bank:pooled"}
    for _, res in poses:
        r, t = pose_errors(truth, res.c2w)
        assert float(r) < 3.0 and float(t) < 0.08, (float(r), float(t))
