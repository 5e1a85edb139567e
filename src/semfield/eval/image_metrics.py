"""Image-quality and depth metrics for held-out views: PSNR, SSIM, depth abs-rel and RMSE.

Pure functions on torch tensors (CPU or CUDA, float32 or float64), no I/O. Colours are in [0, 1]
(data range 1); depth is in scene units, and a ground-truth depth <= 0 (or non-finite) means "no depth".

SSIM is the standard one of Wang et al. 2004 exactly as NeRF codebases compute it (mip-NeRF / JAX
``compute_ssim``): 11-tap Gaussian window with sigma 1.5 (normalised over its 11 taps), K1 = 0.01,
K2 = 0.03, population (co)variances, 'valid' filtering (no padding, so an H x W image gives an
(H - 10) x (W - 10) SSIM map), mean over the map and the channels. This equals
``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, channel_axis=-1)``: skimage filters with reflect padding but
then crops a border of (11 - 1) // 2 = 5 pixels, and inside that border the 11-tap window never touches the
padding, so the kept values are the 'valid' ones. The only other difference is mip-NeRF's clipping of
variances to >= 0 and of |covariance| to sqrt(var_x var_y), which changes results by rounding error only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["depth_abs_rel", "depth_rmse", "mse_to_psnr", "psnr", "ssim"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(pred: Tensor, target: Tensor, name: str) -> None:
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{name}: pred and target must be torch tensors")
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if not (pred.is_floating_point() and target.is_floating_point()):
        raise TypeError(f"{name}: expected floating-point tensors, got {pred.dtype} and {target.dtype}")


def _valid_mask(mask: Tensor | None, shape: torch.Size, device: torch.device, name: str) -> Tensor:
    """Broadcast an optional bool mask to ``shape``; ``None`` selects everything."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name}: mask must be a bool tensor, got {mask.dtype}")
    try:
        return torch.broadcast_to(mask.to(device), shape)
    except RuntimeError:
        raise ValueError(f"{name}: mask {tuple(mask.shape)} does not broadcast to {tuple(shape)}") from None


