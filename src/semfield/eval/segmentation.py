"""Semantic segmentation metrics (GOV-NeSF / ScanNet / OpenScene style): confusion matrix, IoU, mAcc, oAcc.

numpy, no I/O; torch tensors are accepted and read on the CPU.
See PROTOCOLS.md (the project's evaluation protocols).

Conventions:

- Labels are indices into the evaluated label set ``[0, C)``.
- A ground-truth value outside ``[0, C)`` (an ignore index such as 255 or -1, or a class not in the label
  set) removes that pixel/point from every count.
- A prediction outside ``[0, C)`` (``UNKNOWN = -1`` from :func:`semfield.query.segment`, or a point that
  received no feature) is *wrong*: it counts in the last column of the confusion matrix, adding to the
  false negatives of its ground-truth class and to the total, and to no class's false positives.
- Per scene: ``IoU_c = TP / (TP + FP + FN)``; mIoU and mAcc (mean per-class recall) average over the
  classes present in that scene's ground truth; ``oAcc = trace / total``. :func:`mean_over_scenes` then
  averages the per-scene numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import SemfieldError
from .arrays import as_int

__all__ = ["SegmentationScores", "confusion_matrix", "mean_over_scenes", "segmentation_scores"]


def confusion_matrix(pred, gt, num_classes: int) -> np.ndarray:
    """Confusion matrix of integer label maps; rows = ground truth, columns = prediction.

    Args:
        pred: ``[...]`` predicted labels; values outside ``[0, C)`` mean "no valid prediction".
        gt: ``[...]`` ground-truth labels, same shape; values outside ``[0, C)`` are ignored.
        num_classes: C.

    Returns:
        ``[C, C + 1]`` int64; ``cm[g, p]`` counts pixels of class g predicted p, and column C counts those
        with no valid prediction.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1, -1, 0]), np.array([0, 1, 0, 1, 255]), 2)
        array([[1, 1, 0],
               [0, 1, 1]])
    """
    p = as_int(pred, "confusion_matrix pred", what="labels")
    g = as_int(gt, "confusion_matrix gt", what="labels")
    if p.shape != g.shape:
        raise SemfieldError(f"confusion_matrix: pred {p.shape} and gt {g.shape} differ in shape")
    if num_classes < 1:
        raise SemfieldError(f"confusion_matrix: num_classes must be >= 1, got {num_classes}")
    c = num_classes
    keep = (g >= 0) & (g < c)
    g, p = g[keep], p[keep]
    p = np.where((p >= 0) & (p < c), p, c)
    return np.bincount(g * (c + 1) + p, minlength=c * (c + 1)).reshape(c, c + 1)


@dataclass(frozen=True)
class SegmentationScores:
    """Scores of one scene (see the module docstring).

    Attributes:
        miou: mean IoU over the classes present in the ground truth (NaN if none is).
        macc: mean per-class recall over the same classes.
        oacc: overall accuracy, trace / total.
        iou: ``[C]`` per-class IoU, NaN for classes absent from the ground truth.
        acc: ``[C]`` per-class recall, NaN for absent classes.
        present: ``[C]`` bool, class present in the ground truth.
    """

    miou: float
    macc: float
    oacc: float
    iou: np.ndarray
    acc: np.ndarray
    present: np.ndarray

    def as_dict(self) -> dict:
        """JSON-friendly dict; per-class values of absent classes become None."""

        def listed(v: np.ndarray) -> list:
            return [None if np.isnan(x) else float(x) for x in v]

        return {
            "miou": self.miou,
            "macc": self.macc,
            "oacc": self.oacc,
            "iou": listed(self.iou),
            "acc": listed(self.acc),
            "present": self.present.tolist(),
        }


def segmentation_scores(cm) -> SegmentationScores:
    """IoU / mIoU / mAcc / oAcc from a ``[C, C + 1]`` (or ``[C, C]``) confusion matrix.

    Example:
        >>> s = segmentation_scores(np.array([[1, 1, 0], [0, 1, 1]]))
        >>> s.iou.round(4).tolist(), round(s.miou, 4), s.macc, s.oacc
        ([0.5, 0.3333], 0.4167, 0.5, 0.5)
    """
    m = as_int(cm, "segmentation_scores cm", what="labels")
    if m.ndim != 2 or m.shape[1] not in (m.shape[0], m.shape[0] + 1) or m.shape[0] == 0:
        raise SemfieldError(
            f"segmentation_scores: confusion matrix must be [C, C+1] or [C, C], got {m.shape}"
        )
    c = m.shape[0]
    tp = np.diag(m[:, :c]).astype(np.float64)
    gt_total = m.sum(axis=1).astype(np.float64)  # TP + FN (no-prediction column included)
    pred_total = m[:, :c].sum(axis=0).astype(np.float64)  # TP + FP
    present = gt_total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(present, tp / (gt_total + pred_total - tp), np.nan)
        acc = np.where(present, tp / gt_total, np.nan)
    total = float(m.sum())
    n = int(present.sum())
    return SegmentationScores(
        miou=float(np.nanmean(iou)) if n else float("nan"),
        macc=float(np.nanmean(acc)) if n else float("nan"),
        oacc=float(tp.sum() / total) if total else float("nan"),
        iou=iou,
        acc=acc,
        present=present,
    )


def mean_over_scenes(scores: Sequence[SegmentationScores]) -> dict[str, float]:
    """Average of the per-scene mIoU, mAcc and oAcc (scenes weigh equally), plus ``n_scenes``.

    Example:
        >>> a = segmentation_scores(np.array([[2, 0], [0, 2]]))
        >>> b = segmentation_scores(np.array([[1, 1], [1, 1]]))
        >>> mean_over_scenes([a, b])
        {'miou': 0.6666666666666666, 'macc': 0.75, 'oacc': 0.75, 'n_scenes': 2}
    """
    if not scores:
        raise SemfieldError("mean_over_scenes: no scene scores given")
    out = {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("miou", "macc", "oacc")}
    out["n_scenes"] = len(scores)
    return out
