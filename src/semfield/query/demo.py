"""The demo's query step: ask a trained generated scene where each object is, by name and by example,
segment a view, and export the labelled surface. Results go to ``OUT/queries/``."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

from ..eval.localization import point_in_box
from ..run import Run
from ..scene.types import Scene
from .engine import QueryEngine
from .outputs import export_cloud, write_query, write_segmentation

STUFF = ("unlabelled",)  # classes left out of the demo's segmentation label set


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")[:40] or "query"


def demo_queries(run: Run, scene: Scene, out_dir: Path) -> dict[str, Any]:
    """Text queries for every object by name (3D point inside its box?), an exemplar query with a head
    without text (if any) at the first object's 2D box in ``test:0``, a segmentation of ``test:0`` and a
    labelled PLY. Returns the step summary for ``summary.json`` (``pictures`` relative to ``out_dir``)."""
    if not run.field.config.heads:
        return {"skipped": "the run has no feature heads"}
    engine = QueryEngine(run, scene, progress=True)
    qdir = Path(out_dir) / "queries"
    views = scene.split("test")[:1] or scene.frames[:1]
    gt = scene.ground_truth or {}
    start = time.perf_counter()
    engine.cloud()
    bake_seconds = time.perf_counter() - start
    pictures, rows, latencies, hits = [], [], [], 0
    objects = gt.get("objects", [])
    for obj in objects:
        t0 = time.perf_counter()
        result = engine.text([obj["name"]])
        latencies.append(1000.0 * (time.perf_counter() - t0))
        hit = bool(point_in_box(result.localization.point, [obj["box_min"], obj["box_max"]]))
        hits += hit
        summary = write_query(engine, result, views, qdir / _slug(obj["name"]), ply=False)
        pictures += [f"queries/{_slug(obj['name'])}/{f}" for f in summary["files"] if f.endswith(".png")]
        p = summary["point"]
        rows.append(f"| {obj['name']} | ({p[0]:.2f}, {p[1]:.2f}, {p[2]:.2f}) | {summary['score']:.2f} | "
                    f"{'yes' if hit else 'no'} |")
    step: dict[str, Any] = {"bake_seconds": bake_seconds, "text_queries": len(objects),
                            "loc3d_hits": hits, "query_ms_median": statistics.median(latencies) if latencies else None}
    image_heads = [h for h in engine.heads if not engine.has_text(h)]
    boxes = gt.get("views", {}).get(views[0].name, {}).get("boxes", {}) if views else {}
    if image_heads and boxes:
        oid, (x0, y0, x1, y1) = next(iter(boxes.items()))
        result = engine.exemplar(views[0], (x0 + x1) / 2, (y0 + y1) / 2, head=image_heads[0])
        summary = write_query(engine, result, views, qdir / "exemplar", ply=False)
        pictures += [f"queries/exemplar/{f}" for f in summary["files"] if f.endswith(".png")]
        obj = next((o for o in objects if str(o["id"]) == oid), None)
        step["exemplar"] = {"head": image_heads[0], "object": obj["name"] if obj else oid,
                            "pixel": [(x0 + x1) / 2, (y0 + y1) / 2],
                            "inside_box": bool(obj and point_in_box(result.localization.point,
                                                                   [obj["box_min"], obj["box_max"]]))}
    labels = [c for c in gt.get("classes", []) if c not in STUFF]
    if labels and any(engine.has_text(h) for h in engine.heads):
        files = write_segmentation(engine, labels, views, qdir / "segment")
        pictures += [f"queries/segment/{f}" for f in files if f.endswith(".png")]
        export_cloud(engine, qdir / "scene_labels.ply", labels=labels)
        step["ply"] = "queries/scene_labels.ply"
    step["pictures"] = pictures
    step["table"] = ["| query | 3D point | score | inside the object's 3D box |", "|---|---|---|---|", *rows,
                     "", (f"{hits} of {len(objects)} objects located in 3D by name; surface bake "
                          f"{bake_seconds:.1f} s; median query {step['query_ms_median'] or 0:.0f} ms.")]
    return step
