"""Factored head features (semfield.query.factored): cosines without decoding equal the decoded ones."""

from __future__ import annotations

import torch

from semfield.field.grid_field import FieldConfig, GridField, HeadConfig
from semfield.query.factored import FactoredFeatures
from semfield.query.relevancy import lerf_relevancy, relevancy_from_cosines

OUTER = [[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]
FOCUS = [[-0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]


def _field() -> GridField:
    heads = {"plain": HeadConfig(dim=5), "lat": HeadConfig(dim=7, latent=3)}
    fld = GridField(FieldConfig(focus_voxel=0.1, heads=heads), outer_aabb=OUTER, focus_aabb=FOCUS)
    torch.manual_seed(0)
    for grid in fld.sparse_grids().values():
        grid.values.normal_()
    with torch.no_grad():
        for p in fld.head_decoders.parameters():
            p.normal_()
        fld.set_head_mean("lat", torch.randn(7))
        fld.set_head_mean("plain", torch.randn(5))
    return fld


def test_cosines_match_the_decoded_features():
    fld = _field()
    points = torch.rand(500, 3) * 1.6 - 0.8
    for head, dim in (("lat", 7), ("plain", 5)):
        table = torch.randn(4, dim) * 3.0  # rows of any length
        factored = FactoredFeatures.from_field(fld, head, points, chunk=128)
        decoded = fld.feature(head, points).detach()
        expected = torch.nn.functional.normalize(decoded, dim=-1) @ torch.nn.functional.normalize(table, dim=-1).T
        torch.testing.assert_close(factored.cosines(table), expected, atol=1e-5, rtol=0)
        # and so LERF relevancy from them equals lerf_relevancy on the decoded features
        rel = relevancy_from_cosines(*factored.cosines(table).split([2, 2], dim=1), reduce="max")
        torch.testing.assert_close(rel, lerf_relevancy(decoded, table[:2], table[2:], reduce="max"),
                                   atol=1e-5, rtol=0)


def test_no_points_gives_empty_cosines():
    factored = FactoredFeatures.from_field(_field(), "lat", torch.zeros(0, 3))
    assert factored.cosines(torch.randn(2, 7)).shape == (0, 2)
