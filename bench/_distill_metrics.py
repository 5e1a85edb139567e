"""Metrics of the distillation benchmark (``bench_distill.py``), computed on one trained run with teachers.

Each function answers one question on a :class:`~semfield.query.engine.QueryEngine` (or the run's field)
and returns JSON-ready values; ``bench_distill.py`` runs them in its query subprocess and takes medians.
Protocols: PROTOCOLS.md ("Localization accuracy", "2D semantic segmentation"); ground truth from the
generated scene's ``scene.json`` (objects with ``id``, ``name``, ``synonyms``, ``category``, ``box_min`` /
``box_max``; ``views[name]["boxes"][str(id)] = [x0, y0, x1, y1]`` with x1 / y1 exclusive, which is the
``"centers"`` box convention of :mod:`semfield.eval.localization`).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from semfield.errors import SemfieldError
from semfield.eval.feature_fidelity import centred_feature_cosine, feature_cosine
from semfield.eval.localization import (
    box_iou_3d,
    langsplat_localization_hit,
    lerf_localization_hit,
    point_in_box,
)
from semfield.eval.segmentation import confusion_matrix, segmentation_scores
from semfield.field.renderer import render_image
from semfield.query.bake import MIN_ACC
from semfield.scene.images import load_uint
from semfield.scene.types import Frame

MARGINS = {"": 0.0, "_2cm": 0.02}  # 3D point-in-box margins (metres), key suffix -> margin
IGNORED_CLASSES = ("unlabelled",)  # left out of the segmentation label set (its pixels are ignored)
SHIFT_METRES = 0.10  # how far a test camera moves (along its own x axis) for the "new viewpoint" latency


# ----- queries and their ground truth ------------------------------------------------------------------
def text_queries(gt: dict[str, Any]) -> list[dict[str, Any]]:
    """Phrases to ask: each object's name and synonyms (target: that object), and each category once
    (target: every object of that category). ``[{"phrase", "kind", "objects": [id, ...]}]``."""
    queries = []
    for obj in gt["objects"]:
        queries.append({"phrase": obj["name"], "kind": "name", "objects": [obj["id"]]})
        queries += [{"phrase": s, "kind": "synonym", "objects": [obj["id"]]} for s in obj.get("synonyms", [])]
    categories: dict[str, list[int]] = {}
    for obj in gt["objects"]:
        if obj.get("category"):
            categories.setdefault(obj["category"], []).append(obj["id"])
    queries += [{"phrase": c, "kind": "category", "objects": ids} for c, ids in categories.items()]
    return queries


def view_boxes(gt: dict[str, Any], view: str, ids: list[int]) -> np.ndarray:
    """2D boxes ``[B, 4]`` of objects ``ids`` in ``view`` (only those visible there)."""
    boxes = gt["views"].get(view, {}).get("boxes", {})
    found = [boxes[str(i)] for i in ids if str(i) in boxes]
    return np.asarray(found, dtype=np.float64).reshape(-1, 4)


def hits_3d(localization, gt: dict[str, Any], ids: list[int]) -> dict[str, Any]:
    """Is the best 3D point inside any target object's box (per margin), and the best 3D box IoU."""
    objects = {o["id"]: o for o in gt["objects"]}
    boxes = [np.array([objects[i]["box_min"], objects[i]["box_max"]]) for i in ids]
    out: dict[str, Any] = {f"hit3d{suffix}": any(bool(point_in_box(localization.point, b, margin)) for b in boxes)
                           for suffix, margin in MARGINS.items()}
    out["box_iou"] = max(box_iou_3d(localization.box, b) for b in boxes)
    return out


def hits_2d(engine, result, gt: dict[str, Any], views: list[Frame], ids: list[int]) -> dict[str, int]:
    """2D localization of a query result on the views where a target object has a box: how many views,
    and how many hits by the LERF protocol and by the LangSplat variant (heatmaps by the engine)."""
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


def evaluate_text(engine, gt: dict[str, Any], test_views: list[Frame]) -> list[dict[str, Any]]:
    """Every phrase of :func:`text_queries`, located in 3D and in 2D on the test views."""
    records = []
    for q in text_queries(gt):
        result = engine.text([q["phrase"]])
        records.append({**q, **_result_record(result), **hits_3d(result.localization, gt, q["objects"]),
                        **hits_2d(engine, result, gt, test_views, q["objects"])})
    return records


