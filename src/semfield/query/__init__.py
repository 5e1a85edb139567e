"""Queries on distilled features: text / exemplar relevancy, closed-set segmentation, 3D localization."""

from .localize import Localization, localize
from .relevancy import (
    CANONICAL_NEGATIVES,
    UNKNOWN,
    exemplar_relevancy,
    lerf_relevancy,
    negative_phrases,
    segment,
)

__all__ = [
    "CANONICAL_NEGATIVES",
    "UNKNOWN",
    "Localization",
    "exemplar_relevancy",
    "lerf_relevancy",
    "localize",
    "negative_phrases",
    "segment",
]
