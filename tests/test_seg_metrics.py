"""Tests for semfield.eval.segmentation and semfield.eval.fusion3d: hand-worked matrices, a synthetic rig."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.eval import fusion3d, segmentation
from semfield.eval.fusion3d import fuse_features_2d_to_3d, project_points
from semfield.eval.segmentation import confusion_matrix, mean_over_scenes, segmentation_scores


def test_hand_confusion_matrix_and_scores():
    gt = np.array([0, 0, 0, 1, 1, 2, 2, 2, 255, -1, 0])
    pred = np.array([0, 0, 1, 1, 2, 2, 2, -1, 0, 2, 0])
    # pixels 8 and 9 ignored (gt 255, -1); pixel 7 has no valid prediction (column 3)
    cm = confusion_matrix(pred, gt, 3)
    np.testing.assert_array_equal(cm, [[3, 1, 0, 0], [0, 1, 1, 0], [0, 0, 2, 1]])
    s = segmentation_scores(cm)
    # IoU0 = 3/(4+3-3) = 0.75, IoU1 = 1/(2+2-1) = 1/3, IoU2 = 2/(3+3-2) = 0.5
    np.testing.assert_allclose(s.iou, [0.75, 1 / 3, 0.5])
    assert s.miou == pytest.approx((0.75 + 1 / 3 + 0.5) / 3)  # 0.527778
    # recalls 3/4, 1/2, 2/3; oAcc = 6/9
    assert s.macc == pytest.approx((0.75 + 0.5 + 2 / 3) / 3)  # 0.638889
    assert s.oacc == pytest.approx(6 / 9)
    assert s.as_dict()["iou"] == pytest.approx([0.75, 1 / 3, 0.5])


def test_torch_input_and_2d_maps():
    gt = torch.tensor([[0, 1], [1, 1]])
    pred = torch.tensor([[0, 1], [0, 1]])
    np.testing.assert_array_equal(confusion_matrix(pred, gt, 2), [[1, 0, 0], [1, 2, 0]])


def test_class_absent_from_gt_not_averaged():
    # class 2 is predicted once but never in the ground truth: its FP hurts class 0 (through FN), but class 2
    # is not in the mean. IoU0 = 1/(2+1-1) = 0.5, IoU1 = 2/2 = 1 -> mIoU 0.75 (not (0.5+1+0)/3).
    cm = confusion_matrix(np.array([0, 2, 1, 1]), np.array([0, 0, 1, 1]), 3)
    s = segmentation_scores(cm)
    assert np.isnan(s.iou[2]) and not s.present[2]
    assert s.miou == pytest.approx(0.75)
    assert s.macc == pytest.approx(0.75)
    assert s.as_dict()["iou"][2] is None


def test_mean_over_scenes_and_errors():
    a = segmentation_scores(np.array([[2, 0], [0, 2]]))
    b = segmentation_scores(np.array([[1, 1], [1, 1]]))
    m = mean_over_scenes([a, b])
    assert m["miou"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["oacc"] == pytest.approx(0.75) and m["n_scenes"] == 2
    with pytest.raises(SemfieldError):
        mean_over_scenes([])
    with pytest.raises(SemfieldError, match="shape"):
        confusion_matrix(np.zeros(3, int), np.zeros(4, int), 2)
    with pytest.raises(SemfieldError, match="integer"):
        confusion_matrix(np.zeros(3), np.zeros(3, int), 2)
    assert np.isnan(segmentation_scores(np.zeros((2, 3), int)).miou)


def _rig():
    """Three 4 x 4 views, fx = fy = 4, cx = cy = 2 (pixel centres at half-integers).

    view 1: at the origin looking along +z; view 2: at (1, 0, 0), same orientation; view 3: at (4, 0, 2)
    looking along -x (camera x = world +z, y = world +y, z = world -x): R^T (p - t) with a non-identity R.
    """
    K = torch.tensor([[4.0, 0, 2], [0, 4.0, 2], [0, 0, 1]], dtype=torch.float64)
    c2w = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    c2w[1, 0, 3] = 1.0
    c2w[2, :3, :3] = torch.tensor([[0.0, 0, -1], [0, 1, 0], [1, 0, 0]])
    c2w[2, :3, 3] = torch.tensor([4.0, 0, 2])
    d1 = torch.full((4, 4), 2.0)
    d1[0, 0] = 1.6
    d2 = torch.full((4, 4), 2.0)
    d3 = torch.full((4, 4), 1.0)
    d3[2, 2] = 4.0
    f1 = torch.tensor([[[1.0, 0, 0], [2, 0, 0]], [[3, 0, 0], [4, 0, 0]]])  # 2 x 2 cells over a 4 x 4 image
    f2 = torch.tensor([[[0.0, 1, 0], [0, 2, 0]], [[0, 3, 0], [0, 4, 0]]])
    f3 = torch.tensor([[[0.0, 0, 9]]])  # a single cell
    return c2w, K, [d1, d2, d3], [f1, f2, f3]


def test_project_points_convention():
    c2w, K, _, _ = _rig()
    u, v, z = project_points(torch.tensor([[0.0, 0, 2]]), c2w[2], K)
    # p - t = (-4, 0, 0) -> camera (0, 0, 4) -> pixel (2, 2)
    assert (u.item(), v.item(), z.item()) == (2.0, 2.0, 4.0)


def test_fusion_synthetic_rig():
    c2w, K, depths, feats = _rig()
    # P1: pixel (2,2) in view 1 (depth 2, ok), (0,2) in view 2 (ok), (2,2) in view 3 (z 4, ok)
    # P2: behind P1 in view 1 and view 2 (|2 - 4| > 0.25 · 2); off-image in view 3
    # P3: pixel (0,0) in view 1, depth 1.6: |1.6 - 1.5| = 0.1 <= 0.4, ok; off-image in view 2;
    #     pixel (1,1) in view 3, depth 1 vs z 4.75: occluded
    # P4: off-image in views 1 and 2; pixel (0,2) in view 3, depth 1 vs z 2: occluded
    # P5: behind cameras 1 and 2, off-image in view 3
    p1, p2, p3, p4, p5 = [0.0, 0, 2], [0.0, 0, 4], [-0.75, -0.75, 1.5], [2.0, 0, 1], [0.0, 0, -1]
    pts = torch.tensor([p1, p2, p3, p4, p5])
    fused = fuse_features_2d_to_3d(pts, c2w, K, depths, feats)
    assert fused.counts.tolist() == [3, 0, 1, 0, 0]
    assert fused.valid.tolist() == [True, False, True, False, False]
    # P1: view 1 cell (1,1) = (4,0,0); view 2 u = 0, v = 2 -> cell (1,0) = (0,3,0); view 3 (0,0,9)
    np.testing.assert_allclose(fused.features[0].numpy(), [4 / 3, 1.0, 3.0], rtol=1e-6)
    np.testing.assert_array_equal(fused.features[2].numpy(), [1.0, 0, 0])
    assert fused.features[[1, 3, 4]].abs().sum().item() == 0.0
    # a looser tolerance lets view 1 see P2 through P1 (|2 - 4| <= 1.0 · 2)
    assert fuse_features_2d_to_3d(pts, c2w, K, depths, feats, depth_tolerance=1.0).counts[1].item() == 2


def test_fusion_errors():
    c2w, K, depths, feats = _rig()
    with pytest.raises(SemfieldError, match="points"):
        fuse_features_2d_to_3d(torch.zeros(2, 2), c2w, K, depths, feats)
    with pytest.raises(SemfieldError, match="c2w"):
        fuse_features_2d_to_3d(torch.zeros(2, 3), c2w[:2], K, depths, feats)
    with pytest.raises(SemfieldError, match="width"):
        fuse_features_2d_to_3d(torch.zeros(2, 3), c2w, K, depths, feats[:2] + [torch.zeros(1, 1, 2)])


def test_doctests():
    for mod in (segmentation, fusion3d):
        assert doctest.testmod(mod, raise_on_error=False).failed == 0
