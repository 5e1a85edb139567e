"""Localization of text and exemplar queries on a trained run (PROTOCOLS.md, "Localization accuracy").

Each query is answered by a :class:`~semfield.query.engine.QueryEngine`: a 3D point and box on the run's
surface cloud, and relevancy heatmaps at the test views. 2D: the LERF protocol (argmax pixel inside a
ground-truth box) and, labelled apart, the LangSplat variant (30 × 30 box-smoothed), over the (test view,
query) pairs where a target object has a box. 3D (ours): the point inside a target's 3D box (margin 0 and
2 cm) and the best 3D box IoU.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import SemfieldError
from ..eval.localization import box_iou_3d, langsplat_localization_hit, lerf_localization_hit, point_in_box
from ..scene.types import Frame
from .ground_truth import QUERY_KINDS, exemplar_pixel, object_boxes, text_queries, view_boxes

MARGINS = {"": 0.0, "_2cm": 0.02}  # 3D point-in-box margins (metres), key suffix -> margin


def hits_3d(localization, gt: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    """Is the best 3D point inside any target object's box (per margin), and the best 3D box IoU."""
    boxes = object_boxes(gt, ids)
    out: dict[str, Any] = {f"hit3d{suffix}": any(bool(point_in_box(localization.point, b, margin)) for b in boxes)
                           for suffix, margin in MARGINS.items()}
    out["box_iou"] = max(box_iou_3d(localization.box, b) for b in boxes)
    return out


def hits_2d(engine, result, gt: dict[str, Any], views: list[Frame], ids: list[int]) -> dict[str, int]:
    """2D localization of one query result on the views where a target object has a box: how many views,
    and how many hits by the LERF protocol and by the LangSplat variant."""
    n = lerf = langsplat = 0
    for frame in views:
        boxes = view_boxes(gt, frame.name, ids)
        if len(boxes) == 0:
            continue
        heat = engine.heatmap(result, frame)
        n += 1
        lerf += lerf_localization_hit(heat, boxes)
        langsplat += langsplat_localization_hit(heat, boxes)
    return {"views": n, "hits_lerf": lerf, "hits_langsplat": langsplat}


def _result_record(result) -> dict[str, Any]:
    loc = result.localization
    return {"point": [float(v) for v in loc.point], "box": [[float(v) for v in r] for r in loc.box],
            "score": float(loc.score), "found": bool(loc.found)}


def evaluate_text(engine, gt: dict[str, Any], test_views: list[Frame], head: str | None = None
                  ) -> list[dict[str, Any]]:
    """Every phrase of :func:`~.ground_truth.text_queries`, located in 3D and in 2D on ``test_views``."""
    records = []
    for q in text_queries(gt):
        result = engine.text([q["phrase"]], head=head)
        records.append({**q, **_result_record(result), **hits_3d(result.localization, gt, q["objects"]),
                        **hits_2d(engine, result, gt, test_views, q["objects"])})
    return records


def evaluate_exemplars(engine, gt: dict[str, Any], train_views: list[Frame], test_views: list[Frame],
                       head: str) -> list[dict[str, Any]]:
    """One exemplar query per object (the centre of its largest 2D box among the training views, ``head``'s
    features), located in 3D and in 2D on the test views. A pixel that sees no surface is a miss."""
    records = []
    for obj in gt["objects"]:
        picked = exemplar_pixel(gt, train_views, obj["id"])
        if picked is None:
            continue
        frame, x, y = picked
        rec: dict[str, Any] = {"object": obj["name"], "objects": [obj["id"]], "view": frame.name, "pixel": [x, y]}
        try:
            result = engine.exemplar(frame, x, y, head=head)
        except SemfieldError as exc:
            n = sum(len(view_boxes(gt, f.name, [obj["id"]])) > 0 for f in test_views)
            records.append({**rec, "error": str(exc), "box_iou": 0.0, "views": n, "hits_lerf": 0,
                            "hits_langsplat": 0, **{f"hit3d{s}": False for s in MARGINS}})
            continue
        records.append({**rec, **_result_record(result), **hits_3d(result.localization, gt, [obj["id"]]),
                        **hits_2d(engine, result, gt, test_views, [obj["id"]])})
    return records


def accuracies(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """3D accuracy per margin and mean box IoU over queries; 2D accuracy (LERF, LangSplat) over
    (view, query) pairs. None when there is nothing to count."""
    def mean(values):
        return float(np.mean(values)) if len(values) else None

    out = {f"loc3d{s}": mean([r[f"hit3d{s}"] for r in records]) for s in MARGINS}
    out["box_iou"] = mean([r["box_iou"] for r in records])
    pairs = sum(r["views"] for r in records)
    for variant in ("lerf", "langsplat"):
        out[f"loc2d_{variant}"] = sum(r[f"hits_{variant}"] for r in records) / pairs if pairs else None
    out["n_queries"], out["n_view_queries"] = len(records), pairs
    return out


def accuracies_by_kind(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """:func:`accuracies` of all text queries (``"all"``) and of each kind (name, synonym, category)."""
    return {"all": accuracies(records), **{k: accuracies([r for r in records if r["kind"] == k])
                                           for k in QUERY_KINDS}}
