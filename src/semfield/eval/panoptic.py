"""Scene-level panoptic quality (PVLFF / Panoptic Lifting): PQ, SQ, RQ; instance coverage, precision, recall.

numpy, no I/O; torch tensors are accepted and read on the CPU.
See PROTOCOLS.md (the project's evaluation protocols).

Inputs are the *stacked* frames of one scene: any shape (e.g. ``[F, H, W]``), flattened, with the same
instance id meaning the same object in every frame, so segments are matched over the whole stack.

Segments and rules of :func:`panoptic_quality`:

- A segment is a ``(class, instance)`` pair; for a stuff class the instance is dropped, so all segments of a
  stuff class merge into one (in prediction and ground truth alike).
- Ground-truth pixels of class ``void_label`` belong to no segment (the void region). Predicted pixels of
  class ``void_label`` belong to no predicted segment.
- A predicted segment p and a ground-truth segment g match when they have the same class and
  ``IoU = |p ∩ g| / (|p| + |g| − |p ∩ g| − |p ∩ void|) > 0.5`` (matches are then unique).
- An unmatched predicted segment is a false positive unless more than half of it is void, then it is
  ignored; an unmatched ground-truth segment is a false negative.
- Per class with TP + FP + FN > 0: ``PQ = ΣIoU(TP) / (TP + ½FP + ½FN)``, ``SQ = ΣIoU / TP`` (0 when TP = 0),
  ``RQ = TP / (TP + ½FP + ½FN)``; then means over those classes, over things, and over stuff (NaN if none).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..errors import SemfieldError
from .arrays import as_int

__all__ = ["PanopticScores", "instance_coverage", "panoptic_quality"]


def _segment_ids(cls: np.ndarray, inst: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense segment ids ``[M]`` (-1 where not kept) and the class of each segment ``[S]``."""
    ids = np.full(cls.shape, -1, dtype=np.int64)
    if not keep.any():
        return ids, np.zeros(0, dtype=np.int64)
    c, i = cls[keep], inst[keep]
    c0, i0 = int(c.min()), int(i.min())
    span = int(i.max()) - i0 + 1
    if (int(c.max()) - c0 + 1) * span >= 2**62:
        raise SemfieldError("panoptic ids span too wide a range to encode; renumber classes / instances")
    codes, inverse = _renumber((c - c0) * span + (i - i0))
    ids[keep] = inverse
    return ids, codes // span + c0


def _renumber(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)`` for codes >= 0, in linear time when their range is small."""
    top = int(codes.max(initial=-1)) + 1
    if top > 1 << 24:
        uniq, inverse = np.unique(codes, return_inverse=True)
        return uniq, inverse.reshape(-1)
    present = np.bincount(codes, minlength=top) > 0
    lut = np.cumsum(present) - 1
    return np.flatnonzero(present), lut[codes]


def _pair_counts(a: np.ndarray, b: np.ndarray, n_b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique ``(a, b)`` pairs over positions where both are >= 0, with their counts."""
    both = (a >= 0) & (b >= 0)
    codes = a[both] * n_b + b[both]
    n_a = int(a.max(initial=-1)) + 1
    if n_a * n_b <= 1 << 24:  # few segments (the usual case): one linear pass
        counts = np.bincount(codes, minlength=n_a * n_b)
        codes = np.flatnonzero(counts)
        counts = counts[codes]
    else:
        codes, counts = np.unique(codes, return_counts=True)
    return codes // n_b, codes % n_b, counts


@dataclass(frozen=True)
class PanopticScores:
    """Scene-level panoptic scores; ``per_class[c]`` holds tp, fp, fn, iou_sum, pq, sq, rq of class c."""

    pq: float
    sq: float
    rq: float
    pq_things: float
    sq_things: float
    rq_things: float
    pq_stuff: float
    sq_stuff: float
    rq_stuff: float
    per_class: dict[int, dict[str, float]] = field(default_factory=dict)


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows])) if rows else float("nan")


