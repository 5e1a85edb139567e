"""Instances from instance features: HDBSCAN on a sample, then every feature takes the nearest centre.

As PVLFF (PROTOCOLS.md): HDBSCAN (scikit-learn) on sampled unit instance features, a cluster's centre is
the (normalised) mean of its members, and every point or pixel takes the centre nearest by cosine, so
HDBSCAN's noise points get an instance too. Fitted per scene, scikit-learn style (learned state ends in _).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SemfieldError


def nearest_centre(features: torch.Tensor, centres: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Index ``[N]`` of the centre ``[K, D]`` with the highest cosine to each feature ``[N, D]``."""
    if centres.shape[0] == 0:
        raise ValueError("no centres to assign features to")
    c = F.normalize(centres.float(), dim=-1)
    return torch.cat([(F.normalize(f.float(), dim=-1) @ c.T).argmax(dim=1) for f in features.split(chunk)]) \
        if features.shape[0] else torch.zeros(0, dtype=torch.long)


class InstanceClusterer:
    """HDBSCAN over instance features.

    Args:
        min_cluster_size: HDBSCAN's smallest cluster, in sampled features (PVLFF: 100 of ~200k).
        min_samples: HDBSCAN's density estimate neighbourhood (default: ``min_cluster_size``).
        max_points: at most this many features are clustered (a uniform random sample).
        seed: sampling seed.
        selection: HDBSCAN's ``cluster_selection_method``: "leaf" (the leaves of the condensed tree) or
            "eom" (excess of mass). "eom" may keep one parent cluster over all its children: on one scene of
            the full suite it returned 2 clusters for 10 objects (PQ 20.7; "leaf": 12 clusters, PQ 63.3).

    Attributes (after :meth:`fit`):
        centres_: ``[K, D]`` unit cluster centres, largest cluster first.
        sizes_: ``[K]`` members of each cluster in the sample.
        noise_fraction_: share of the sample HDBSCAN left as noise.
        sample_index_: ``[M]`` indices (into the fitted features) of the clustered sample.
        sample_labels_: ``[M]`` cluster of each sampled feature by HDBSCAN (-1 = noise), in centre order.
    """

    def __init__(self, min_cluster_size: int = 50, min_samples: int | None = None, max_points: int = 20000,
                 seed: int = 0, selection: str = "leaf"):
        if min_cluster_size < 2:
            raise SemfieldError(f"min_cluster_size must be at least 2, got {min_cluster_size}")
        if selection not in ("leaf", "eom"):
            raise SemfieldError(f'cluster selection must be "leaf" or "eom", got {selection!r}')
        self.selection = selection
        self.min_cluster_size, self.min_samples = int(min_cluster_size), min_samples
        self.max_points, self.seed = int(max_points), int(seed)

    def fit(self, features: torch.Tensor) -> InstanceClusterer:
        """Cluster ``features [N, D]`` (normalised here)."""
        from sklearn.cluster import HDBSCAN

        n = features.shape[0]
        if n < self.min_cluster_size:
            raise SemfieldError(f"{n} instance features are too few to cluster (min_cluster_size "
                                f"{self.min_cluster_size})")
        rng = np.random.default_rng(self.seed)
        pick = np.sort(rng.choice(n, size=min(n, self.max_points), replace=False))
        sample = F.normalize(features[torch.as_tensor(pick)].float(), dim=-1)
        labels = HDBSCAN(min_cluster_size=self.min_cluster_size, min_samples=self.min_samples,
                         cluster_selection_method=self.selection, copy=True).fit(sample.numpy()).labels_
        ids, counts = np.unique(labels[labels >= 0], return_counts=True)
        if ids.size == 0:  # all noise: one instance
            ids, counts, labels = np.array([0]), np.array([n]), np.zeros_like(labels)
        order = np.argsort(-counts, kind="stable")
        lab = torch.as_tensor(labels)
        self.centres_ = torch.stack([F.normalize(sample[lab == ids[k]].mean(dim=0), dim=0) for k in order])
        self.sizes_ = counts[order]
        rank = np.full(int(labels.max(initial=-1)) + 2, -1, dtype=np.int64)
        rank[ids[order]] = np.arange(len(order))
        self.sample_index_ = torch.as_tensor(pick)
        self.sample_labels_ = torch.as_tensor(np.where(labels >= 0, rank[labels], -1))
        self.noise_fraction_ = float((labels < 0).mean())
        return self

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """Cluster index ``[N]`` of each feature ``[N, D]`` (nearest centre by cosine)."""
        if not hasattr(self, "centres_"):
            raise RuntimeError("fit the clusterer first")
        return nearest_centre(features, self.centres_)
