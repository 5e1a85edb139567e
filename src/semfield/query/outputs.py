"""Write query answers to a folder: heatmap pictures (+ raw .npy), segmentation pictures, PLY, JSON."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write_bytes, atomic_write_json
from ..export.pictures import save_picture, side_by_side
from ..export.ply import write_ply
from ..export.query_pictures import label_picture, relevancy_overlay
from ..scene.images import load_rgb
from ..scene.types import Frame, Scene
from .engine import QueryEngine, QueryResult


def view_stem(scene: Scene, frame: Frame) -> str:
    """``test_03`` / ``train_00`` for split views, else the image's file stem."""
    split = scene.split(frame.split)
    if frame.split in ("train", "test") and frame in split:
        return f"{frame.split}_{split.index(frame):02d}"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(frame.name).stem)


def save_npy(path: Path, array: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.save(buf, array)
    return atomic_write_bytes(path, buf.getvalue())


def write_heatmaps(engine: QueryEngine, result: QueryResult, frames: list[Frame], out_dir: Path,
                   tag: str = "relevancy") -> list[str]:
    """Per view: ``<view>_<tag>.png`` (image | relevancy overlay cut at 0.5) and ``<view>_<tag>.npy``
    (raw ``[H, W]`` float32 relevancy). Returns the file names written."""
    files = []
    for frame in frames:
        rel = engine.heatmap(result, frame).numpy().astype(np.float32)
        image = load_rgb(frame.image_path)
        stem = f"{view_stem(engine.scene, frame)}_{tag}"
        sheet = side_by_side([image, relevancy_overlay(image, rel)], [frame.name, result.query[:40]])
        save_picture(out_dir / f"{stem}.png", sheet)
        save_npy(out_dir / f"{stem}.npy", rel)
        files += [f"{stem}.png", f"{stem}.npy"]
    return files


def write_query(engine: QueryEngine, result: QueryResult, frames: list[Frame], out_dir: str | Path,
                ply: bool = True) -> dict[str, Any]:
    """Heatmaps at ``frames``, the relevant surface as PLY (``relevancy`` per point) and ``query.json``.

    Returns the JSON written: the result (point, box, score...) and ``files``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = write_heatmaps(engine, result, frames, out_dir)
    if ply:
        cloud = engine.cloud()
        write_ply(out_dir / "relevancy.ply", cloud.points, colors=cloud.rgb,
                  scalars={"relevancy": result.relevancy.float()})
        files.append("relevancy.ply")
    summary = {**result.to_json(), "files": files, "out_dir": str(out_dir.absolute())}
    atomic_write_json(out_dir / "query.json", summary)
    return summary


def write_segmentation(engine: QueryEngine, labels: list[str], frames: list[Frame], out_dir: str | Path,
                       head: str | None = None) -> list[str]:
    """Per view: ``<view>_segment.png`` (image | labels with legend) and ``<view>_segment.npy`` (int16
    index into ``labels``, -1 where no surface is seen)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for frame in frames:
        seg = engine.segment_view(frame, labels, head)
        image = load_rgb(frame.image_path)
        stem = f"{view_stem(engine.scene, frame)}_segment"
        save_picture(out_dir / f"{stem}.png", side_by_side([image, label_picture(seg, labels, image)],
                                                          [frame.name, "segmentation"]))
        save_npy(out_dir / f"{stem}.npy", seg.astype(np.int16))
        files += [f"{stem}.png", f"{stem}.npy"]
    return files


def export_cloud(engine: QueryEngine, path: str | Path, result: QueryResult | None = None,
                 labels: list[str] | None = None, features: str | None = None) -> dict[str, Any]:
    """The surface cloud as PLY: colour, optional ``relevancy`` of a query, ``label`` (index into
    ``labels``, argmax over the text head) and optionally one head's features ``f_0..``."""
    from .relevancy import segment

    cloud = engine.cloud()
    scalars: dict[str, Any] = {}
    if result is not None:
        scalars["relevancy"] = result.relevancy.float()
    if labels:
        head = engine.text_head()
        scalars["label"] = segment(cloud.features[head], engine.embed(head, labels)).int()
    feats = None
    if features is not None:
        engine.check_head(features)
        feats = cloud.features[features]
    write_ply(path, cloud.points, colors=cloud.rgb, scalars=scalars or None, features=feats)
    return {"path": str(Path(path).absolute()), "points": int(cloud.points.shape[0]),
            "properties": sorted(scalars) + ([f"f_0..f_{feats.shape[1] - 1}"] if feats is not None else [])}
