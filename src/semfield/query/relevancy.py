"""Open-vocabulary relevancy of features: LERF text relevancy, exemplar relevancy, closed-set segmentation.

Pure functions on torch tensors (any device, float32/float64), no I/O. Every embedding is unit-normalised
inside the functions, so callers may pass raw field features.

LERF relevancy (see PROTOCOLS.md (the project's evaluation protocols)): for a feature φ, a positive q and negatives n_i,
``p_i = softmax(τ·[φ·q, φ·n_i])[0] = sigmoid(τ·(φ·q − φ·n_i))`` and ``relevancy = min_i p_i``
``= sigmoid(τ·(φ·q − max_i φ·n_i))``. 0.5 means "no more relevant than the closest negative"; masks cut
there. This is single scale (LERF also sweeps 30 scales and keeps the best; we do not).

Exemplar relevancy (a clicked pixel or a crop as the query) is the cosine to the exemplar, calibrated on the
scene: see :func:`exemplar_relevancy_from_cosines`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import SemfieldError

__all__ = [
    "CANONICAL_NEGATIVES",
    "UNKNOWN",
    "exemplar_relevancy",
    "exemplar_relevancy_from_cosines",
    "lerf_relevancy",
    "negative_phrases",
    "segment",
]

CANONICAL_NEGATIVES = ("object", "things", "stuff", "texture")
"""LERF's canonical negative phrases; embed them with the same text tower as the positives."""

EXEMPLAR_CUT = 0.9
"""Exemplar relevancy is 0.5 at 90 % of the way from the scene's median cosine to its best match (measured on
the quick suite's DINOv2 exemplars: a cut of 0.8 gave boxes of IoU 0.27, 0.9 gave 0.36, 0.95 0.41 but with
components of ~180 points, too few for a large object)."""
EXEMPLAR_SHARPNESS = 50.0
"""Slope of the exemplar relevancy in units of that span: 0.007 at 80 %, 0.99 at the best match."""

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


def exemplar_relevancy_from_cosines(cos: Tensor, median: float, best: float, cut: float = EXEMPLAR_CUT,
                                    sharpness: float = EXEMPLAR_SHARPNESS) -> Tensor:
    """Exemplar relevancy from cosines to the exemplar: ``sigmoid(sharpness·(s − cut))`` with
    ``s = (cos − median) / (best − median)``.

    ``s`` is 0 at the scene's median cosine to the exemplar and 1 at its best match, so the rule needs no
    per-teacher scale (a DINOv2 match is ~0.95, a CLIP crop's ~0.3). Relevancy 0.5 is "within ``1 − cut`` of
    the best match, relative to the typical point". A LERF-style contrast against negatives drawn from the
    scene was used before: a point unlike every negative outscored the exemplar's own object, and the
    DINOv2 exemplars of the quick suite landed on their object in 13 % of test views (87 % with this rule;
    BENCHMARKS.md).

    Args:
        cos: ``[...]`` cosines to the exemplar.
        median, best: the median and the max cosine over the scene (e.g. its surface cloud), so that every
            view of one query shares one calibration.
        cut, sharpness: see above.

    Returns:
        ``[...]`` relevancy in (0, 1).

    Example:
        >>> exemplar_relevancy_from_cosines(torch.tensor([0.2, 0.92, 1.0]), median=0.2, best=1.0)
        tensor([2.8625e-20, 5.0000e-01, 9.9331e-01])
    """
    span = max(float(best) - float(median), 1e-6)
    return torch.sigmoid(sharpness * ((cos - float(median)) / span - cut))


def exemplar_relevancy(
    features: Tensor,
    exemplar: Tensor,
    reference: Tensor | None = None,
    cut: float = EXEMPLAR_CUT,
    sharpness: float = EXEMPLAR_SHARPNESS,
) -> Tensor:
    """Relevancy of each feature to an exemplar feature (e.g. the mean feature of a clicked region), by
    :func:`exemplar_relevancy_from_cosines` calibrated on ``reference`` (the scene's features; default
    ``features`` itself).

    Args:
        features: ``[..., D]`` features; exemplar: ``[D]``; reference: optional ``[..., D]``.
        cut, sharpness: see :func:`exemplar_relevancy_from_cosines`.

    Returns:
        ``[...]`` relevancy in (0, 1).

    Example:
        >>> feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
        >>> exemplar_relevancy(feats, torch.tensor([1.0, 0.0])).round(decimals=4)
        tensor([0.9933, 0.0000, 0.0000])
    """
    if not isinstance(exemplar, Tensor) or exemplar.ndim != 1:
        raise SemfieldError("exemplar_relevancy: exemplar must be a [D] tensor")
    phi = _unit(features, "exemplar_relevancy features")
    e = _unit(exemplar, "exemplar_relevancy exemplar").to(phi)
    if e.shape != phi.shape[-1:]:
        raise SemfieldError(f"exemplar_relevancy: exemplar must be [{phi.shape[-1]}], got {tuple(exemplar.shape)}")
    cos = phi @ e
    ref = cos if reference is None else _unit(reference, "exemplar_relevancy reference").to(phi) @ e
    if ref.numel() == 0:
        raise SemfieldError("exemplar_relevancy: the reference has no features")
    return exemplar_relevancy_from_cosines(cos, float(ref.median()), float(ref.max()), cut, sharpness)


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