def exemplar_pixel(gt: dict[str, Any], views: list[Frame], obj_id: int) -> tuple[Frame, float, float] | None:
    """The training view where object ``obj_id``'s 2D box is largest, and that box's centre ``(x, y)``."""
    best = None
    for frame in views:
        boxes = view_boxes(gt, frame.name, [obj_id])
        if len(boxes):
            x0, y0, x1, y1 = boxes[0]
            area = (x1 - x0) * (y1 - y0)
            if best is None or area > best[0]:
                best = (area, frame, (x0 + x1) / 2, (y0 + y1) / 2)
    return None if best is None else best[1:]


def evaluate_exemplars(engine, gt: dict[str, Any], train_views: list[Frame], test_views: list[Frame],
                       head: str) -> list[dict[str, Any]]:
    """One exemplar query per object (its box centre in a training view, ``head``'s features), located in
    3D and in 2D on the test views. A pixel that sees no surface is a miss (recorded as ``error``)."""
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
    kinds = ("name", "synonym", "category")
    return {"all": accuracies(records), **{k: accuracies([r for r in records if r["kind"] == k]) for k in kinds}}


# ----- segmentation ------------------------------------------------------------------------------------
def label_set(gt: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """The evaluated class names (the scene's classes but :data:`IGNORED_CLASSES`) and a lookup table
    ``[n_classes]`` from scene class id to label index (-1 = ignored)."""
    labels = [c for c in gt["classes"] if c not in IGNORED_CLASSES]
    lut = np.array([labels.index(c) if c in labels else -1 for c in gt["classes"]], dtype=np.int64)
    return labels, lut


def gt_labels(frame: Frame, lut: np.ndarray) -> np.ndarray:
    """Ground-truth label indices ``[H, W]`` of a view (-1 where the class is not evaluated)."""
    k = frame.intrinsics
    return lut[load_uint(frame.extra["semantic"], expect_size=(k.width, k.height)).astype(np.int64)]


def segmentation_field(engine, gt: dict[str, Any], views: list[Frame]) -> dict[str, Any]:
    """mIoU / mAcc / oAcc of the field's segmentation (QueryEngine.segment_view: argmax cosine over the
    label set; pixels that see no surface count as wrong), one confusion matrix over ``views``."""
    labels, lut = label_set(gt)
    cm = sum(confusion_matrix(engine.segment_view(f, labels), gt_labels(f, lut), len(labels)) for f in views)
    return segmentation_scores(cm).as_dict() | {"labels": labels}


def teacher_segmentation(maps: list[torch.Tensor], embeddings: torch.Tensor, gt: dict[str, Any],
                         views: list[Frame], mode: str) -> dict[str, Any]:
    """The same scores for the teacher applied to the ground-truth test images ("teacher on GT").

    Args:
        maps: the teacher's ``[h, w, D]`` features of each view.
        embeddings: ``[C, D]`` text embeddings of the label set (:func:`label_set` order).
        mode: how the ``[h, w, C]`` cosine logits are upsampled to the image before the argmax:
            ``"nearest"`` (each pixel takes the cell holding its centre: torch ``nearest-exact``) or
            ``"bilinear"`` (cell centres, ``align_corners=False``).
    """
    labels, lut = label_set(gt)
    emb = F.normalize(embeddings.float(), dim=-1)
    torch_mode = {"nearest": "nearest-exact", "bilinear": "bilinear"}[mode]
    cm = 0
    for feats, frame in zip(maps, views, strict=True):
        logits = (F.normalize(feats.float(), dim=-1) @ emb.T).permute(2, 0, 1)[None]  # [1, C, h, w]
        size = (frame.intrinsics.height, frame.intrinsics.width)
        kwargs = {"align_corners": False} if mode == "bilinear" else {}
        pred = F.interpolate(logits, size=size, mode=torch_mode, **kwargs)[0].argmax(dim=0)
        cm = cm + confusion_matrix(pred, gt_labels(frame, lut), len(labels))
    return segmentation_scores(cm).as_dict() | {"labels": labels, "upsampling": mode}


# ----- feature fidelity --------------------------------------------------------------------------------
def fidelity(fld, eval_render, views: list[Frame], teacher_maps: dict[str, list[torch.Tensor]]
             ) -> dict[str, dict[str, float]]:
    """Per map name, the mean over views of the raw and centred cosine between the rendered head and the
    teacher's map of the GT test image (:mod:`semfield.eval.feature_fidelity`; valid = pixels whose ray
    hits a surface). A map name is ``head`` or ``head:variant`` (e.g. ``label:noise_free``)."""
    heads = tuple(dict.fromkeys(name.split(":")[0] for name in teacher_maps))
    opts = replace(eval_render, heads=heads)
    raw: dict[str, list[float]] = {n: [] for n in teacher_maps}
    centred: dict[str, list[float]] = {n: [] for n in teacher_maps}
    for k, frame in enumerate(views):
        c2w = torch.as_tensor(frame.c2w, dtype=torch.float32, device=fld.device_)
        out = render_image(fld, c2w, frame.intrinsics, opts)
        valid = out["acc"] > MIN_ACC
        for name, maps in teacher_maps.items():
            rendered = out[name.split(":")[0]]
            raw[name].append(feature_cosine(rendered, maps[k], valid))
            centred[name].append(centred_feature_cosine(rendered, maps[k], valid))
    return {n: {"cosine": float(np.nanmean(raw[n])), "cosine_centred": float(np.nanmean(centred[n]))}
            for n in teacher_maps}


# ----- latencies ---------------------------------------------------------------------------------------
def _median_ms(seconds: list[float]) -> float | None:
    return 1000.0 * statistics.median(seconds) if seconds else None


def text_latency(engine, phrases: list[str], view: Frame) -> float | None:
    """Median ms of a text query (3D point + box on the cloud) plus its heatmap at ``view``, after one
    warm-up, with every phrase's embedding already cached and ``view``'s depth baked."""
    for p in phrases:
        engine.embed(engine.text_head(), [p])
    engine.heatmap(engine.text([phrases[0]]), view)  # warm-up
    seconds = []
    for p in phrases:
        start = time.perf_counter()
        engine.heatmap(engine.text([p]), view)
        seconds.append(time.perf_counter() - start)
    return _median_ms(seconds)


def exemplar_latency(engine, picks: list[tuple[Frame, float, float]], head: str, view: Frame) -> float | None:
    """Median ms of an exemplar query (3D point + box) plus its heatmap at ``view``, after one warm-up;
    the exemplar views' depths are baked by the warm-up / earlier queries."""
    ok = []
    for frame, x, y in picks:  # warm-up; a pixel that sees no surface is left out
        try:
            engine.heatmap(engine.exemplar(frame, x, y, head=head), view)
            ok.append((frame, x, y))
        except SemfieldError:
            pass
    seconds = []
    for frame, x, y in ok:
        start = time.perf_counter()
        engine.heatmap(engine.exemplar(frame, x, y, head=head), view)
        seconds.append(time.perf_counter() - start)
    return _median_ms(seconds)


def shifted_view(frame: Frame, metres: float = SHIFT_METRES) -> Frame:
    """``frame`` with its camera moved ``metres`` along its own x axis (right), under a new name (so no
    baked depth exists for it)."""
    c2w = np.array(frame.c2w, dtype=np.float64)
    c2w[:3, 3] += metres * c2w[:3, 0]
    return replace(frame, name=f"{frame.name}#shift{metres:g}m", c2w=c2w)


def new_view_latency(engine, result, views: list[Frame]) -> float | None:
    """Median ms to render a query's relevancy at a brand-new viewpoint (each of ``views`` shifted by
    :data:`SHIFT_METRES`): the view's depth render plus the heatmap; nothing baked for it beforehand."""
    seconds = []
    for frame in views:
        new = shifted_view(frame)
        start = time.perf_counter()
        engine.heatmap(result, new)
        seconds.append(time.perf_counter() - start)
    return _median_ms(seconds)


def latencies(engine, gt: dict[str, Any], train_views: list[Frame], test_views: list[Frame], image_head: str
              ) -> dict[str, float | None]:
    """The three query latencies (ms): text and exemplar queries with a heatmap at the first test view, and
    a relevancy map at new viewpoints (the test views shifted)."""
    phrases = [q["phrase"] for q in text_queries(gt)]
    picks = [p for p in (exemplar_pixel(gt, train_views, o["id"]) for o in gt["objects"]) if p is not None]
    return {"text_query_ms": text_latency(engine, phrases, test_views[0]),
            "exemplar_query_ms": exemplar_latency(engine, picks, image_head, test_views[0]),
            "new_view_relevancy_ms": new_view_latency(engine, engine.text([phrases[0]]), test_views)}
