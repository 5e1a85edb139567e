"""Dense matching of a photo against every view of the bank at once: 2D–3D correspondences with no render.

Each bank view keeps its teacher patch features, compressed to a few principal components, and the 3D point
under every patch centre (from the field's depth where the view was rendered). A photo's patches are
matched to each view by mutual nearest neighbours (cosine); a view's matches are already 2D (photo patch
centre) ↔ 3D (the bank point) correspondences, ready for PnP-RANSAC — the render → match → lift loop of the
older PnP stage, moved to the bank's fitting time. The number of matches per view ranks the views: a
geometric vote, where a global descriptor only says "looks similar".

All functions are pure (torch in, torch out; no I/O, no rendering).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["BankMatches", "PatchBasis", "fit_patch_basis", "match_bank", "patch_centres"]


@dataclass
class PatchBasis:
    """Principal directions of patch features: ``mean [D]``, ``basis [D, k]`` (orthonormal columns)."""

    mean: torch.Tensor
    basis: torch.Tensor

    def compress(self, features: torch.Tensor) -> torch.Tensor:
        """``[..., D]`` → unit-length ``[..., k]`` (centred, projected, normalised)."""
        z = (features.float() - self.mean) @ self.basis
        return F.normalize(z, dim=-1)


def fit_patch_basis(features: torch.Tensor, k: int, max_rows: int = 20000, seed: int = 0) -> PatchBasis:
    """Principal components of patch features.

    Args:
        features: ``[N, D]`` patch features (rows sampled down to ``max_rows`` for the fit).
        k: components kept (capped at ``min(N, D)``).
        seed: row-sampling seed.
    Returns:
        :class:`PatchBasis`.
    """
    x = features.float().reshape(-1, features.shape[-1])
    if x.shape[0] > max_rows:
        gen = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(x.shape[0], generator=gen)[:max_rows]]
    mean = x.mean(0)
    _, _, V = torch.linalg.svd(x - mean, full_matrices=False)
    k = max(1, min(k, V.shape[0]))
    return PatchBasis(mean=mean, basis=V[:k].T.contiguous())


def patch_centres(grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Pixel centres of a ``grid = (h, w)`` patch grid over an image of ``size = (height, width)``.

    Returns:
        ``[h * w, 2]`` (column, row) in pixels, row-major, centres at half-integers of the patch grid
        (patch ``(r, c)`` → ``((c + 0.5) · width / w, (r + 0.5) · height / h)``).
    """
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    return torch.stack([(cols.reshape(-1) + 0.5) * size[1] / w, (rows.reshape(-1) + 0.5) * size[0] / h], dim=-1)


@dataclass
class BankMatches:
    """Mutual nearest-neighbour matches of one photo against every bank view.

    ``view [M]``, ``query [M]`` (photo patch index), ``patch [M]`` (the view's patch index), ``similarity [M]``;
    ``counts [B]`` matches per view.
    """

    view: torch.Tensor
    query: torch.Tensor
    patch: torch.Tensor
    similarity: torch.Tensor
    counts: torch.Tensor

    def of_view(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(query indices [m], patch indices [m])`` of view ``b``."""
        keep = self.view == b
        return self.query[keep], self.patch[keep]


def match_bank(query: torch.Tensor, bank: torch.Tensor, valid: torch.Tensor, min_similarity: float = 0.5,
               chunk: int = 64) -> BankMatches:
    """Mutual nearest neighbours between the photo's patches and each bank view's patches, all views at once.

    A pair ``(q, p)`` of view ``b`` matches when ``p`` is ``q``'s most similar valid patch of view ``b``, ``q``
    is ``p``'s most similar photo patch, and their cosine is at least ``min_similarity``.

    Args:
        query: ``[P, k]`` unit-length compressed photo patch features.
        bank: ``[B, Pb, k]`` unit-length compressed bank patch features (any float dtype).
        valid: ``[B, Pb]`` bool: patches with a trusted 3D point (others never match).
        min_similarity: cosine floor.
        chunk: views per matrix product (bounds the memory of ``P × chunk × Pb`` similarities).
    Returns:
        :class:`BankMatches`.
    """
    B = bank.shape[0]
    q = query.float()
    views, queries, patches, sims = [], [], [], []
    counts = torch.zeros(B, dtype=torch.long)
    q_idx = torch.arange(q.shape[0])
    for start in range(0, B, chunk):
        block = bank[start:start + chunk].float()  # [c, Pb, k]
        sim = torch.einsum("qk,cpk->cqp", q, block)  # [c, P, Pb]
        sim = sim.masked_fill(~valid[start:start + chunk, None, :], -2.0)
        best_p = sim.argmax(2)  # [c, P]
        best_q = sim.argmax(1)  # [c, Pb]
        back = torch.gather(best_q, 1, best_p)  # [c, P]: the best photo patch of q's best view patch
        s = torch.gather(sim, 2, best_p[..., None])[..., 0]  # [c, P]
        keep = (back == q_idx[None]) & (s >= min_similarity)
        c_idx, qi = keep.nonzero(as_tuple=True)
        views.append(c_idx + start)
        queries.append(qi)
        patches.append(best_p[c_idx, qi])
        sims.append(s[c_idx, qi])
        counts[start:start + block.shape[0]] = keep.sum(1)
    return BankMatches(view=torch.cat(views), query=torch.cat(queries), patch=torch.cat(patches),
                       similarity=torch.cat(sims), counts=counts)
