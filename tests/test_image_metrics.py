"""Tests for semfield.eval.image_metrics: hand-worked cases and independent references."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from semfield.eval import image_metrics
from semfield.eval.image_metrics import depth_abs_rel, depth_rmse, mse_to_psnr, psnr, ssim

F64 = torch.float64


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=F64)


# --------------------------------------------------------------------------------------------------
# Independent SSIM reference (numpy + scipy.ndimage), written from Wang et al. 2004:
# Gaussian filter sigma 1.5 truncated at radius 5 (11 taps, normalised), population (co)variances,
# then keep only the pixels whose 11 x 11 window lies inside the image ('valid'), mean over map and channels.
# --------------------------------------------------------------------------------------------------
def ssim_reference(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    c1, c2, r = 0.01**2, 0.03**2, 5
    maps = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]

        def g(z):
            return ndimage.gaussian_filter(z, sigma=1.5, truncate=r / 1.5, mode="constant")[r:-r, r:-r]

        mx, my = g(x), g(y)
        vx = g(x * x) - mx * mx
        vy = g(y * y) - my * my
        cxy = g(x * y) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(maps))


def _structured_pairs(rng: np.random.Generator):
    h, w = 40, 52
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    grad = np.stack([xx, yy, 0.5 * (xx + yy)], axis=-1)
    checker = (((np.arange(h)[:, None] // 4) + (np.arange(w)[None, :] // 4)) % 2).astype(float)
    checker = np.repeat(checker[..., None], 3, axis=-1)
    noise = rng.random((h, w, 3))
    blurred = ndimage.gaussian_filter(noise, sigma=(2, 2, 0))
    return [
        ("random_vs_random", rng.random((h, w, 3)), rng.random((h, w, 3))),
        ("noisy_copy", noise, np.clip(noise + 0.05 * rng.standard_normal(noise.shape), 0, 1)),
        ("gradient_vs_noisy", grad, np.clip(grad + 0.1 * rng.standard_normal(grad.shape), 0, 1)),
        ("checker_vs_shifted", checker, np.roll(checker, 2, axis=1)),
        ("inverted", checker, 1.0 - checker),
        ("blurred", noise, blurred),
        ("tiny_11x11", rng.random((11, 11, 3)), rng.random((11, 11, 3))),
        ("one_channel_13x17", rng.random((13, 17, 1)), rng.random((13, 17, 1))),
    ]


# ------------------------------------------------------------------------------------------- PSNR
def test_psnr_constant_error_is_20db():
    target = torch.rand(8, 9, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) * 0.8
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-9)
    assert psnr(target - 0.1, target).item() == pytest.approx(20.0, abs=1e-9)


def test_psnr_exact_power_of_two_error():
    a = torch.zeros(4, 4, 3, dtype=F64)
    # MSE = 0.25 exactly -> 10 log10(4)
    assert psnr(a + 0.5, a).item() == pytest.approx(10 * math.log10(4.0), abs=1e-12)


def test_psnr_identical_is_inf():
    a = torch.rand(5, 6, 3)
    out = psnr(a, a.clone())
    assert math.isinf(out.item()) and out.item() > 0


def test_psnr_mask_ignores_unmasked_errors():
    target = torch.zeros(4, 4, 3, dtype=F64)
    pred = target.clone()
    pred[:, :2] = 0.1  # error 0.1 on the left half
    pred[:, 2:] = 0.9  # huge error on the right half, masked out
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[:, :2] = True
    assert psnr(pred, target, mask).item() == pytest.approx(20.0, abs=1e-9)
    mask_right_exact = torch.zeros(4, 4, dtype=torch.bool)
    pred[:, 3] = 0.0
    mask_right_exact[:, 3] = True
    assert math.isinf(psnr(pred, target, mask_right_exact).item())


def test_psnr_hand_worked_mixed_errors_and_empty_mask():
    # two pixels, one channel each: errors 0.1 and 0.3 -> MSE = (0.01 + 0.09) / 2 = 0.05
    pred = _t([[[0.1], [0.3]]])
    target = torch.zeros_like(pred)
    assert psnr(pred, target).item() == pytest.approx(-10 * math.log10(0.05), abs=1e-9)
    assert math.isnan(psnr(pred, target, torch.zeros(1, 2, dtype=torch.bool)).item())


def test_psnr_batch_pools_mse_and_mask_broadcasts():
    target = torch.zeros(2, 3, 3, 3, dtype=F64)
    pred = target.clone()
    pred[0] = 0.1
    pred[1] = 0.3
    assert psnr(pred, target).item() == pytest.approx(-10 * math.log10(0.05), abs=1e-9)
    mask = torch.ones(3, 3, dtype=torch.bool)  # broadcasts over the batch
    assert psnr(pred, target, mask).item() == pytest.approx(psnr(pred, target).item(), abs=1e-12)


def test_mse_to_psnr():
    assert mse_to_psnr(torch.tensor(0.01, dtype=F64)).item() == pytest.approx(20.0, abs=1e-12)
    assert mse_to_psnr(1.0).item() == 0.0
    assert math.isinf(mse_to_psnr(torch.tensor(0.0)).item())
    out = mse_to_psnr(torch.tensor([1e-2, 1e-3]))
    assert out.shape == (2,) and torch.allclose(out, torch.tensor([20.0, 30.0]))


def test_psnr_rejects_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 5, 3))
    with pytest.raises(TypeError):
        psnr(torch.zeros(4, 4, 3, dtype=torch.uint8), torch.zeros(4, 4, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="bool"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 4, 3), torch.ones(4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        psnr(torch.zeros(4, 4, 3), torch.zeros(4, 4, 3), torch.ones(3, 4, dtype=torch.bool))


# ------------------------------------------------------------------------------------------- SSIM
def test_ssim_identical_is_one():
    a = torch.rand(20, 23, 3, dtype=F64)
    assert ssim(a, a.clone()).item() == pytest.approx(1.0, abs=1e-12)
    const = torch.full((12, 12, 3), 0.3, dtype=F64)
    assert ssim(const, const).item() == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_images_hand_worked():
    # zero variance everywhere: SSIM = (2ab + C1) / (a² + b² + C1)
    c1 = 0.01**2
    for a, b in [(0.0, 1.0), (0.2, 0.6), (0.5, 0.25)]:
        x = torch.full((14, 15, 3), a, dtype=F64)
        y = torch.full((14, 15, 3), b, dtype=F64)
        expected = (2 * a * b + c1) / (a * a + b * b + c1)
        assert ssim(x, y).item() == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("case", range(8))
def test_ssim_matches_numpy_scipy_reference(case):
    name, a, b = _structured_pairs(np.random.default_rng(1234))[case]
    got = ssim(_t(a), _t(b)).item()
    assert got == pytest.approx(ssim_reference(a, b), abs=1e-10), name


def test_ssim_symmetric_and_inverted_is_negative():
    rng = np.random.default_rng(7)
    a, b = _t(rng.random((16, 16, 3))), _t(rng.random((16, 16, 3)))
    assert ssim(a, b).item() == pytest.approx(ssim(b, a).item(), abs=1e-12)
    checker = _structured_pairs(rng)[4][1]
    assert ssim(_t(checker), _t(1 - checker)).item() < 0


def test_ssim_float32_agrees_with_float64():
    rng = np.random.default_rng(3)
    for _, a, b in _structured_pairs(rng):
        s64 = ssim(_t(a), _t(b))
        s32 = ssim(_t(a).float(), _t(b).float())
        assert s32.dtype == torch.float32 and s64.dtype == F64
        assert s32.item() == pytest.approx(s64.item(), abs=1e-5)


def test_ssim_batch_equals_single():
    rng = np.random.default_rng(5)
    pairs = [(a, b) for _, a, b in _structured_pairs(rng)[:4]]
    xs = torch.stack([_t(a) for a, _ in pairs])
    ys = torch.stack([_t(b) for _, b in pairs])
    batch = ssim(xs, ys)
    assert batch.shape == (4,)
    for i, (a, b) in enumerate(pairs):
        single = ssim(_t(a), _t(b))
        assert single.shape == ()
        assert batch[i].item() == pytest.approx(single.item(), abs=1e-12)


def test_ssim_too_small_image_raises():
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(10, 32, 3), torch.rand(10, 32, 3))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(torch.rand(2, 32, 5, 3), torch.rand(2, 32, 5, 3))
    ssim(torch.rand(11, 11, 3), torch.rand(11, 11, 3))  # exactly the window: one SSIM value per channel


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        ssim(torch.rand(16, 16, 3), torch.rand(16, 17, 3))
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        ssim(torch.rand(16, 16), torch.rand(16, 16))


def test_ssim_matches_skimage():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(11)
    for name, a, b in _structured_pairs(rng):
        ref = metrics.structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            channel_axis=-1,
        )
        assert ssim(_t(a), _t(b)).item() == pytest.approx(ref, abs=1e-8), name
        assert ssim(_t(a).float(), _t(b).float()).item() == pytest.approx(ref, abs=1e-4), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_metrics_on_cuda_match_cpu():
    rng = np.random.default_rng(2)
    a, b = _t(rng.random((2, 24, 30, 3))), _t(rng.random((2, 24, 30, 3)))
    for dtype in (torch.float32, F64):
        ca, cb = a.to("cuda", dtype), b.to("cuda", dtype)
        assert torch.allclose(ssim(ca, cb).cpu(), ssim(a.to(dtype), b.to(dtype)), atol=1e-5)
        assert psnr(ca, cb).item() == pytest.approx(psnr(a, b).item(), abs=1e-4)
        assert depth_rmse(ca[..., 0], cb[..., 0]).item() == pytest.approx(
            depth_rmse(a[..., 0], b[..., 0]).item(), abs=1e-5
        )


# ------------------------------------------------------------------------------------------ depth
def test_depth_two_pixel_hand_worked():
    # gt (2, 4), pred (3, 3): abs-rel = (1/2 + 1/4) / 2 = 0.375; rmse = sqrt((1 + 1) / 2) = 1
    pred, gt = _t([[3.0, 3.0]]), _t([[2.0, 4.0]])
    assert depth_abs_rel(pred, gt).item() == pytest.approx(0.375, abs=1e-12)
    assert depth_rmse(pred, gt).item() == pytest.approx(1.0, abs=1e-12)


def test_depth_ignores_zero_negative_and_nonfinite_gt():
    pred = _t([[3.0, 3.0, 100.0, -5.0, 9.0, 1.0]])
    gt = _t([[2.0, 4.0, 0.0, -1.0, float("nan"), float("inf")]])
    assert depth_abs_rel(pred, gt).item() == pytest.approx(0.375, abs=1e-12)
    assert depth_rmse(pred, gt).item() == pytest.approx(1.0, abs=1e-12)


def test_depth_mask():
    pred, gt = _t([[3.0, 3.0], [10.0, 1.0]]), _t([[2.0, 4.0], [1.0, 1.0]])
    mask = torch.tensor([[True, False], [False, True]])
    # kept: (3 vs 2) and (1 vs 1): abs-rel = (0.5 + 0) / 2; rmse = sqrt((1 + 0) / 2)
    assert depth_abs_rel(pred, gt, mask).item() == pytest.approx(0.25, abs=1e-12)
    assert depth_rmse(pred, gt, mask).item() == pytest.approx(math.sqrt(0.5), abs=1e-12)
    # batch [B, H, W] with a mask broadcast over the batch
    bp, bg = torch.stack([pred, pred]), torch.stack([gt, gt])
    assert depth_abs_rel(bp, bg, mask).item() == pytest.approx(0.25, abs=1e-12)


def test_depth_all_invalid_is_nan():
    pred = torch.ones(3, 4)
    assert math.isnan(depth_abs_rel(pred, torch.zeros(3, 4)).item())
    assert math.isnan(depth_rmse(pred, torch.zeros(3, 4)).item())
    no = torch.zeros(3, 4, dtype=torch.bool)
    assert math.isnan(depth_abs_rel(pred, torch.ones(3, 4), no).item())
    assert math.isnan(depth_rmse(pred, torch.ones(3, 4), no).item())


def test_depth_perfect_is_zero_and_dtype_kept():
    gt = torch.rand(5, 6) + 0.5
    assert depth_abs_rel(gt, gt).item() == 0.0
    assert depth_rmse(gt, gt).item() == 0.0
    assert depth_rmse(gt.double(), gt.double()).dtype == F64


def test_docstring_examples():
    result = doctest.testmod(image_metrics, extraglobs={"torch": torch})
    assert result.failed == 0 and result.attempted > 0