def panoptic_quality(
    pred_class,
    pred_instance,
    gt_class,
    gt_instance,
    stuff_classes: Iterable[int] = (),
    void_label: int = -1,
) -> PanopticScores:
    """Scene-level PQ / SQ / RQ of stacked frames (see the module docstring for every rule).

    Args:
        pred_class: ``[...]`` predicted class per pixel (``void_label`` = no segment).
        pred_instance: ``[...]`` predicted instance id per pixel, consistent across frames.
        gt_class: ``[...]`` ground-truth class per pixel (``void_label`` = void region).
        gt_instance: ``[...]`` ground-truth instance id per pixel.
        stuff_classes: classes whose segments merge into one; every other class is a thing.
        void_label: the void class id.

    Returns:
        :class:`PanopticScores`.

    Example:
        >>> gt_c = np.array([1, 1, 1, 1, 2, 2]); gt_i = np.array([0, 0, 1, 1, 0, 0])
        >>> pred_i = np.array([0, 0, 0, 0, 5, 6])  # thing instances merged; stuff split in two
        >>> s = panoptic_quality(gt_c, pred_i, gt_c, gt_i, stuff_classes=[2])
        >>> round(s.pq_things, 4), s.pq_stuff
        (0.0, 1.0)
    """
    pc = as_int(pred_class, "panoptic_quality pred_class").reshape(-1)
    pi = as_int(pred_instance, "panoptic_quality pred_instance").reshape(-1)
    gc = as_int(gt_class, "panoptic_quality gt_class").reshape(-1)
    gi = as_int(gt_instance, "panoptic_quality gt_instance").reshape(-1)
    if not (pc.shape == pi.shape == gc.shape == gi.shape):
        raise SemfieldError(
            f"panoptic_quality: inputs differ in size ({pc.size}, {pi.size}, {gc.size}, {gi.size} pixels)"
        )
    stuff = np.asarray(sorted({int(c) for c in stuff_classes}), dtype=np.int64)
    pi = np.where(np.isin(pc, stuff), 0, pi)
    gi = np.where(np.isin(gc, stuff), 0, gi)
    gt_void = gc == void_label
    p_ids, p_cls = _segment_ids(pc, pi, pc != void_label)
    g_ids, g_cls = _segment_ids(gc, gi, ~gt_void)
    n_p, n_g = len(p_cls), len(g_cls)

    p_area = np.bincount(p_ids[p_ids >= 0], minlength=n_p)
    g_area = np.bincount(g_ids[g_ids >= 0], minlength=n_g)
    p_void = np.bincount(p_ids[(p_ids >= 0) & gt_void], minlength=n_p)

    classes = sorted(set(p_cls.tolist()) | set(g_cls.tolist()))
    stats = {c: {"tp": 0, "fp": 0, "fn": 0, "iou_sum": 0.0} for c in classes}
    p_matched = np.zeros(n_p, dtype=bool)
    g_matched = np.zeros(n_g, dtype=bool)
    pa, ga, inter = _pair_counts(p_ids, g_ids, max(n_g, 1))
    for p, g, i in zip(pa, ga, inter, strict=True):
        if p_cls[p] != g_cls[g]:
            continue
        iou = i / (p_area[p] + g_area[g] - i - p_void[p])
        if iou > 0.5:
            p_matched[p] = g_matched[g] = True
            stats[int(g_cls[g])]["tp"] += 1
            stats[int(g_cls[g])]["iou_sum"] += float(iou)
    for g in np.flatnonzero(~g_matched):
        stats[int(g_cls[g])]["fn"] += 1
    for p in np.flatnonzero(~p_matched):
        if p_void[p] / p_area[p] > 0.5:
            continue
        stats[int(p_cls[p])]["fp"] += 1

    rows, per_class = {"all": [], "things": [], "stuff": []}, {}
    for c, s in stats.items():
        tp, fp, fn = s["tp"], s["fp"], s["fn"]
        if tp + fp + fn == 0:
            continue
        denom = tp + 0.5 * fp + 0.5 * fn
        row = dict(s, pq=s["iou_sum"] / denom, sq=s["iou_sum"] / tp if tp else 0.0, rq=tp / denom)
        per_class[c] = row
        rows["all"].append(row)
        rows["stuff" if c in set(stuff.tolist()) else "things"].append(row)
    return PanopticScores(
        **{
            f"{k}{suffix}": _mean(rows[group], k)
            for group, suffix in (("all", ""), ("things", "_things"), ("stuff", "_stuff"))
            for k in ("pq", "sq", "rq")
        },
        per_class=per_class,
    )


