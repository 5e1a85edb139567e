"""The instance field's contrastive loss, clustering and instance labelling, on hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.panoptic.classify import (
    cluster_label_scores,
    cluster_labels,
    label_cosines,
    label_votes,
    panoptic_instances,
    point_labels,
)
from semfield.panoptic.cluster import InstanceClusterer, nearest_centre
from semfield.panoptic.contrastive import instance_contrastive_loss, mask_centres


def test_contrastive_loss_orthogonal_masks_by_hand():
    # Two masks, centres (1, 0) and (0, 1); every pixel: -1/tau + log(e^{1/tau} + e^0).
    f = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
    g = torch.tensor([0, 0, 1])
    v = torch.zeros(3, dtype=torch.long)
    for tau in (1.0, 0.1):
        expected = math.log1p(math.exp(-1.0 / tau))
        assert float(instance_contrastive_loss(f, g, v, tau)) == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_contrastive_loss_non_orthogonal_by_hand():
    # Mask A: pixels (1, 0) and (0, 1) -> centre (1, 1)/sqrt2; mask B: pixel (-1, 0), centre (-1, 0). tau = 0.5.
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    g = torch.tensor([0, 0, 1])
    v = torch.zeros(3, dtype=torch.long)
    s = 1 / math.sqrt(2)
    tau = 0.5
    # pixel 1: own cos s, other cos -1; pixel 2: own s, other 0; pixel 3: own 1, other -s.
    losses = [-(s / tau) + math.log(math.exp(s / tau) + math.exp(-1 / tau)),
              -(s / tau) + math.log(math.exp(s / tau) + 1.0),
              -(1 / tau) + math.log(math.exp(1 / tau) + math.exp(-s / tau))]
    assert float(instance_contrastive_loss(f, g, v, tau)) == pytest.approx(sum(losses) / 3, rel=1e-6)
    # the pull term adds mean(1 - own cosine)
    pull = np.mean([1 - s, 1 - s, 0.0])
    got = float(instance_contrastive_loss(f, g, v, tau, pull_weight=2.0))
    assert got == pytest.approx(sum(losses) / 3 + 2.0 * pull, rel=1e-6)


def test_contrastive_loss_compares_only_within_a_view():
    # The same two features in two views, each view with one mask: nothing to push apart, loss 0.
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = instance_contrastive_loss(f, torch.tensor([0, 1]), torch.tensor([0, 1]), 0.1)
    assert float(loss) == pytest.approx(0.0, abs=1e-7)
    # unmasked pixels (-1) are left out
    f3 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    a = instance_contrastive_loss(f3, torch.tensor([0, 1, -1]), torch.zeros(3, dtype=torch.long), 0.1)
    b = instance_contrastive_loss(f3[:2], torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long), 0.1)
    assert float(a) == pytest.approx(float(b))


def test_contrastive_loss_gradient_separates_masks():
    torch.manual_seed(0)
    f = torch.randn(40, 8, requires_grad=True)
    g = torch.arange(40) % 4
    v = torch.zeros(40, dtype=torch.long)
    opt = torch.optim.Adam([f], lr=0.05)
    first = float(instance_contrastive_loss(f.detach(), g, v, 0.1))
    for _ in range(100):
        opt.zero_grad()
        loss = instance_contrastive_loss(f, g, v, 0.1)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first
    c = mask_centres(torch.nn.functional.normalize(f.detach(), dim=-1), g, 4)
    off = (c @ c.T)[~torch.eye(4, dtype=torch.bool)]
    assert float(off.max()) < 0.5


def test_nearest_centre_and_clusterer_find_separated_groups():
    rng = np.random.default_rng(0)
    directions = np.eye(6, dtype=np.float32)[:4]
    truth = rng.integers(0, 4, size=2000)
    feats = torch.as_tensor(directions[truth] + 0.05 * rng.standard_normal((2000, 6)).astype(np.float32))
    clusterer = InstanceClusterer(min_cluster_size=30, min_samples=5, max_points=1500, seed=0).fit(feats)
    assert clusterer.centres_.shape == (4, 6)
    pred = clusterer.predict(feats).numpy()
    # each true group maps to exactly one cluster
    for k in range(4):
        assert len(np.unique(pred[truth == k])) == 1
    assert len(np.unique(pred)) == 4
    centres = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert nearest_centre(torch.tensor([[3.0, 1.0], [0.1, 0.2], [-1.0, 0.0]]), centres).tolist() == [0, 1, 1]


def test_leaf_selection_keeps_two_close_groups_that_excess_of_mass_merges():
    """Two instances with similar features (a parent with two children in HDBSCAN's tree): "eom" may keep
    the parent (what collapsed a full-suite scene to 2 clusters), "leaf" keeps the children."""
    rng = np.random.default_rng(0)
    directions = np.eye(6, dtype=np.float32)[:4].copy()
    directions[3] = directions[2]
    directions[3, 3] = 0.3
    directions[3] /= np.linalg.norm(directions[3])
    truth = rng.integers(0, 4, size=2000)
    feats = torch.as_tensor(directions[truth] + 0.05 * rng.standard_normal((2000, 6)).astype(np.float32))
    eom = InstanceClusterer(min_cluster_size=30, min_samples=5, max_points=1500, seed=0, selection="eom").fit(feats)
    assert eom.centres_.shape[0] == 3
    leaf = InstanceClusterer(min_cluster_size=30, min_samples=5, max_points=1500, seed=0).fit(feats)
    assert leaf.centres_.shape[0] == 4
    pred = leaf.predict(feats).numpy()
    majority = [np.bincount(pred[truth == k]).argmax() for k in range(4)]
    assert len(set(majority)) == 4
    assert min(float((pred[truth == k] == majority[k]).mean()) for k in range(4)) > 0.9
    with pytest.raises(SemfieldError, match="leaf"):
        InstanceClusterer(selection="dbscan")


def test_cluster_labels_and_panoptic_instances_by_hand():
    emb = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert point_labels(torch.tensor([[2.0, 1.0], [0.1, 3.0]]), emb).tolist() == [0, 1]
    label, agree = cluster_labels(torch.tensor([2, 2, 0, 1, 1]), torch.tensor([0, 0, 0, 1, 1]), 3, 3)
    assert label.tolist() == [2, 1, -1]
    assert agree.tolist() == pytest.approx([2 / 3, 1.0, 0.0])
    inst, lab = panoptic_instances(np.array([3, 0, 3, 0, 1]), stuff_labels=[0])
    assert inst.tolist() == [0, 3, 1, 3, 2]
    assert lab.tolist() == [3, 3, 1, 0]


def test_label_votes_leave_noise_out():
    votes = label_votes(torch.tensor([2, 2, 0, 1, 1]), torch.tensor([0, 0, 1, -1, 1]), 2, 3)
    assert votes.tolist() == [[0, 0, 2], [1, 1, 0]]


def test_cluster_label_scores_find_an_object_its_pixels_call_table():
    # a teacher that blurs a small object into the table: its pixels are most similar to "table" (0.8 > 0.5)
    # but resemble "ketchup" far more than the table's pixels do
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # table, ketchup
    feats = torch.tensor([[1.0, 0.0]] * 6 + [[0.9, 0.3]] * 2)
    cos = label_cosines(feats, emb)
    assert cos.argmax(dim=1).tolist() == [0] * 8
    cluster = torch.tensor([0] * 5 + [-1] + [1, 1])  # the table, one noise point, the object
    scores = cluster_label_scores(cos, cluster, 2)
    table_z = (cos - cos.mean(0)) / cos.std(0)
    torch.testing.assert_close(scores[1], table_z[6])  # the object's mean standardised cosines
    torch.testing.assert_close(scores[0], table_z[:5].mean(0))  # noise left out
    assert scores.argmax(dim=1).tolist() == [0, 1]


def test_classify_doctests():
    import doctest

    from semfield.panoptic import classify

    assert doctest.testmod(classify, raise_on_error=False).failed == 0

