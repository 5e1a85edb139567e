"""2D–2D correspondences between a query photo and a render: dense optical flow (OpenCV DIS), SIFT
keypoints, or dense DINOv2 patch features.

Every function returns pixel coordinates in semfield's convention (pixel centres at half-integers; OpenCV
keypoints are shifted by +0.5 here, once). Images are float ``[H, W, 3]`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from .bank_match import patch_centres

__all__ = ["Matches", "dense_feature_matches", "flow_grid", "flow_matches", "mutual_ratio_matches", "sift_keypoints",
           "sift_matches"]


@dataclass
class Matches:
    """Corresponding pixels: ``query [M, 2]`` and ``render [M, 2]`` (column, row; centres at +0.5)."""

    query: np.ndarray
    render: np.ndarray

    def __len__(self) -> int:
        return int(self.query.shape[0])


def _grey_uint8(image: np.ndarray) -> np.ndarray:
    rgb = (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def sift_keypoints(image: np.ndarray, mask: np.ndarray | None = None, n_features: int = 2000,
                   max_side: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """SIFT keypoints ``[K, 2]`` (semfield pixel frame of ``image``) and descriptors ``[K, 128]`` (None if
    none) of ``image`` ``[H, W, 3]``; detected on a copy downscaled to ``max_side`` when it is larger."""
    sift = cv2.SIFT_create(nfeatures=n_features, contrastThreshold=0.02)
    grey = _grey_uint8(image)
    m = None if mask is None else (np.asarray(mask, dtype=bool).astype(np.uint8) * 255)
    h, w = grey.shape
    scale = 1.0 if max_side is None else min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (round(w * scale), round(h * scale))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        m = None if m is None else cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
    kps, desc = sift.detectAndCompute(grey, m)
    pts = (np.array([k.pt for k in kps], dtype=np.float64).reshape(-1, 2) + 0.5) / scale
    return pts, desc


def mutual_ratio_matches(desc_a: np.ndarray | None, desc_b: np.ndarray | None, ratio: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(ia [M], ib [M])`` of descriptor matches that pass Lowe's ``ratio`` test and are mutual
    nearest neighbours (empty when either side has fewer than 2 descriptors)."""
    none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return none
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    backward = {m.queryIdx: m.trainIdx for m in matcher.match(desc_b, desc_a)}
    pairs = [(best.queryIdx, best.trainIdx) for best, second in
             (pair for pair in matcher.knnMatch(desc_a, desc_b, k=2) if len(pair) == 2)
             if best.distance < ratio * second.distance and backward.get(best.trainIdx) == best.queryIdx]
    if not pairs:
        return none
    ia, ib = np.array(pairs, dtype=np.int64).T
    return ia, ib


def _standardised_grey(image: np.ndarray) -> np.ndarray:
    """Grey ``uint8`` with the image's mean and contrast fixed (mean 128, std 48): brightness constancy,
    which optical flow assumes, then holds between a photo and a render at another exposure."""
    grey = _grey_uint8(image).astype(np.float32)
    grey = (grey - grey.mean()) / max(float(grey.std()), 1e-3) * 48.0 + 128.0
    return np.clip(grey + 0.5, 0, 255).astype(np.uint8)