def instance_coverage(
    pred_instance, gt_instance, valid=None, ignore_id: int = -1, iou_threshold: float = 0.5
) -> dict[str, float]:
    """Class-agnostic instance scores: mean coverage, weighted coverage, precision and recall at IoU > 0.5.

    Instances are the distinct ids other than ``ignore_id`` among the ``valid`` pixels (pass
    ``valid = gt_class != void`` and set stuff pixels' ids to ``ignore_id`` to score things only);
    ``IoU = |p ∩ g| / |p ∪ g|`` on valid pixels. mCov = mean over ground-truth instances of their best IoU;
    mWCov weighs that by the instance's area; precision = share of predicted instances with IoU > threshold to
    some ground-truth instance; recall = share of ground-truth instances with such a prediction.

    Args:
        pred_instance: ``[...]`` predicted instance ids (stacked frames).
        gt_instance: ``[...]`` ground-truth instance ids.
        valid: optional ``[...]`` bool; False pixels are dropped.
        ignore_id: id meaning "no instance".
        iou_threshold: match threshold (strictly greater).

    Returns:
        dict with mcov, mwcov, precision, recall (NaN when undefined), n_gt, n_pred.

    Example:
        >>> m = instance_coverage(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]))
        >>> round(m["mcov"], 4), m["precision"], m["recall"], m["n_gt"]
        (0.5833, 0.5, 0.5, 2)
    """
    p = as_int(pred_instance, "instance_coverage pred_instance").reshape(-1)
    g = as_int(gt_instance, "instance_coverage gt_instance").reshape(-1)
    keep = np.ones(p.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool).reshape(-1)
    if not (p.shape == g.shape == keep.shape):
        raise SemfieldError(
            f"instance_coverage: inputs differ in size ({p.size}, {g.size}, {keep.size} pixels)"
        )
    p_ids, _ = _segment_ids(p, np.zeros_like(p), keep & (p != ignore_id))
    g_ids, _ = _segment_ids(g, np.zeros_like(g), keep & (g != ignore_id))
    n_p, n_g = int(p_ids.max(initial=-1)) + 1, int(g_ids.max(initial=-1)) + 1
    p_area = np.bincount(p_ids[p_ids >= 0], minlength=n_p)
    g_area = np.bincount(g_ids[g_ids >= 0], minlength=n_g)
    best_g = np.zeros(n_g)
    best_p = np.zeros(n_p)
    pa, ga, inter = _pair_counts(p_ids, g_ids, max(n_g, 1))
    iou = inter / (p_area[pa] + g_area[ga] - inter)
    np.maximum.at(best_g, ga, iou)
    np.maximum.at(best_p, pa, iou)
    nan = float("nan")
    return {
        "mcov": float(best_g.mean()) if n_g else nan,
        "mwcov": float((best_g * g_area).sum() / g_area.sum()) if n_g else nan,
        "precision": float((best_p > iou_threshold).mean()) if n_p else nan,
        "recall": float((best_g > iou_threshold).mean()) if n_g else nan,
        "n_gt": n_g,
        "n_pred": n_p,
    }
