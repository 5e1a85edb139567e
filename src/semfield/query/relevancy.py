"""Open-vocabulary relevancy of features: LERF text relevancy, exemplar relevancy, closed-set segmentation.

Pure functions on torch tensors (any device, float32/float64), no I/O. Every embedding is unit-normalised
inside the functions, so callers may pass raw field features.

LERF relevancy (see PROTOCOLS.md (the project's evaluation protocols)): for a feature φ, a positive q and negatives n_i,
``p_i = softmax(τ·[φ·q, φ·n_i])[0] = sigmoid(τ·(φ·q − φ·n_i))`` and ``relevancy = min_i p_i``
``= sigmoid(τ·(φ·q − max_i φ·n_i))``. 0.5 means "no more relevant than the closest negative"; masks cut
there. This is single scale (LERF also sweeps 30 scales and keeps the best; we do not).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import SemfieldError

__all__ = [
    "CANONICAL_NEGATIVES",
    "UNKNOWN",
    "exemplar_relevancy",
    "lerf_relevancy",
    "negative_phrases",
    "scene_negatives",
    "segment",
]

CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")
"""LERF's canonical negative phrases; embed them with the same text tower as the positives."""

UNKNOWN = -1
"""Label that :func:`segment` gives a feature whose best cosine is below ``unknown_threshold``."""


def negative_phrases(extra: tuple[str, ...] | list[str] = (), replace: bool = False) -> tuple[str, ...]:
    """The negative phrases to embed: the canonical ones extended by ``extra``, or replaced when ``replace``.

    Example:
        >>> negative_phrases(["wall"])
        ('object', 'things', 'stuff', 'texture', 'wall')
    """
    extra = tuple(extra)
    phrases = (
        extra if replace else CANONICAL_NEGATIVES + tuple(p for p in extra if p not in CANONICAL_NEGATIVES)
    )
    if not phrases:
        raise SemfieldError("relevancy needs at least one negative phrase")
    return phrases


def _unit(x: Tensor, name: str) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise SemfieldError(f"{name}: expected a floating-point torch tensor")
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _check_table(table: Tensor, d: int, name: str) -> None:
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] != d:
        raise SemfieldError(f"{name}: expected [K, {d}] with K >= 1, got {tuple(table.shape)}")


def lerf_relevancy(
    features: Tensor,
    positives: Tensor,
    negatives: Tensor,
    tau: float = 10.0,
    reduce: str | None = None,
) -> Tensor:
    """LERF relevancy of each feature to each positive against the negatives (single scale).

    ``r[..., p] = min_i softmax(τ·[φ̂·q̂_p, φ̂·n̂_i])[0]``, computed as ``sigmoid(τ·(φ̂·q̂_p − max_i φ̂·n̂_i))``
    (identical, and stable in float32).

    Args:
        features: ``[..., D]`` features φ (e.g. ``[H, W, D]`` rendered or ``[N, D]`` per point).
        positives: ``[P, D]`` positive query embeddings q.
        negatives: ``[N, D]`` negative embeddings n_i (canonical phrases, user phrases, or both).
        tau: temperature τ (LERF: 10).
        reduce: ``None`` keeps one map per positive; ``"max"`` takes the max over positives, i.e. a feature is
            as relevant as its most relevant positive (a query made of several synonyms).

    Returns:
        ``[..., P]`` relevancy in (0, 1), or ``[...]`` with ``reduce="max"``.

    Example:
        >>> phi = torch.tensor([[1.0, 0.0]])
        >>> lerf_relevancy(phi, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]))
        tensor([[1.0000]])
    """
    phi = _unit(features, "lerf_relevancy features")
    d = phi.shape[-1]
    _check_table(positives, d, "lerf_relevancy positives")
    _check_table(negatives, d, "lerf_relevancy negatives")
    q = _unit(positives, "lerf_relevancy positives").to(phi)
    n = _unit(negatives, "lerf_relevancy negatives").to(phi)
    return relevancy_from_cosines(phi @ q.T, phi @ n.T, tau=tau, reduce=reduce)


def relevancy_from_cosines(pos: Tensor, neg: Tensor, tau: float = 10.0, reduce: str | None = None) -> Tensor:
    """LERF relevancy from precomputed cosines: ``sigmoid(τ·(pos[..., p] − max_i neg[..., i]))``.

    For features held in a factored form whose cosines are cheaper to get directly (see
    :class:`semfield.query.factored.FactoredFeatures`); :func:`lerf_relevancy` is this on ``φ̂·q̂`` and ``φ̂·n̂``.

    Args:
        pos: ``[..., P]`` cosines to the positives; neg: ``[..., N]`` cosines to the negatives (N >= 1).
        tau, reduce: as :func:`lerf_relevancy`.

    Returns:
        ``[..., P]``, or ``[...]`` with ``reduce="max"``.
    """
    if reduce not in (None, "max"):
        raise SemfieldError(f"lerf_relevancy: reduce must be None or 'max', got {reduce!r}")
    rel = torch.sigmoid(tau * (pos - neg.amax(dim=-1, keepdim=True)))
    return rel if reduce is None else rel.amax(dim=-1)


