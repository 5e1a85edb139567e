"""What the harness asks a generated scene, and the answers its ground truth gives.

Ground truth of generated scenes is ``Scene.ground_truth`` (the scene's ``scene.json``): ``objects`` with
``id``, ``name``, ``synonyms``, ``category``, ``box_min`` / ``box_max`` (metres); ``classes`` (semantic
class names, index = the value in the per-view ``semantic`` PNGs); ``views[name]["boxes"][str(id)] =
[x0, y0, x1, y1]`` with x1 / y1 exclusive (the ``"centers"`` box convention of
:mod:`semfield.eval.localization`). Query sets follow issue 4: every object by name, by each paraphrase
(the vocabulary's synonyms), and each category once (every object of that category is a right answer).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import SemfieldError
from ..query.bake import voxel_thin
from ..render.rays import image_rays
from ..scene.images import load_uint
from ..scene.types import Frame, Scene
from ..train.evaluate import load_depth

IGNORED_CLASSES = ("unlabelled",)  # left out of the segmentation label set (their pixels are ignored)
QUERY_KINDS = ("name", "synonym", "category")


def require_ground_truth(scene: Scene) -> dict[str, Any]:
    """The scene's ground truth, or a clear error for a scene without it (a real capture)."""
    gt = scene.ground_truth
    if not gt or "objects" not in gt or "classes" not in gt:
        raise SemfieldError("the scene has no ground truth (scene.json with objects and classes): only "
                            "generated scenes can be evaluated", scene.source)
    return gt


def text_queries(gt: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{"phrase", "kind", "objects": [id, ...]}]``: each object's name and synonyms (that object), and
    each category once (every object of that category), in scene order."""
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


def object_boxes(gt: dict[str, Any], ids: list[int]) -> list[np.ndarray]:
    """3D boxes ``[2, 3]`` (min, max corners) of objects ``ids``."""
    objects = {o["id"]: o for o in gt["objects"]}
    return [np.array([objects[i]["box_min"], objects[i]["box_max"]], dtype=np.float64) for i in ids]


def exemplar_pixel(gt: dict[str, Any], views: list[Frame], obj_id: int) -> tuple[Frame, float, float] | None:
    """The view among ``views`` where object ``obj_id``'s 2D box is largest, and that box's centre ``(x, y)``."""
    best = None
    for frame in views:
        boxes = view_boxes(gt, frame.name, [obj_id])
        if len(boxes):
            x0, y0, x1, y1 = boxes[0]
            area = (x1 - x0) * (y1 - y0)
            if best is None or area > best[0]:
                best = (area, frame, (x0 + x1) / 2, (y0 + y1) / 2)
    return None if best is None else best[1:]


def label_set(gt: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """The evaluated class names (the scene's classes but :data:`IGNORED_CLASSES`) and a lookup table
    ``[n_classes]`` from scene class id to label index (-1 = ignored)."""
    labels = [c for c in gt["classes"] if c not in IGNORED_CLASSES]
    lut = np.array([labels.index(c) if c in labels else -1 for c in gt["classes"]], dtype=np.int64)
    return labels, lut


def gt_labels(frame: Frame, lut: np.ndarray) -> np.ndarray:
    """Ground-truth label indices ``[H, W]`` of a view (-1 where the class is not evaluated)."""
    if "semantic" not in frame.extra:
        raise SemfieldError(f"view {frame.name} has no semantic ground truth", frame.image_path)
    k = frame.intrinsics
    return lut[load_uint(frame.extra["semantic"], expect_size=(k.width, k.height)).astype(np.int64)]


def gt_points(scene: Scene, frames: list[Frame], lut: np.ndarray, voxel: float = 0.01
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled 3D points of the scene surface (OpenScene's evaluation points): the ground-truth depth of
    ``frames`` back-projected, pixels of evaluated classes only, thinned to one point per ``voxel`` cell.

    Returns:
        ``points [N, 3]`` float32 and ``labels [N]`` int64 (label-set indices).
    """
    pts, labs = [], []
    for frame in frames:
        depth = load_depth(frame, scene)
        if depth is None:
            raise SemfieldError(f"view {frame.name} has no ground-truth depth", frame.image_path)
        labels = torch.from_numpy(gt_labels(frame, lut)).reshape(-1)
        c2w = torch.as_tensor(frame.c2w, dtype=torch.float32)
        origins, dirs, zpt = image_rays(c2w, frame.intrinsics)
        z = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)).reshape(-1)
        keep = (z > 0) & torch.isfinite(z) & (labels >= 0)
        pts.append(origins[keep] + dirs[keep] * (z[keep] / zpt[keep])[:, None])
        labs.append(labels[keep])
    points, labels = torch.cat(pts), torch.cat(labs)
    keep = voxel_thin(points, voxel)
    return points[keep].contiguous(), labels[keep].contiguous()