def mse_to_psnr(mse: Tensor | float) -> Tensor:
    """PSNR in dB for a mean squared error on data of range 1: ``-10 * log10(mse)``.

    Args:
        mse: tensor of any shape ``[...]`` (or a float), >= 0.

    Returns:
        ``[...]`` PSNR; ``mse == 0`` gives ``+inf``.

    Example:
        >>> mse_to_psnr(torch.tensor(0.01, dtype=torch.float64))
        tensor(20., dtype=torch.float64)
    """
    mse = torch.as_tensor(mse)
    if not mse.is_floating_point():
        mse = mse.to(torch.get_default_dtype())
    return -10.0 * torch.log10(mse)


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Peak signal-to-noise ratio, ``10 * log10(1 / MSE)``, for colours in [0, 1].

    The MSE is pooled over every selected pixel and channel of every image in the input (one number); to
    average per-view PSNRs, as papers do, call this once per view. No clamping is applied.

    Args:
        pred: ``[..., H, W, C]`` rendered image(s), usually C = 3.
        target: ``[..., H, W, C]`` ground truth, same shape.
        mask: optional ``[..., H, W]`` bool (broadcastable to ``pred.shape[:-1]``); True pixels are scored.

    Returns:
        scalar tensor in dB; ``+inf`` when the selected pixels match exactly, NaN when none is selected.

    Example:
        >>> a = torch.zeros(4, 4, 3, dtype=torch.float64)
        >>> psnr(a + 0.1, a)
        tensor(20., dtype=torch.float64)
    """
    _check_pair(pred, target, "psnr")
    if pred.ndim < 3:
        raise ValueError(f"psnr: expected images [..., H, W, C], got shape {tuple(pred.shape)}")
    sq = (pred - target).square()
    if mask is None:
        return mse_to_psnr(sq.mean())
    keep = _valid_mask(mask, pred.shape[:-1], pred.device, "psnr")
    n = keep.sum() * pred.shape[-1]
    if int(n) == 0:
        return torch.tensor(float("nan"), dtype=pred.dtype, device=pred.device)
    mse = sq[keep].sum() / n.to(pred.dtype)
    return mse_to_psnr(mse)


def _gaussian_kernel1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``[size]`` Gaussian taps at offsets ``-(size//2) .. size//2``, normalised to sum 1."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def ssim(pred: Tensor, target: Tensor) -> Tensor:
    """Structural similarity (Wang et al. 2004) as computed by NeRF codebases (mip-NeRF ``compute_ssim``).

    11 x 11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1, 'valid' filtering (no
    padding), mean of the SSIM map over the valid pixels and the channels. Matches
    ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)`` (see the module docstring).

    Args:
        pred: ``[H, W, C]`` or ``[B, H, W, C]`` image(s) in [0, 1], usually C = 3; H, W >= 11.
        target: same shape as ``pred``.

    Returns:
        scalar for ``[H, W, C]`` input, ``[B]`` (one SSIM per image) for ``[B, H, W, C]`` input.

    Raises:
        ValueError: shapes differ, wrong rank, or an image smaller than the 11 x 11 window.

    Example:
        >>> img = torch.rand(32, 32, 3, dtype=torch.float64)
        >>> ssim(img, img)
        tensor(1., dtype=torch.float64)
    """
    _check_pair(pred, target, "ssim")
    if pred.ndim not in (3, 4):
        raise ValueError(f"ssim: expected [H, W, C] or [B, H, W, C], got shape {tuple(pred.shape)}")
    single = pred.ndim == 3
    x = pred.unsqueeze(0) if single else pred
    y = target.unsqueeze(0) if single else target
    b, h, w, c = x.shape
    if h < SSIM_WINDOW or w < SSIM_WINDOW:
        raise ValueError(
            f"ssim: image is {h}x{w} but the Gaussian window is {SSIM_WINDOW}x{SSIM_WINDOW}; "
            f"both sides must be at least {SSIM_WINDOW} pixels"
        )

    # [B, H, W, C] -> [B*C, 1, H, W]; filter x, y, x², y², xy in one batch.
    x = x.permute(0, 3, 1, 2).reshape(b * c, 1, h, w)
    y = y.permute(0, 3, 1, 2).reshape(b * c, 1, h, w)
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=0)
    k = _gaussian_kernel1d(SSIM_WINDOW, SSIM_SIGMA, x.dtype, x.device)
    blurred = F.conv2d(stack, k.view(1, 1, SSIM_WINDOW, 1))  # along H, 'valid'
    blurred = F.conv2d(blurred, k.view(1, 1, 1, SSIM_WINDOW))  # along W, 'valid'
    mu_x, mu_y, e_xx, e_yy, e_xy = blurred.chunk(5, dim=0)

    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = (e_xx - mu_xx).clamp_min(0.0)
    var_y = (e_yy - mu_yy).clamp_min(0.0)
    cov = e_xy - mu_xy
    cov = torch.sign(cov) * torch.minimum(torch.sqrt(var_x * var_y), cov.abs())

    c1 = (SSIM_K1 * 1.0) ** 2
    c2 = (SSIM_K2 * 1.0) ** 2
    smap = ((2 * mu_xy + c1) * (2 * cov + c2)) / ((mu_xx + mu_yy + c1) * (var_x + var_y + c2))
    per_image = smap.reshape(b, -1).mean(dim=1)
    return per_image[0] if single else per_image


def _depth_valid(pred: Tensor, target: Tensor, mask: Tensor | None, name: str) -> Tensor:
    _check_pair(pred, target, name)
    valid = (target > 0) & torch.isfinite(target)
    return valid & _valid_mask(mask, target.shape, target.device, name)


def depth_abs_rel(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute relative depth error, ``mean(|pred - gt| / gt)``, over pixels with finite gt > 0.

    Args:
        pred: ``[...]`` rendered depth (e.g. ``[H, W]`` or ``[B, H, W]``), scene units.
        target: ``[...]`` ground-truth depth, same shape; values <= 0 or non-finite mean "no depth".
        mask: optional bool, broadcastable to ``target.shape``; only True pixels count.

    Returns:
        scalar tensor; NaN when no pixel is valid.

    Example:
        >>> depth_abs_rel(torch.tensor([1.5, 1.0, 7.0]), torch.tensor([1.0, 2.0, 0.0]))
        tensor(0.5000)
    """
    valid = _depth_valid(pred, target, mask, "depth_abs_rel")
    if not bool(valid.any()):
        return torch.tensor(float("nan"), dtype=pred.dtype, device=pred.device)
    gt = target[valid]
    return ((pred[valid] - gt).abs() / gt).mean()


def depth_rmse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Root mean squared depth error, ``sqrt(mean((pred - gt)^2))``, over pixels with finite gt > 0.

    Args:
        pred: ``[...]`` rendered depth, scene units.
        target: ``[...]`` ground-truth depth, same shape; values <= 0 or non-finite mean "no depth".
        mask: optional bool, broadcastable to ``target.shape``; only True pixels count.

    Returns:
        scalar tensor in scene units; NaN when no pixel is valid.

    Example:
        >>> depth_rmse(torch.tensor([1.5, 1.0, 7.0]), torch.tensor([1.0, 2.0, 0.0]))
        tensor(0.7906)
    """
    valid = _depth_valid(pred, target, mask, "depth_rmse")
    if not bool(valid.any()):
        return torch.tensor(float("nan"), dtype=pred.dtype, device=pred.device)
    return (pred[valid] - target[valid]).square().mean().sqrt()
