"""Write a scene's panoptic segmentation: per-view maps (PNG with a legend, raw ids as 16-bit PNG), the
instances with their 3D boxes (JSON) and their point sets (PLY with instance id and label per point)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_json
from ..export.pictures import save_picture, side_by_side, stack_rows
from ..export.ply import write_ply
from ..export.query_pictures import label_picture
from ..query.outputs import view_stem
from ..scene.images import load_rgb, save_uint16
from ..scene.types import Frame
from .scene_panoptic import ScenePanoptic

MAX_LEGEND = 24  # instances listed under a view's picture (the largest ones seen in it)


def instance_picture(instance: np.ndarray, panoptic: ScenePanoptic, image: np.ndarray) -> np.ndarray:
    """A view's instance map ``[H, W]`` coloured per instance over ``image``, with a legend of the instances
    it shows (``#id label``, largest first): uint8 ``[H + legend, W, 3]``."""
    ids, counts = np.unique(instance[instance >= 0], return_counts=True)
    shown = ids[np.argsort(-counts, kind="stable")][:MAX_LEGEND]
    lut = np.full(len(panoptic.instances) + 1, -1, dtype=np.int64)
    lut[shown] = np.arange(len(shown))
    local = np.where(instance >= 0, lut[np.where(instance >= 0, instance, -1)], -1)
    names = [f"#{int(i)} {panoptic.instances[int(i)].name}" for i in shown]
    return label_picture(local, names, image)


def write_panoptic(panoptic: ScenePanoptic, frames: list[Frame], out_dir: str | Path) -> dict[str, Any]:
    """Write ``OUT/panoptic.json`` (instances, boxes, settings), ``OUT/instances.ply`` (the sampled surface
    points with ``instance`` and ``label``) and per view ``<view>_panoptic.png`` (instances over the image,
    legend below), ``<view>_instance.png`` / ``<view>_label.png`` (16-bit ids; 65535 = none), and
    ``panoptic_views.png`` (all views side by side). Returns the JSON written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scene = panoptic.engine.scene
    pictures, tiles = [], []
    for frame in frames:
        label, inst = panoptic.view(frame)
        stem = view_stem(scene, frame)
        image = load_rgb(frame.image_path)
        tile = instance_picture(inst, panoptic, image)
        save_picture(out / f"{stem}_panoptic.png", tile)
        save_uint16(out / f"{stem}_instance.png", np.where(inst >= 0, inst, 65535).astype(np.uint16))
        save_uint16(out / f"{stem}_label.png", np.where(label >= 0, label, 65535).astype(np.uint16))
        pictures.append(f"{stem}_panoptic.png")
        tiles.append((tile, stem))
    if tiles:
        rows = [side_by_side([t for t, _ in tiles[i:i + 4]], [n for _, n in tiles[i:i + 4]])
                for i in range(0, len(tiles), 4)]
        save_picture(out / "panoptic_views.png", stack_rows(rows))
        pictures.append("panoptic_views.png")
    sample = panoptic.sample
    labels = panoptic.instance_labels[panoptic.point_instance.numpy()]
    write_ply(out / "instances.ply", sample.points, scalars={"instance": panoptic.point_instance.numpy(),
                                                             "label": labels})
    summary = panoptic.to_json()
    summary.update({"views": [f.name for f in frames], "pictures": pictures, "ply": "instances.ply"})
    atomic_write_json(out / "panoptic.json", summary)
    return summary
