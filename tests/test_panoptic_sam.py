"""SAM automatic masks: the pure steps by hand, and the whole generator on a tiny random SamModel saved and
loaded from disk (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.panoptic.masks_sam import (
    SamMasks,
    box_nms,
    mask_boxes,
    paint_segments,
    point_grid,
    stability_score,
)


def test_point_grid_cell_centres():
    g = point_grid(2)
    assert g.tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]


def test_stability_score_by_hand():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]], [[-2.0, -2.0, -2.0, -2.0]]])
    # mask 0: > +1 keeps 1 pixel, > -1 keeps 3: 1/3; mask 1: empty at both: 0
    assert stability_score(logits, 0.0, 1.0).tolist() == pytest.approx([1 / 3, 0.0])


def test_mask_boxes_and_nms():
    masks = torch.zeros(3, 10, 10, dtype=torch.bool)
    masks[0, 2:6, 1:5] = True
    masks[1, 2:6, 1:6] = True  # box IoU with mask 0: 16 / 20 = 0.8
    masks[2, 7:9, 7:9] = True
    boxes = mask_boxes(masks)
    assert boxes[0].tolist() == [1, 2, 5, 6]
    keep = box_nms(boxes, torch.tensor([0.9, 0.95, 0.5]), iou_threshold=0.7)
    assert keep.tolist() == [1, 2]
    assert box_nms(boxes, torch.tensor([0.9, 0.95, 0.5]), iou_threshold=0.85).tolist() == [1, 0, 2]


def test_paint_segments_keeps_small_masks_on_top():
    masks = torch.zeros(3, 6, 6, dtype=torch.bool)
    masks[0] = True  # the whole image
    masks[1, 1:3, 1:3] = True
    masks[2, 5, 5] = True  # one pixel: dropped with min_pixels 2
    seg = paint_segments(masks, min_pixels=2)
    assert seg[1, 1] != seg[0, 0] and seg[0, 0] >= 0 and seg[1, 1] >= 0
    assert seg[5, 5] == -1
    assert sorted(np.unique(seg).tolist()) == [-1, 0, 1]


def _tiny_sam():
    from transformers import SamConfig, SamModel

    config = SamConfig(
        vision_config={"hidden_size": 32, "output_channels": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16, "window_size": 2, "global_attn_indexes": [1],
                       "mlp_dim": 64, "num_pos_feats": 8},
        prompt_encoder_config={"hidden_size": 16, "image_size": 64, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 16, "mlp_dim": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                             "iou_head_hidden_dim": 16})
    torch.manual_seed(0)
    return SamModel(config).eval()


def test_sam_generator_on_a_tiny_random_model(tmp_path):
    pytest.importorskip("transformers")
    model = _tiny_sam()
    model.save_pretrained(tmp_path / "sam")
    sam = SamMasks.load(str(tmp_path / "sam"), points_per_side=4, points_per_batch=5, pred_iou_thresh=-1e9,
                        stability_thresh=0.0, nms_iou=0.7, min_pixels=1)
    image = torch.rand(40, 50, 3, generator=torch.Generator().manual_seed(1))
    seg = sam.masks(image)
    assert seg.shape == (40, 50) and seg.dtype == np.int64
    ids = np.unique(seg[seg >= 0])
    assert ids.size >= 1 and (ids == np.arange(ids.size)).all()
    np.testing.assert_array_equal(seg, sam.masks(image))  # deterministic
    assert sam.settings()["weights"] == SamMasks(model).settings()["weights"]
    # filters that reject everything leave no mask
    strict = SamMasks(model, points_per_side=2, pred_iou_thresh=1e9)
    assert (strict.masks(image) == -1).all()


def test_sam_missing_weights_is_one_line_error(tmp_path):
    with pytest.raises(SemfieldError, match="cannot load SAM weights"):
        SamMasks.load(str(tmp_path / "nowhere"))