def scene_negatives(
    features: Tensor,
    exemplar: Tensor,
    k: int = 16,
    quantile: float = 0.5,
    max_candidates: int = 4096,
    seed: int = 0,
) -> Tensor:
    """Pick ``k`` diverse negatives for an exemplar among the scene's own features.

    Candidates are up to ``max_candidates`` features drawn at random (seeded); only those whose cosine to
    the exemplar is at or below the ``quantile`` of the candidates' cosines are eligible (the less-similar
    part of the scene, so the exemplar's own object is not taken as a negative); among them ``k`` are picked
    by farthest-point sampling in cosine distance, starting from the one least similar to the exemplar.

    Args:
        features: ``[..., D]`` scene features (all points or pixels of the scene).
        exemplar: ``[D]`` exemplar feature.
        k: number of negatives (fewer if fewer are eligible).
        quantile: in (0, 1]; fraction of the candidates, least similar first, that may serve as negatives.
        max_candidates: subsample size bounding the cost.
        seed: seed of the subsample.

    Returns:
        ``[K, D]`` unit negatives, K <= k.

    Example:
        >>> feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> scene_negatives(feats, torch.tensor([1.0, 0.0]), k=2)
        tensor([[-1.,  0.],
                [ 0.,  1.]])
    """
    if k < 1 or not 0.0 < quantile <= 1.0:
        raise SemfieldError(
            f"scene_negatives: need k >= 1 and 0 < quantile <= 1, got k={k}, quantile={quantile}"
        )
    if not isinstance(features, Tensor):
        raise SemfieldError("scene_negatives features: expected a floating-point torch tensor")
    flat = features.reshape(-1, features.shape[-1])
    if flat.shape[0] == 0:
        raise SemfieldError("scene_negatives: the scene has no features")
    if flat.shape[0] > max_candidates:  # subsample first: normalising every feature of a scene costs more
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(flat.shape[0], generator=gen)[:max_candidates].to(flat.device)
        flat = flat[idx]
    flat = _unit(flat, "scene_negatives features")
    e = _unit(exemplar, "scene_negatives exemplar").to(flat)
    if e.shape != (flat.shape[1],):
        raise SemfieldError(
            f"scene_negatives: exemplar must be [{flat.shape[1]}], got {tuple(exemplar.shape)}"
        )
    sim = flat @ e
    cut = torch.quantile(sim.double(), quantile).to(sim.dtype)
    pool = flat[sim <= cut]
    pool_sim = sim[sim <= cut]
    chosen = [int(pool_sim.argmin())]
    closest = pool @ pool[chosen[0]]  # max cosine of each pool member to the chosen set
    for _ in range(min(k, pool.shape[0]) - 1):
        nxt = int(closest.argmin())
        if float(closest[nxt]) >= 1.0 - 1e-6:
            break  # only duplicates of chosen negatives are left
        chosen.append(nxt)
        closest = torch.maximum(closest, pool @ pool[nxt])
    return pool[chosen]


def exemplar_relevancy(
    features: Tensor,
    exemplar: Tensor,
    negatives: Tensor | None = None,
    tau: float = 10.0,
    k: int = 16,
    quantile: float = 0.5,
    seed: int = 0,
) -> Tensor:
    """Relevancy of each feature to an exemplar feature (e.g. the mean feature of a clicked region).

    Same rule as LERF with the exemplar e as the positive: ``sigmoid(τ·(φ̂·ê − max_i φ̂·n̂_i))``, so 0.5 has
    LERF's meaning: "as similar to some negative as to the exemplar". The negatives are ``negatives`` when
    given (same feature space as the exemplar), otherwise :func:`scene_negatives` of ``features`` itself
    (``k`` diverse features from the less-similar ``quantile`` of the scene). The raw cosine ``φ̂·ê`` is
    just ``features/|features| @ exemplar/|exemplar|`` and needs no helper.

    Args:
        features: ``[..., D]`` features.
        exemplar: ``[D]`` exemplar feature.
        negatives: optional ``[N, D]`` negatives.
        tau: temperature (10, as LERF).
        k, quantile, seed: passed to :func:`scene_negatives` when ``negatives`` is None.

    Returns:
        ``[...]`` relevancy in (0, 1).

    Example:
        >>> feats = torch.tensor([[4.0, 3.0], [3.0, 4.0]])
        >>> exemplar_relevancy(feats, torch.tensor([1.0, 0.0]), negatives=torch.tensor([[0.0, 1.0]]))
        tensor([0.8808, 0.1192])
    """
    if not isinstance(exemplar, Tensor) or exemplar.ndim != 1:
        raise SemfieldError("exemplar_relevancy: exemplar must be a [D] tensor")
    if negatives is None:
        negatives = scene_negatives(features, exemplar, k=k, quantile=quantile, seed=seed)
    return lerf_relevancy(features, exemplar[None], negatives, tau=tau)[..., 0]


def segment(features: Tensor, label_embeddings: Tensor, unknown_threshold: float | None = None) -> Tensor:
    """Closed-set segmentation: the label of highest cosine similarity for each feature.

    Args:
        features: ``[..., D]`` features.
        label_embeddings: ``[L, D]`` one text embedding per label (label index = row).
        unknown_threshold: when given, a feature whose best cosine is below it gets :data:`UNKNOWN` (-1).

    Returns:
        ``[...]`` int64 label indices in ``[0, L)`` (or -1).

    Example:
        >>> feats = torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, -1.0]])
        >>> segment(feats, torch.eye(2), unknown_threshold=0.0)
        tensor([ 0,  1, -1])
    """
    phi = _unit(features, "segment features")
    _check_table(label_embeddings, phi.shape[-1], "segment label_embeddings")
    return labels_from_cosines(phi @ _unit(label_embeddings, "segment label_embeddings").to(phi).T,
                               unknown_threshold)


def labels_from_cosines(sim: Tensor, unknown_threshold: float | None = None) -> Tensor:
    """:func:`segment` from precomputed cosines ``sim [..., L]``: the argmax label (or -1 below the threshold)."""
    best, labels = sim.max(dim=-1)
    if unknown_threshold is not None:
        labels = torch.where(best < unknown_threshold, torch.full_like(labels, UNKNOWN), labels)
    return labels
