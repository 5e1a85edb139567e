"""Pure pieces of the query path: surface thinning, relevancy overlays, label pictures."""

import numpy as np
import pytest
import torch

from semfield.export.query_pictures import label_picture, palette, relevancy_overlay
from semfield.query.bake import voxel_thin


def test_voxel_thin_keeps_the_first_point_per_cell():
    pts = torch.tensor([[0.01, 0.01, 0.01], [0.02, 0.03, 0.04], [0.15, 0.0, 0.0], [0.01, 0.0, 0.12],
                        [0.16, 0.01, 0.02]])
    # cells of 0.1: points 0 and 1 share a cell, so do 2 and 4; 3 is alone
    assert voxel_thin(pts, 0.1).tolist() == [0, 2, 3]
    assert voxel_thin(torch.zeros(0, 3), 0.1).numel() == 0


def test_relevancy_overlay_colours_only_above_the_cut():
    image = np.full((2, 2, 3), 0.5)
    rel = np.array([[0.2, 0.49], [0.5, 1.0]])
    out = relevancy_overlay(image, rel)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    # below the cut: dimmed grey (0.5 * 0.6 = 0.3 -> 77), identical channels
    assert (out[0, 0] == 77).all() and (out[0, 1] == 77).all()
    # at 1.0: 0.35 * grey + 0.65 * turbo(1) (dark red), so red dominates
    assert out[1, 1, 0] > out[1, 1, 1] and out[1, 1, 0] > out[1, 1, 2]
    with pytest.raises(ValueError):
        relevancy_overlay(image, np.zeros((3, 2)))


def test_label_picture_has_a_legend_row_per_label():
    labels = np.array([[0, 1], [-1, 2]])
    out = label_picture(labels, ["a", "b", "c"])
    assert out.shape == (2 + 3 * 14, 2, 3)
    colours = palette(3)
    assert (out[0, 0] == colours[0]).all() and (out[1, 1] == colours[2]).all()
    assert (out[1, 0] == 0).all()  # no label: black
    assert len({tuple(c) for c in colours}) == 3
