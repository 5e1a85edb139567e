"""Classes of instances by their semantic features, and the panoptic instance table (stuff merged).

Pure functions on tensors / arrays, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F


def point_labels(features: torch.Tensor, label_embeddings: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index ``[N]`` of the label ``[L, D]`` with the highest cosine to each semantic feature ``[N, D]``."""
    e = F.normalize(label_embeddings.float(), dim=-1)
    if features.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat([(F.normalize(f.float(), dim=-1) @ e.T).argmax(dim=1) for f in features.split(chunk)])


def label_cosines(features: torch.Tensor, label_embeddings: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Cosine ``[N, L]`` of each semantic feature ``[N, D]`` to each label embedding ``[L, D]``."""
    e = F.normalize(label_embeddings.float(), dim=-1)
    if features.shape[0] == 0:
        return torch.zeros(0, e.shape[0])
    return torch.cat([F.normalize(f.float(), dim=-1) @ e.T for f in features.split(chunk)])


def cluster_label_scores(cosines: torch.Tensor, cluster: torch.Tensor, n_clusters: int) -> torch.Tensor:
    """Mean standardised cosine ``[K, L]`` of each cluster's points to each label.

    Each label's cosines ``[N, L]`` are standardised over all N points (minus their mean, over their standard
    deviation) before averaging per cluster (points of cluster -1 are left out): a label scores by how much
    more a cluster resembles it than the scene does. A teacher that blurs small objects into the table they
    stand on makes "table" every such pixel's most similar label, but the object's own label still rises
    several standard deviations above its level elsewhere, while the table's rises about one.

    Example:
        >>> cos = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.5], [0.7, 0.5]])
        >>> cluster_label_scores(cos, torch.tensor([0, 0, 1, 1]), 2).argmax(dim=1).tolist()
        [0, 1]
    """
    z = (cosines - cosines.mean(dim=0)) / cosines.std(dim=0).clamp(min=1e-6)
    keep = cluster >= 0
    sums = torch.zeros(n_clusters, cosines.shape[1]).index_add_(0, cluster[keep].long(), z[keep])
    counts = torch.bincount(cluster[keep].long(), minlength=n_clusters).clamp(min=1)
    return sums / counts[:, None]


def label_votes(point_label: torch.Tensor, cluster: torch.Tensor, n_clusters: int, n_labels: int) -> torch.Tensor:
    """Counts ``[K, L]`` of points per (cluster, label); points with cluster -1 are left out.

    Example:
        >>> label_votes(torch.tensor([2, 2, 0, 1]), torch.tensor([0, 0, 1, -1]), 2, 3).tolist()
        [[0.0, 0.0, 2.0], [1.0, 0.0, 0.0]]
    """
    keep = cluster >= 0
    votes = torch.zeros(n_clusters * n_labels, dtype=torch.float64)
    votes.index_add_(0, cluster[keep].long() * n_labels + point_label[keep].long(),
                     torch.ones(int(keep.sum()), dtype=torch.float64))
    return votes.view(n_clusters, n_labels)


def cluster_labels(point_label: torch.Tensor, cluster: torch.Tensor, n_clusters: int, n_labels: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Majority label of each cluster and the share of its points that voted for it.

    Args:
        point_label: ``[N]`` label index per point (in ``[0, n_labels)``).
        cluster: ``[N]`` cluster index per point (in ``[0, n_clusters)``).
    Returns:
        ``label [K]`` (-1 for a cluster with no point) and ``agreement [K]`` in [0, 1].

    Example:
        >>> cluster_labels(torch.tensor([2, 2, 0, 1, 1]), torch.tensor([0, 0, 0, 1, 1]), 2, 3)
        (tensor([2, 1]), tensor([0.6667, 1.0000]))
    """
    votes = label_votes(point_label, cluster, n_clusters, n_labels)
    total = votes.sum(dim=1)
    best, label = votes.max(dim=1)
    label = torch.where(total > 0, label, torch.full_like(label, -1))
    return label, (best / total.clamp(min=1)).float()


def panoptic_instances(cluster_label: np.ndarray, stuff_labels: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """Instances from labelled clusters: each thing cluster is an instance; all clusters of one stuff label
    merge into one instance (stuff has no instances).

    Args:
        cluster_label: ``[K]`` label index of each cluster.
        stuff_labels: label indices that are stuff.
    Returns:
        ``instance_of_cluster [K]`` (instance ids ``0..I-1``: things in cluster order, then stuff by label)
        and ``instance_label [I]``.

    Example:
        >>> panoptic_instances(np.array([3, 0, 3, 0, 1]), stuff_labels=[0])
        (array([0, 3, 1, 3, 2]), array([3, 3, 1, 0]))
    """
    cluster_label = np.asarray(cluster_label, dtype=np.int64)
    stuff = {int(s) for s in stuff_labels}
    is_stuff = np.array([int(c) in stuff for c in cluster_label], dtype=bool)
    instance = np.full(cluster_label.shape, -1, dtype=np.int64)
    things = np.flatnonzero(~is_stuff)
    instance[things] = np.arange(things.size)
    labels = list(cluster_label[things])
    for s in sorted(set(cluster_label[is_stuff].tolist())):
        instance[is_stuff & (cluster_label == s)] = len(labels)
        labels.append(s)
    return instance, np.asarray(labels, dtype=np.int64)
