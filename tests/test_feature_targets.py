"""Teacher feature maps sampled at ray pixels, and the feature losses."""

import math

import pytest
import torch

from semfield.train.features import COSINE_NORM_FLOOR, FeatureTargets, feature_loss, floored_cosine


def test_cell_centres_return_the_cell_and_midpoints_interpolate():
    # a 2 x 4 map of a 4 x 8 image: cells of 2 x 2 pixels, cell (i, j) centred at pixel (2j + 1, 2i + 1)
    fmap = torch.arange(8, dtype=torch.float32).view(2, 4, 1)
    t = FeatureTargets([fmap], [(8, 4)])
    idx = torch.zeros(5, dtype=torch.int64)
    pix = torch.tensor([[1.0, 1.0], [3.0, 1.0], [2.0, 1.0], [2.0, 2.0], [7.0, 3.0]])
    got = t.sample(idx, pix)[:, 0]
    # centre of (0,0)=0, centre of (0,1)=1, halfway between them 0.5, between the four of rows 0-1 and
    # columns 0-1 (0+1+4+5)/4=2.5, centre of the last cell 7
    torch.testing.assert_close(got, torch.tensor([0.0, 1.0, 0.5, 2.5, 7.0]))


def test_border_pixels_clamp_to_the_border_cells():
    fmap = torch.arange(8, dtype=torch.float32).view(2, 4, 1)
    t = FeatureTargets([fmap], [(8, 4)])
    pix = torch.tensor([[0.5, 0.5], [7.5, 3.5], [0.5, 3.5]])
    got = t.sample(torch.zeros(3, dtype=torch.int64), pix)[:, 0]
    torch.testing.assert_close(got, torch.tensor([0.0, 7.0, 4.0]))


def test_images_of_different_sizes_use_their_own_maps():
    a = torch.full((2, 2, 3), 1.0)
    b = torch.full((3, 5, 3), 2.0)
    b[2, 4] = 5.0
    t = FeatureTargets([a, b], [(4, 4), (10, 6)])
    got = t.sample(torch.tensor([0, 1, 1]), torch.tensor([[3.9, 3.9], [1.0, 1.0], [9.5, 5.5]]))
    torch.testing.assert_close(got, torch.tensor([[1.0] * 3, [2.0] * 3, [5.0] * 3]))
    with pytest.raises(ValueError, match="width"):
        FeatureTargets([a, torch.zeros(2, 2, 4)], [(4, 4), (4, 4)])


def test_feature_losses_hand_values():
    pred = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    target = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    # cosines: 1/sqrt(2) and 1 -> mean(1 - cos) = (1 - 1/sqrt(2)) / 2
    assert feature_loss(pred, target, "cosine").item() == pytest.approx((1 - 1 / math.sqrt(2)) / 2, abs=1e-6)
    # |diffs| = (0, 1, 0, 1) -> 0.5
    assert feature_loss(pred, target, "l1").item() == pytest.approx(0.5)
    with pytest.raises(ValueError):
        feature_loss(pred, target, "l2")


def test_cosine_mse_pins_the_scale():
    target = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    # same directions, twice the length: cosine is blind to it, the relative squared error is not
    assert feature_loss(2 * target, target, "cosine").item() == pytest.approx(0.0, abs=1e-6)
    # |2t - t|^2 summed per ray = (1, 4), mean 2.5; mean |t|^2 = 2.5 -> 1.0
    assert feature_loss(2 * target, target, "cosine_mse").item() == pytest.approx(1.0, abs=1e-6)
    assert feature_loss(target, target, "cosine_mse").item() == pytest.approx(0.0, abs=1e-6)


def test_the_cosine_of_a_vanishing_prediction_has_a_bounded_gradient():
    target = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0]], requires_grad=True)
    cos = floored_cosine(pred, target)
    # an ordinary prediction: the plain cosine, 11 / (sqrt(5) * 5)
    assert cos[0].item() == pytest.approx(11 / (math.sqrt(5) * 5), abs=1e-6)
    assert cos[1].item() == 0.0
    cos.sum().backward()
    # at zero the prediction counts as COSINE_NORM_FLOOR * |target| long: gradient target / (0.01 * 2 * 2)
    torch.testing.assert_close(pred.grad[1], target[1] / (COSINE_NORM_FLOOR * 4.0))
    # F.cosine_similarity's gradient there is about target / eps: a million times larger
    zero = torch.zeros(1, 2, requires_grad=True)
    torch.nn.functional.cosine_similarity(zero, target[1:], dim=-1, eps=1e-6).sum().backward()
    assert zero.grad.abs().max() > 1e4 * pred.grad[1].abs().max()


def test_targets_mean_is_over_every_cell_of_every_map():
    a = torch.ones(2, 2, 3)
    b = torch.zeros(1, 2, 3)
    t = FeatureTargets([a, b], [(4, 4), (4, 2)])
    torch.testing.assert_close(t.mean, torch.full((3,), 4 / 6))
