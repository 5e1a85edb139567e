"""Scene-level panoptic evaluation of a run on a generated scene's views (PROTOCOLS.md: PVLFF protocol).

Ground truth per view: the instance image (object id, 0 = none) and the class image (class 0,
"unlabelled", is void); the scene's ``stuff_classes`` are stuff. Predictions: :class:`.scene_panoptic.ScenePanoptic`
maps, with each label phrase mapped to the ground-truth class of that name.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import SemfieldError
from ..eval.panoptic import instance_coverage, panoptic_quality
from ..query.engine import QueryEngine
from ..run import Run
from ..scene.images import load_uint
from ..scene.types import Frame, Scene
from .scene_panoptic import PanopticSettings, ScenePanoptic

VOID_CLASS = 0  # generated scenes: class 0 is "unlabelled"


def scene_labels(scene: Scene) -> tuple[list[str], list[str]]:
    """A generated scene's class names (void left out) and its stuff class names."""
    gt = scene.ground_truth or {}
    classes, stuff = gt.get("classes"), gt.get("stuff_classes")
    if not isinstance(classes, list) or not isinstance(stuff, list):
        raise SemfieldError("panoptic evaluation needs a generated scene (scene.json with classes and "
                            "stuff_classes)", scene.source)
    return [c for i, c in enumerate(classes) if i != VOID_CLASS], [s for s in stuff if s in classes]


def ground_truth_view(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """``(class [H, W], instance [H, W])`` ground truth of a view of a generated scene."""
    if "semantic" not in frame.extra or "instance" not in frame.extra:
        raise SemfieldError(f"view {frame.name!r} has no ground-truth semantic / instance image", frame.image_path)
    size = (frame.intrinsics.width, frame.intrinsics.height)
    return load_uint(frame.extra["semantic"], size), load_uint(frame.extra["instance"], size)


def score_maps(pred_class: np.ndarray, pred_instance: np.ndarray, gt_class: np.ndarray, gt_instance: np.ndarray,
               stuff_classes: list[int]) -> dict[str, Any]:
    """PQ / SQ / RQ (all, things, stuff) and thing coverage / precision / recall of stacked maps ``[F, H, W]``
    (classes in ground-truth ids, :data:`VOID_CLASS` = void; instance ids consistent across frames)."""
    pq = panoptic_quality(pred_class, pred_instance, gt_class, gt_instance, stuff_classes=stuff_classes,
                          void_label=VOID_CLASS)
    stuff = np.isin(gt_class, stuff_classes)
    gt_things = np.where(stuff | (gt_class == VOID_CLASS) | (gt_instance <= 0), -1, gt_instance)
    pred_things = np.where(np.isin(pred_class, stuff_classes) | (pred_class == VOID_CLASS), -1, pred_instance)
    cov = instance_coverage(pred_things, gt_things, valid=gt_class != VOID_CLASS)
    out = {k: 100.0 * getattr(pq, k) for k in ("pq", "sq", "rq", "pq_things", "sq_things", "rq_things",
                                                "pq_stuff", "sq_stuff", "rq_stuff")}
    out.update({"mcov": 100.0 * cov["mcov"], "mwcov": 100.0 * cov["mwcov"], "precision": 100.0 * cov["precision"],
                "recall": 100.0 * cov["recall"], "n_gt_things": cov["n_gt"], "n_pred_things": cov["n_pred"],
                "per_class": {int(c): {k: float(v) for k, v in row.items()} for c, row in pq.per_class.items()}})
    return out


def evaluate_run(run: Run, scene: Scene, frames: list[Frame] | None = None, labels: list[str] | None = None,
                 stuff: list[str] | None = None, settings: PanopticSettings | None = None,
                 engine: QueryEngine | None = None, progress: bool = False) -> dict[str, Any]:
    """Panoptic scores of a run with an instance head on views of its generated scene.

    Args:
        run: the loaded run; scene: its (generated) scene.
        frames: views to score (default: the test split).
        labels: label phrases, each a class name of the scene (default: every class but "unlabelled").
        stuff: stuff labels (default: the scene's stuff classes).
        settings: clustering settings.
        engine: a query engine on the run to reuse (its teachers and phrase cache), else one is made.
    Returns:
        dict: pq, sq, rq (+ _things, _stuff), mcov, mwcov, precision, recall (percent), n_gt_things,
        n_pred_things, per_class, n_instances, n_clusters, noise_fraction, cluster_seconds (clustering +
        labelling), render_seconds (the sampled training views), view_seconds (all views' maps), n_views; plus ``maps`` (the stacked
        predicted/ground-truth maps, numpy) and ``panoptic`` (the fitted :class:`ScenePanoptic`).
    """
    scene_classes, scene_stuff = scene_labels(scene)
    labels = list(labels or scene_classes)
    stuff = [s for s in (scene_stuff if stuff is None else stuff) if s in labels]
    all_classes = scene.ground_truth["classes"]
    missing = [lab for lab in labels if lab not in all_classes]
    if missing:
        raise SemfieldError(f"labels not among the scene's classes: {', '.join(missing)}", scene.source)
    frames = scene.split("test") if frames is None else frames
    if not frames:
        raise SemfieldError("no views to evaluate", scene.source)
    engine = engine or QueryEngine(run, scene, progress=progress)
    panoptic = ScenePanoptic(engine, labels, stuff, settings).fit(progress=progress)
    class_of_label = np.array([all_classes.index(lab) for lab in labels], dtype=np.int64)
    start = time.perf_counter()
    preds = [panoptic.view(f) for f in frames]
    view_seconds = time.perf_counter() - start
    pred_class = np.stack([np.where(lab >= 0, class_of_label[np.maximum(lab, 0)], VOID_CLASS) for lab, _ in preds])
    pred_instance = np.stack([inst for _, inst in preds])
    gts = [ground_truth_view(f) for f in frames]
    gt_class, gt_instance = np.stack([c for c, _ in gts]), np.stack([i for _, i in gts])
    out = score_maps(pred_class, pred_instance, gt_class, gt_instance, [all_classes.index(s) for s in stuff])
    out.update({"n_instances": len(panoptic.instances), "n_clusters": int(panoptic.clusterer.centres_.shape[0]),
                "noise_fraction": panoptic.clusterer.noise_fraction_, "cluster_seconds": panoptic.seconds,
                "render_seconds": panoptic.render_seconds, "view_seconds": view_seconds, "n_views": len(frames),
                "maps": {"pred_class": pred_class, "pred_instance": pred_instance, "gt_class": gt_class,
                         "gt_instance": gt_instance},
                "panoptic": panoptic})
    return out
