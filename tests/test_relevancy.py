"""Tests for semfield.query.relevancy: hand-worked LERF relevancy, exemplar relevancy, segmentation."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.query import relevancy
from semfield.query.relevancy import (
    CANONICAL_NEGATIVES,
    UNKNOWN,
    exemplar_relevancy,
    exemplar_relevancy_from_cosines,
    lerf_relevancy,
    negative_phrases,
    segment,
)

F64 = torch.float64


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_lerf_relevancy_hand_worked():
    # φ = (4, 3) -> φ̂ = (0.8, 0.6); q1 = (2, 0) -> (1, 0); q2 = (0, 1); negatives n1 = (0, 5) -> (0, 1),
    # n2 = (3, 4) -> (0.6, 0.8).
    # φ̂·q1 = 0.8, φ̂·q2 = 0.6, φ̂·n1 = 0.6, φ̂·n2 = 0.48 + 0.48 = 0.96.
    # q1: p1 = softmax(10·[0.8, 0.6])[0] = sigmoid(2) = 0.880797;
    #     p2 = sigmoid(10·(0.8 - 0.96)) = sigmoid(-1.6) = 0.167982; relevancy = min = 0.167982.
    # q2: p1 = sigmoid(0) = 0.5; p2 = sigmoid(-3.6) = 0.026597; relevancy = 0.026597.
    phi = torch.tensor([[4.0, 3.0]], dtype=F64)
    pos = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=F64)
    neg = torch.tensor([[0.0, 5.0], [3.0, 4.0]], dtype=F64)
    r = lerf_relevancy(phi, pos, neg)
    assert r.shape == (1, 2)
    assert r[0, 0].item() == pytest.approx(0.167982, abs=1e-6)
    assert r[0, 1].item() == pytest.approx(0.026597, abs=1e-6)
    assert r[0, 0].item() == pytest.approx(_sig(-1.6), abs=1e-12)
    # several positives combined: max over positives
    assert lerf_relevancy(phi, pos, neg, reduce="max").item() == pytest.approx(0.167982, abs=1e-6)
    # only n1 as negative: q1 -> sigmoid(2)
    assert lerf_relevancy(phi, pos[:1], neg[:1]).item() == pytest.approx(0.880797, abs=1e-6)


def test_lerf_relevancy_equals_softmax_definition():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(3, 5, 8, generator=g, dtype=F64)
    pos = torch.randn(2, 8, generator=g, dtype=F64)
    neg = torch.randn(4, 8, generator=g, dtype=F64)
    r = lerf_relevancy(feats, pos, neg, tau=10.0)
    f = feats / feats.norm(dim=-1, keepdim=True)
    q = pos / pos.norm(dim=-1, keepdim=True)
    n = neg / neg.norm(dim=-1, keepdim=True)
    ref = torch.empty(3, 5, 2, dtype=F64)
    for p in range(2):
        pairs = torch.stack([(f @ q[p]).unsqueeze(-1).expand(3, 5, 4), f @ n.T], dim=-1)  # [3, 5, N, 2]
        ref[..., p] = torch.softmax(10.0 * pairs, dim=-1)[..., 0].amin(dim=-1)
    np.testing.assert_allclose(r.numpy(), ref.numpy(), rtol=0, atol=1e-12)
    assert r.shape == (3, 5, 2)


def test_negative_phrases_and_errors():
    assert CANONICAL_NEGATIVES == ("object", "things", "stuff", "texture")
    assert negative_phrases() == CANONICAL_NEGATIVES
    assert negative_phrases(["wall", "stuff"]) == CANONICAL_NEGATIVES + ("wall",)
    assert negative_phrases(["wall"], replace=True) == ("wall",)
    with pytest.raises(SemfieldError):
        negative_phrases(replace=True)
    with pytest.raises(SemfieldError, match="positives"):
        lerf_relevancy(torch.ones(2, 3), torch.ones(1, 2), torch.ones(1, 3))
    with pytest.raises(SemfieldError, match="reduce"):
        lerf_relevancy(torch.ones(2, 3), torch.ones(1, 3), torch.ones(1, 3), reduce="mean")


def test_exemplar_relevancy_calibrated_on_the_scene():
    # cosines 0.2 (median), 0.92, 1.0 (best): s = 0, 0.9, 1 -> sigmoid(50·(s − 0.9)) = sigmoid(-45), 0.5, sigmoid(5)
    r = exemplar_relevancy_from_cosines(torch.tensor([0.2, 0.92, 1.0, 0.2], dtype=F64), median=0.2, best=1.0)
    np.testing.assert_allclose(r.numpy(), [1 / (1 + np.exp(45)), 0.5, 1 / (1 + np.exp(-5)), 1 / (1 + np.exp(45))])
    # the same span at a CLIP-like scale (best 0.3, median 0.1): 0.28 is 90 % of the way -> 0.5
    assert exemplar_relevancy_from_cosines(torch.tensor(0.28, dtype=F64), 0.1, 0.3).item() == pytest.approx(0.5)


def test_exemplar_relevancy_ranks_by_similarity_not_by_distance_from_the_rest():
    # Object A (the exemplar's), a look-alike B (cosine ~0.73 to A) and background C, D. B is as unlike the
    # background as A is; what must decide is the similarity to the exemplar: A first, B below 0.5.
    g = torch.Generator().manual_seed(1)
    centres = torch.tensor([[1.0, 0.3, 0, 0], [0.6, -0.3, 0.0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]], dtype=F64)
    feats = torch.cat([c + 0.02 * torch.randn(50, 4, generator=g, dtype=F64) for c in centres])
    r = exemplar_relevancy(feats, feats[:50].mean(dim=0))
    assert r.shape == (200,)
    assert int(r.argmax()) < 50
    assert float(r[:50].median()) > 0.5 and bool((r[50:] < 0.5).all())
    # calibrated on another reference (a scene's cloud), the same cosines give the same order
    r_ref = exemplar_relevancy(feats[:10], feats[:50].mean(dim=0), reference=feats)
    np.testing.assert_allclose(r_ref.numpy(), r[:10].numpy())
    with pytest.raises(SemfieldError, match="exemplar"):
        exemplar_relevancy(feats, torch.ones(3, dtype=F64))


def test_segment_argmax_and_unknown():
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    feats = torch.tensor([[[2.0, 1.0], [1.0, 3.0]], [[-1.0, -0.1], [0.6, 0.8]]])
    # cosines: (2,1)->(0.894, 0.447): 0; (1,3)->(0.316, 0.949): 1;
    # (-1,-0.1)->(-0.995, -0.0995): 1 (best -0.0995);
    # (0.6, 0.8): 1 (0.8)
    assert segment(feats, labels).tolist() == [[0, 1], [1, 1]]
    assert segment(feats, labels, unknown_threshold=0.5).tolist() == [[0, 1], [UNKNOWN, 1]]
    assert segment(feats, labels).dtype == torch.int64


def test_doctests():
    assert doctest.testmod(relevancy, raise_on_error=False).failed == 0
