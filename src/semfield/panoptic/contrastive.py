"""Contrastive loss of the instance field: pixels of one 2D mask pulled together, of other masks of the same
view pushed apart (InfoNCE against mask centres).

Masks carry no identity across views (a mask source labels each view on its own), so a pixel is compared
only with the masks of its own view. For pixel ``i`` of mask ``m(i)`` in view ``v(i)``, with unit features
``f`` and unit mask centres ``c_k = normalise(mean_{j in k} f_j)``::

    loss_i = -f_i . c_m(i) / tau + log sum_{k in masks of v(i)} exp(f_i . c_k / tau)

and the loss is the mean over pixels (plus an optional pull term, see below). A view with a single mask adds nothing (its only logit is its own).
Centres come from the batch itself (with gradient) unless given, e.g. slowly moving centres kept by the
caller.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mask_centres(features: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Unit mean feature of each group.

    Args:
        features: ``[N, D]`` unit features.
        group: ``[N]`` int64 group index in ``[0, n_groups)``.
        n_groups: number of groups G.
    Returns:
        ``[G, D]`` (a group with no member gets a zero row).
    """
    sums = torch.zeros(n_groups, features.shape[1], dtype=features.dtype, device=features.device)
    sums = sums.index_add(0, group, features)
    return F.normalize(sums, dim=-1, eps=1e-8)


def instance_contrastive_loss(features: torch.Tensor, group: torch.Tensor, view: torch.Tensor,
                              temperature: float = 0.1, centres: torch.Tensor | None = None,
                              pull_weight: float = 0.0) -> torch.Tensor:
    """InfoNCE of pixels against the mask centres of their own view (see the module docstring).

    Args:
        features: ``[N, D]`` rendered instance features (normalised here).
        group: ``[N]`` int mask index, unique over the whole batch (two views never share one); -1 = no mask
            (the pixel is left out).
        view: ``[N]`` int view of each pixel; pixels of one group must share a view.
        temperature: tau (> 0).
        centres: optional ``[G, D]`` centres to compare with (G > max group), instead of the batch's own.
        pull_weight: adds ``pull_weight * mean_i (1 - f_i . c_m(i))``: InfoNCE stops pulling once a pixel's own
            centre wins by a margin, this keeps tightening each mask (what clustering needs).
    Returns:
        scalar loss (0 when no pixel has a mask).

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        >>> loss = instance_contrastive_loss(f, torch.tensor([0, 0, 1]), torch.tensor([0, 0, 0]), 1.0)
        >>> round(float(loss), 4)  # log(1 + e^-1) for every pixel
        0.3133
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    keep = group >= 0
    if not bool(keep.any()):
        return features.sum() * 0.0
    f = F.normalize(features[keep], dim=-1, eps=1e-8)
    g, v = group[keep].long(), view[keep].long()
    n_groups = int(g.max()) + 1
    if centres is None:
        centres = mask_centres(f, g, n_groups)
    elif centres.shape[0] < n_groups:
        raise ValueError(f"{centres.shape[0]} centres for {n_groups} groups")
    group_view = torch.full((centres.shape[0],), -1, dtype=torch.long, device=f.device)
    group_view[g] = v
    logits = f @ centres.T / temperature  # [N, G]
    same_view = group_view[None, :] == v[:, None]
    logits = logits.masked_fill(~same_view, float("-inf"))
    positive = logits.gather(1, g[:, None]).squeeze(1)
    loss = (torch.logsumexp(logits, dim=1) - positive).mean()
    if pull_weight:
        loss = loss + pull_weight * (1.0 - positive * temperature).mean()
    return loss
