"""2D and 3D semantic segmentation of a run against its scene's classes (PROTOCOLS.md).

- 2D (GOV-NeSF / ScanNet style): the field's labels at the test views (QueryEngine.segment_view: argmax
  cosine over the label set; pixels that see no surface count as wrong), and the teacher applied to the
  ground-truth test images ("teacher on GT"), its logits upsampled nearest and bilinear.
- 3D (OpenScene style): labelled points from the ground-truth depth (:func:`.ground_truth.gt_points`) take
  the argmax label of the field's head feature at the point; the OpenScene-2D fusion baseline averages the
  teacher's 2D features of the training views over the views that see each point, with ground-truth depth
  and with the field's depth for the occlusion test. Points that receive no feature count as wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..eval.fusion3d import fuse_features_2d_to_3d
from ..eval.segmentation import confusion_matrix, segmentation_scores
from ..query.bake import head_features
from ..scene.types import Frame, Scene
from ..train.evaluate import load_depth
from .ground_truth import gt_labels, label_set


def segmentation_field(engine, gt: dict[str, Any], views: list[Frame], head: str | None = None) -> dict[str, Any]:
    """mIoU / mAcc / oAcc of the field's segmentation of ``views``, one confusion matrix over them."""
    labels, lut = label_set(gt)
    cm = sum(confusion_matrix(engine.segment_view(f, labels, head=head), gt_labels(f, lut), len(labels))
             for f in views)
    return segmentation_scores(cm).as_dict() | {"labels": labels}


def teacher_segmentation(maps: list[torch.Tensor], embeddings: torch.Tensor, gt: dict[str, Any],
                         views: list[Frame], mode: str) -> dict[str, Any]:
    """The same scores for the teacher applied to the ground-truth images ("teacher on GT").

    Args:
        maps: the teacher's ``[h, w, D]`` features of each view.
        embeddings: ``[C, D]`` text embeddings of the label set (:func:`~.ground_truth.label_set` order).
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


def point_scores(features: torch.Tensor, valid: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor,
                  n_classes: int) -> dict[str, Any]:
    """Scores of per-point argmax labels; points without a feature (``valid`` False) count as wrong."""
    pred = (F.normalize(features.float(), dim=-1) @ F.normalize(embeddings.float(), dim=-1).T).argmax(dim=1)
    pred = torch.where(valid, pred, torch.full_like(pred, -1))  # -1: no prediction (counted wrong)
    return segmentation_scores(confusion_matrix(pred, labels, n_classes)).as_dict()


def point_segmentation(run, scene: Scene, points: torch.Tensor, labels: torch.Tensor, head: str,
                       embeddings: torch.Tensor, fusion_views: list[Frame], fusion_maps: list[torch.Tensor],
                       field_depths: list[torch.Tensor] | None) -> dict[str, Any]:
    """3D point segmentation of ``points [N, 3]`` (labels ``[N]``) by the field's ``head`` and by the
    OpenScene-2D fusion of ``fusion_maps`` (the teacher's ``[h, w, D]`` maps of ``fusion_views``).

    Args:
        embeddings: ``[C, D]`` text embeddings of the label set.
        field_depths: the field's planar depth ``[H, W]`` of each fusion view (None: not reported).
    Returns:
        ``{"field": scores, "fusion_gtdepth": scores, "fusion_fielddepth": scores | None, "n_points",
        "fusion_coverage_gtdepth", ...}`` where scores are mIoU / mAcc / oAcc dicts.
    """
    n_classes = embeddings.shape[0]
    feats = head_features(run.field, head, points.to(run.field.device_)).cpu()
    out: dict[str, Any] = {"n_points": int(points.shape[0]), "head": head,
                           "field": point_scores(feats, torch.ones(len(points), dtype=torch.bool), embeddings,
                                                  labels, n_classes)}
    c2w = torch.stack([torch.as_tensor(f.c2w, dtype=torch.float64) for f in fusion_views])
    K = torch.stack([torch.as_tensor(f.intrinsics.K, dtype=torch.float64) for f in fusion_views])
    gt_depths = [torch.from_numpy(np.asarray(load_depth(f, scene))) for f in fusion_views]
    depth_sets = {"gtdepth": gt_depths, "fielddepth": field_depths}
    for name, depths in depth_sets.items():
        if depths is None:
            out[f"fusion_{name}"] = None
            continue
        fused = fuse_features_2d_to_3d(points.double(), c2w, K, depths, [m.float() for m in fusion_maps])
        out[f"fusion_{name}"] = point_scores(fused.features, fused.valid, embeddings, labels, n_classes)
        out[f"fusion_coverage_{name}"] = float(fused.valid.float().mean())
    return out
