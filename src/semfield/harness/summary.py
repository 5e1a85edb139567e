"""The flat summary of an evaluation: the figures ``semfield bench`` tracks over time.

Every key of :data:`SUMMARY_KEYS` is always present; its value is None where the run cannot answer (no
such head, task skipped, a capability semfield does not have yet). Localization accuracies are the LERF
protocol over (test view, query) pairs unless the key says ``langsplat``; ``loc3d`` keys are the 3D
point-in-box accuracy (no margin); ``miou_2d_teacher_gt`` upsamples the teacher's logits nearest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SUMMARY_KEYS = (
    "psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "train_seconds", "peak_rss_mb",
    "feature_cos_teacher", "loc_acc_names", "loc_acc_paraphrases", "loc_acc_categories", "loc_acc_exemplar_dino",
    "loc_acc_names_langsplat", "loc3d_acc_names", "loc3d_acc_paraphrases", "loc3d_acc_categories",
    "loc3d_acc_exemplar_dino", "miou_2d_field", "miou_2d_teacher_gt", "miou_2d_teacher_gt_bilinear",
    "miou_3d_field", "miou_3d_fusion_gtdepth", "miou_3d_fusion_fielddepth", "pq_scene", "sq_scene", "rq_scene",
    "pose_success_5deg_5cm", "pose_success_2deg_2cm", "pose_median_rot_deg", "pose_median_trans_cm",
    "pose_seconds_per_image", "query_latency_ms", "exemplar_latency_ms", "new_view_latency_ms",
)
KIND_KEYS = {"name": "names", "synonym": "paraphrases", "category": "categories"}


def _get(tree: dict[str, Any], *path: str):
    for key in path:
        if not isinstance(tree, dict) or tree.get(key) is None:
            return None
        tree = tree[key]
    return tree


def summary_of(report: dict[str, Any]) -> dict[str, float | None]:
    """Flat figures of one :func:`~.evaluate.evaluate_run` report (:data:`SUMMARY_KEYS`, then per-head
    ``feature_cos_teacher_<head>``, ``feature_cos_centred_<head>``, ``geometric_fidelity_<head>``)."""
    r = report.get("results", {})
    s: dict[str, Any] = dict.fromkeys(SUMMARY_KEYS)
    for key in ("psnr_test", "ssim_test", "depth_abs_rel_test", "depth_abs_rel_fg_test", "train_seconds",
                "peak_rss_mb"):
        s[key] = _get(r, "render", key)
    features = r.get("features") or {}
    heads = {name: v for name, v in features.items() if ":" not in name}
    cos = [v["cosine"] for v in heads.values() if v.get("cosine") is not None]
    s["feature_cos_teacher"] = float(np.mean(cos)) if cos else None
    for name, v in features.items():
        slug = name.replace(":", "_")
        s[f"feature_cos_teacher_{slug}"] = v.get("cosine")
        s[f"feature_cos_centred_{slug}"] = v.get("cosine_centred")
        if ":" not in name:
            s[f"geometric_fidelity_{slug}"] = v.get("geometric_fidelity")
    for kind, word in KIND_KEYS.items():
        s[f"loc_acc_{word}"] = _get(r, "localization", "text", "accuracy", kind, "loc2d_lerf")
        s[f"loc3d_acc_{word}"] = _get(r, "localization", "text", "accuracy", kind, "loc3d")
    s["loc_acc_names_langsplat"] = _get(r, "localization", "text", "accuracy", "name", "loc2d_langsplat")
    s["loc_acc_exemplar_dino"] = _get(r, "localization", "exemplar", "dinov2", "accuracy", "loc2d_lerf")
    s["loc3d_acc_exemplar_dino"] = _get(r, "localization", "exemplar", "dinov2", "accuracy", "loc3d")
    s["miou_2d_field"] = _get(r, "segmentation", "field", "miou")
    s["miou_2d_teacher_gt"] = _get(r, "segmentation", "teacher_gt_nearest", "miou")
    s["miou_2d_teacher_gt_bilinear"] = _get(r, "segmentation", "teacher_gt_bilinear", "miou")
    s["miou_3d_field"] = _get(r, "points3d", "field", "miou")
    s["miou_3d_fusion_gtdepth"] = _get(r, "points3d", "fusion_gtdepth", "miou")
    s["miou_3d_fusion_fielddepth"] = _get(r, "points3d", "fusion_fielddepth", "miou")
    for key in ("pq", "sq", "rq"):
        s[f"{key}_scene"] = _get(r, "panoptic", "summary", key)
    for key in ("success_5deg_5cm", "success_2deg_2cm", "median_rot_deg", "median_trans_cm", "seconds_per_image"):
        s[f"pose_{key}"] = _get(r, "pose", "summary", key)
    s["query_latency_ms"] = _get(r, "latency", "text_query_ms")
    s["exemplar_latency_ms"] = _get(r, "latency", "exemplar_query_ms")
    s["new_view_latency_ms"] = _get(r, "latency", "new_view_relevancy_ms")
    return {k: (float(v) if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) else v)
            for k, v in s.items()}


def mean_summary(summaries: list[dict[str, Any]]) -> dict[str, float | None]:
    """Key-wise mean over scenes of numeric values (None where no scene has the key)."""
    keys = list(dict.fromkeys(k for s in summaries for k in s))
    out: dict[str, float | None] = {}
    for k in keys:
        values = [s[k] for s in summaries if isinstance(s.get(k), (int, float)) and s[k] is not None
                  and np.isfinite(s[k])]
        out[k] = float(np.mean(values)) if values else None
    return out
