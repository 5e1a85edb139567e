"""Teacher feature maps of the training images, sampled at the pixels of training rays, and the feature loss.

A teacher's map has its own resolution (a ViT gives one vector per patch): feature ``[i, j]`` of an
``h x w`` map of an ``H x W`` image covers rows ``[i H / h, (i + 1) H / h)`` and columns
``[j W / w, (j + 1) W / w)``, so its centre is at pixel ``((j + 0.5) W / w, (i + 0.5) H / h)``. A ray is
supervised with the map bilinearly interpolated at its pixel centre (clamped at the border cells).
"""

from __future__ import annotations

import torch


class FeatureTargets:
    """One teacher's maps for a list of images.

    Args:
        maps: one ``[h_k, w_k, D]`` map per image (sizes may differ between images).
        image_sizes: ``(W_k, H_k)`` of each image in pixels.
        device: where the maps live (stored as float16: 48 maps of 28 x 28 x 768 take 58 MB).

    Attributes:
        mean: ``[D]`` the mean feature over every cell of every map (heads learn features minus it).
    """

    def __init__(self, maps: list[torch.Tensor], image_sizes: list[tuple[int, int]], device="cpu"):
        if len(maps) != len(image_sizes) or not maps:
            raise ValueError("one feature map per image is needed")
        dims = {int(m.shape[-1]) for m in maps}
        if len(dims) != 1:
            raise ValueError(f"feature maps of one teacher differ in width: {sorted(dims)}")
        self.dim = dims.pop()
        hmax = max(int(m.shape[0]) for m in maps)
        wmax = max(int(m.shape[1]) for m in maps)
        padded = torch.zeros(len(maps), hmax, wmax, self.dim, dtype=torch.float16)
        for k, m in enumerate(maps):
            padded[k, : m.shape[0], : m.shape[1]] = m.to(torch.float16)
        self.maps = padded.reshape(-1, self.dim).to(device)
        total = sum(m.shape[0] * m.shape[1] for m in maps)
        self.mean = (sum(m.float().sum(dim=(0, 1)) for m in maps) / total).to(device)  # [D] over all cells
        self.hmax, self.wmax = hmax, wmax
        self.map_hw = torch.tensor([[m.shape[0], m.shape[1]] for m in maps], dtype=torch.float32, device=device)
        self.image_wh = torch.tensor(image_sizes, dtype=torch.float32, device=device)

    def sample(self, image_index: torch.Tensor, pixel: torch.Tensor) -> torch.Tensor:
        """Bilinearly interpolated teacher features at pixel centres.

        Args:
            image_index: ``[R]`` int index of each ray's image.
            pixel: ``[R, 2]`` pixel coordinates (x, y), pixel centres at +0.5.
        Returns:
            ``[R, D]`` float32.
        """
        idx = image_index.long()
        hw = self.map_hw[idx]  # [R, 2] (h, w)
        wh = self.image_wh[idx]  # [R, 2] (W, H)
        fx = (pixel[:, 0] * hw[:, 1] / wh[:, 0] - 0.5).clamp(min=0).minimum(hw[:, 1] - 1)
        fy = (pixel[:, 1] * hw[:, 0] / wh[:, 1] - 0.5).clamp(min=0).minimum(hw[:, 0] - 1)
        x0, y0 = fx.floor(), fy.floor()
        ax, ay = (fx - x0)[:, None], (fy - y0)[:, None]
        x1 = (x0 + 1).minimum(hw[:, 1] - 1)
        y1 = (y0 + 1).minimum(hw[:, 0] - 1)
        base = idx * self.hmax

        def at(y, x):
            return self.maps[((base + y.long()) * self.wmax + x.long())].float()

        top = at(y0, x0) * (1 - ax) + at(y0, x1) * ax
        bottom = at(y1, x0) * (1 - ax) + at(y1, x1) * ax
        return top * (1 - ay) + bottom * ay


# A prediction shorter than this fraction of its target's length counts as this long in the cosine.
COSINE_NORM_FLOOR = 0.01


def floored_cosine(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine similarity ``[R]`` of ``pred`` and ``target`` ``[R, D]``, with the prediction's length floored at
    :data:`COSINE_NORM_FLOOR` times the target's. A cosine's gradient grows as ``1 / |pred|``; a head
    without a decoder starts at exactly zero, where ``F.cosine_similarity`` gives a ``1 / eps`` gradient
    (1e6), and Adam's second moment keeps that for hundreds of steps, so the head hardly moves after its
    first step (a view-dependent head stalled at cosine 0.26 to 0.61 on a teacher it fits exactly from a
    nonzero start). Equal to the cosine wherever ``|pred| >= COSINE_NORM_FLOOR * |target|``."""
    t_norm = target.norm(dim=-1)
    p_norm = pred.norm(dim=-1).maximum(COSINE_NORM_FLOOR * t_norm)
    return (pred * target).sum(dim=-1) / (p_norm * t_norm).clamp(min=1e-12)


def feature_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "cosine_mse") -> torch.Tensor:
    """Mean feature loss over rays.

    Kinds: ``"cosine"`` (``1 - cos``), ``"l1"`` (mean absolute error), ``"cosine_mse"`` (``1 - cos`` plus the
    squared error relative to the batch's mean squared target norm). Heads learn teacher features minus the
    teacher's mean, and a cosine alone leaves the scale of those free: adding the mean back would then tilt
    every feature. The relative squared error pins the scale; the cosine keeps the direction's weight.

    Args:
        pred, target: ``[R, D]``.
    """
    if kind == "cosine_mse":
        scale = target.detach().square().sum(dim=-1).mean().clamp(min=1e-12)
        return feature_loss(pred, target, "cosine") + (pred - target).square().sum(dim=-1).mean() / scale
    if kind == "cosine":
        return (1.0 - floored_cosine(pred, target)).mean()
    if kind == "l1":
        return (pred - target).abs().mean()
    raise ValueError(f"unknown feature loss {kind!r} (cosine_mse, cosine or l1)")
