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
    lerf_relevancy,
    negative_phrases,
    scene_negatives,
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


def test_exemplar_relevancy_with_given_negatives():
    # φ̂ = (0.8, 0.6), e = (1, 0), n = (0, 1): sigmoid(10·(0.8 - 0.6)) = sigmoid(2) = 0.880797
    r = exemplar_relevancy(
        torch.tensor([[4.0, 3.0]], dtype=F64),
        torch.tensor([1.0, 0.0], dtype=F64),
        negatives=torch.tensor([[0.0, 1.0]], dtype=F64),
    )
    assert r.shape == (1,)
    assert r.item() == pytest.approx(0.880797, abs=1e-6)


def test_scene_negatives_hand_worked():
    # exemplar (1, 0, 0); candidates' cosines: A 1, B 0, C 0, D -1 -> median 0.5 -> pool {B, C, D};
    # farthest-point sampling starts at D (least similar), then B (cos(B, D) = 0, first of the tie B/C),
    # then C.
    feats = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [-1.0, 0, 0]], dtype=F64)
    neg = scene_negatives(feats, torch.tensor([1.0, 0, 0], dtype=F64), k=3)
    np.testing.assert_array_equal(neg.numpy(), feats[[3, 1, 2]].numpy())
    assert scene_negatives(feats, torch.tensor([1.0, 0, 0], dtype=F64), k=1).shape == (1, 3)


def test_exemplar_relevancy_scene_negatives_separates_object():
    g = torch.Generator().manual_seed(1)
    centres = torch.eye(3, dtype=F64)  # object A, background B, background C
    feats = torch.cat([c + 0.05 * torch.randn(50, 3, generator=g, dtype=F64) for c in centres])
    exemplar = feats[:50].mean(dim=0)
    r = exemplar_relevancy(feats, exemplar)
    assert r.shape == (150,)
    assert bool((r[:50] > 0.9).all()) and bool((r[50:] < 0.1).all())


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
