"""Volume-rendering compositing (emission-absorption model, piecewise-constant density)."""

from __future__ import annotations

import torch


def alpha_from_density(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Opacity of each interval: ``1 - exp(-sigma * delta)``; shapes ``[R, S]``."""
    return 1.0 - torch.exp(-sigma * deltas)


def weights_from_alpha(alpha: torch.Tensor, return_transmittance: bool = False):
    """Compositing weights ``w_i = alpha_i * prod_{j<i} (1 - alpha_j)``.

    Args:
        alpha: ``[R, S]`` opacities in [0, 1], ordered front to back.
        return_transmittance: also return the transmittance in front of each sample ``[R, S]``.
    Returns:
        weights ``[R, S]``, the transmittance left after the last sample ``[R]``, and with
        ``return_transmittance`` the transmittance ``T_i = prod_{j<i} (1 - alpha_j)`` ``[R, S]``.
    """
    # log-space cumulative product: stable and cheap on CPU.
    log_t = torch.log1p(-alpha.clamp(max=1.0 - 1e-7)).cumsum(dim=-1)
    trans = torch.exp(torch.cat([torch.zeros_like(log_t[:, :1]), log_t[:, :-1]], dim=-1))
    weights = alpha * trans
    if return_transmittance:
        return weights, torch.exp(log_t[:, -1]), trans
    return weights, torch.exp(log_t[:, -1])


def composite(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Weighted sum along the ray: ``weights [R, S]``, ``values [R, S, C]`` → ``[R, C]``."""
    return torch.einsum("rs,rsc->rc", weights, values)


def expected_depth(weights: torch.Tensor, t_mid: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """Expected ray distance, with the missing mass (1 - Σw) placed at ``far [R]``: ``[R]``."""
    acc = weights.sum(dim=-1)
    return (weights * t_mid).sum(dim=-1) + (1.0 - acc).clamp(min=0.0) * far


def median_depth(weights: torch.Tensor, t_mid: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
    """Median ray distance ``[R]``: where the accumulated weight first reaches 1/2 (``far`` if it never does).

    Unlike the expected distance, a thin veil of fog in front of a surface or behind it does not pull the
    median off the surface, so it is the depth to back-project surface points from.

    Args:
        weights, t_mid: ``[R, S]`` compositing weights and sample distances (sorted along each ray).
        far: ``[R]`` the distance of whatever lies behind the last sample (the boundary).
    """
    if weights.shape[-1] == 0:
        return far.clone()
    cw = torch.cumsum(weights, dim=-1)
    first = (cw < 0.5).sum(dim=-1, keepdim=True)
    reached = first[:, 0] < weights.shape[-1]
    picked = t_mid.gather(1, first.clamp(max=weights.shape[-1] - 1))[:, 0]
    return torch.where(reached, picked, far)


def distortion_loss(weights: torch.Tensor, t: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360's distortion loss per ray, in O(S) with cumulative sums.

    ``L = Σ_i Σ_j w_i w_j |t_i - t_j| + 1/3 Σ_i w_i² δ_i``: small when a ray's weight sits in one short
    interval, so it removes fog and floaters. Samples must be sorted along each ray.

    Args:
        weights, t, deltas: ``[R, S]`` compositing weights, sample distances and interval lengths.
    Returns:
        ``[R]`` loss per ray (in the units of ``t``).
    """
    wt = weights * t
    w_before = torch.cumsum(weights, dim=-1) - weights
    wt_before = torch.cumsum(wt, dim=-1) - wt
    cross = 2.0 * (weights * (t * w_before - wt_before)).sum(dim=-1)
    return cross + (weights.square() * deltas).sum(dim=-1) / 3.0


def near_opacity(alpha: torch.Tensor, t: torch.Tensor, distance: float | torch.Tensor) -> torch.Tensor:
    """Summed opacity of the samples closer to the camera than ``distance``, per ray.

    The occlusion regulariser of FreeNeRF: nothing a training camera photographs sits right in front of
    it, so density there is a floater that tints that one view. Penalising it removes the fog sheets
    that otherwise hang in front of cameras placed near the training ones.

    Args:
        alpha, t: ``[R, S]`` per-sample opacity and distance along the ray.
        distance: scalar or ``[R]`` distance below which samples are penalised.
    Returns:
        ``[R]`` sum of the near samples' alpha.
    """
    d = torch.as_tensor(distance, dtype=t.dtype, device=t.device)
    near = t < (d[:, None] if d.ndim else d)
    return (alpha * near).sum(dim=-1)