def flow_grid(height: int, width: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns ``[M]`` (row-major) of the render pixels :func:`flow_matches` matches: every
    ``step``-th pixel from ``step // 2`` on."""
    rows, cols = np.mgrid[step // 2:height:step, step // 2:width:step]
    return rows.ravel(), cols.ravel()


def flow_matches(query: np.ndarray, render: np.ndarray, render_mask: np.ndarray | None = None, step: int = 3,
                 consistency_px: float = 1.0) -> Matches:
    """Dense correspondences from optical flow (OpenCV DIS, coarse to fine) between a render and the photo.

    Where a render is a few degrees off the photo, almost every pixel still finds its place by flow — also
    in a blurry render or on little texture, where SIFT keeps a handful of keypoints. The photo is resized
    to the render's size for the flow (so the render decides the resolution); a render pixel on a ``step``
    grid is kept when the flow back from the photo returns it to within ``consistency_px`` (occlusions,
    occluders and flow that failed do not).

    Args:
        query: ``[Hq, Wq, 3]`` the photo.
        render: ``[Hr, Wr, 3]`` the render (the same aspect as the photo).
        render_mask: optional ``[Hr, Wr]`` bool: render pixels that may be matched (trusted depth).
        step: grid spacing of the matched render pixels, in render pixels.
        consistency_px: forward–backward flow disagreement (render pixels) above which a match is dropped.
    Returns:
        :class:`Matches`: query points in the photo's pixels, render points on the render's grid.
    """
    hr, wr = render.shape[:2]
    hq, wq = query.shape[:2]
    photo = np.asarray(query, dtype=np.float32)
    if (hq, wq) != (hr, wr):
        photo = cv2.resize(photo, (wr, hr), interpolation=cv2.INTER_AREA if hq > hr else cv2.INTER_LINEAR)
    a, b = _standardised_grey(render), _standardised_grey(photo)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    forward = dis.calc(a, b, None)  # render pixel x sits at x + forward[x] in the photo
    backward = dis.calc(b, a, None)
    rows, cols = flow_grid(hr, wr, step)
    if render_mask is not None:
        keep = np.asarray(render_mask, dtype=bool)[rows, cols]
        rows, cols = rows[keep], cols[keep]
    fwd = forward[rows, cols]  # [M, 2] (dx, dy)
    target = np.stack([cols, rows], 1).astype(np.float32) + fwd  # integer-pixel coordinates in the photo
    back = cv2.remap(backward, target[:, 0].reshape(-1, 1), target[:, 1].reshape(-1, 1), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=(1e6, 1e6)).reshape(-1, 2)
    inside = (target[:, 0] >= 0) & (target[:, 0] <= wr - 1) & (target[:, 1] >= 0) & (target[:, 1] <= hr - 1)
    keep = inside & (np.linalg.norm(fwd + back, axis=1) < consistency_px)
    render_pts = np.stack([cols, rows], 1)[keep].astype(np.float64) + 0.5
    query_pts = (target[keep].astype(np.float64) + 0.5) * np.array([wq / wr, hq / hr])
    return Matches(query_pts, render_pts)


def sift_matches(query: np.ndarray, render: np.ndarray, render_mask: np.ndarray | None = None,
                 ratio: float = 0.8, n_features: int = 2000) -> Matches:
    """SIFT keypoints matched by Lowe's ratio test, kept only if mutual nearest neighbours.

    Args:
        query: ``[Hq, Wq, 3]`` the photo.
        render: ``[Hr, Wr, 3]`` the render (any size: SIFT is scale-invariant, pixels stay in each image's own
            coordinates).
        render_mask: optional ``[Hr, Wr]`` bool: where the render's depth can be trusted (keypoints elsewhere
            are not detected).
        ratio: Lowe's ratio (best distance / second best) to accept a match.
        n_features: at most this many keypoints per image.
    Returns:
        :class:`Matches` (possibly empty).
    """
    q_pts, q_desc = sift_keypoints(query, None, n_features)
    r_pts, r_desc = sift_keypoints(render, render_mask, n_features)
    qi, ri = mutual_ratio_matches(q_desc, r_desc, ratio)
    return Matches(q_pts[qi], r_pts[ri])


def dense_feature_matches(query_features: torch.Tensor, render_features: torch.Tensor,
                          query_size: tuple[int, int], render_size: tuple[int, int],
                          min_similarity: float = 0.5) -> Matches:
    """Mutual nearest neighbours between two dense feature maps (e.g. DINOv2 patch tokens), as patch centres.

    Coarse (one match per patch at best: a 14-pixel patch at 224 px input) but robust to appearance changes
    that defeat SIFT.

    Args:
        query_features: ``[hq, wq, D]`` features of the photo.
        render_features: ``[hr, wr, D]`` features of the render.
        query_size, render_size: ``(height, width)`` of the two images in pixels (patch centres are scaled
            to them).
        min_similarity: cosine similarity below which a mutual match is dropped.
    Returns:
        :class:`Matches` in pixel coordinates of each image.
    """
    hq, wq, _ = query_features.shape
    hr, wr, _ = render_features.shape
    fq = torch.nn.functional.normalize(query_features.reshape(hq * wq, -1).float(), dim=-1)
    fr = torch.nn.functional.normalize(render_features.reshape(hr * wr, -1).float(), dim=-1)
    sim = fq @ fr.T
    best_r = sim.argmax(1)
    best_q = sim.argmax(0)
    q_idx = torch.arange(hq * wq)
    keep = (best_q[best_r] == q_idx) & (sim[q_idx, best_r] >= min_similarity)
    q_idx, r_idx = q_idx[keep].numpy(), best_r[keep].numpy()

    return Matches(patch_centres((hq, wq), query_size).numpy()[q_idx],
                   patch_centres((hr, wr), render_size).numpy()[r_idx])
