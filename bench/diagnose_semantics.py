"""Where does the label head lose against its own teacher? A stage-by-stage table on trained suite runs.

For each run (a ``semfield bench`` output's ``runs/<scene>``, trained with the label teacher), on the label set
of its scene:

- 2D at the test views: the teacher on the ground-truth image (bilinear); the field as segment_view reads it
  (head lookup at the median-depth surface point); the head volume-rendered along the test rays;
- 3D at the ground-truth points (OpenScene): fusion of the teacher's training maps with ground-truth depth and
  with the field's depth; fusion of the noise-free teacher (the label teacher's noise and confusion off);
  the head's value at the point (today's lookup); the head rendered into the training views and fused with
  the field's depth (reading a point by rendering it from the views that see it);
- the same field after :func:`semfield.train.head_fusion.fuse_heads` (every training pixel's teacher feature
  averaged into the head grid through the field's rendering weights), and with the noise-free teacher's maps;
- per class: the 3D IoU of the scene's smallest and largest classes; per object: the training views that see
  it (ground-truth instance maps) and whether its box lies in the focus box;
- text localization (names, paraphrases, categories) before and after head fusion.

Usage::

    python bench/diagnose_semantics.py OUT/runs/default-0 OUT/runs/room-0 --out bench/results/diagnose/x.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from semfield.data.generate.presets import GENERATOR_VERSION
from semfield.eval.fusion3d import fuse_features_2d_to_3d
from semfield.eval.heatmap_coherence import heatmap_coherence, mean_coherence
from semfield.eval.segmentation import confusion_matrix, segmentation_scores
from semfield.field.renderer import render_image
from semfield.harness import ground_truth, localization, segmentation
from semfield.harness.evaluate import NOISE_FREE_LABEL, Context, field_depths
from semfield.machine import machine_info
from semfield.query.bake import head_features
from semfield.query.relevancy import relevancy_from_cosines
from semfield.run import load_run, load_run_scene
from semfield.scene.images import load_uint
from semfield.train.data import RayBank
from semfield.train.evaluate import load_depth
from semfield.train.features import FeatureTargets
from semfield.train.head_fusion import HeadFusionConfig, fuse_heads


def point_miou(feats, valid, emb, labels) -> dict:
    """The harness's 3D point scores (mIoU, per-class ``iou`` with None for absent classes)."""
    return segmentation.point_scores(feats, valid, emb, labels, emb.shape[0])


@torch.no_grad()
def rendered_maps(run, frames, head, stride):
    """The head volume-rendered at each frame (``[H/stride, W/stride, D]``)."""
    opts = replace(run.config.eval_render, heads=(head,))
    maps = []
    for f in frames:
        intr = f.intrinsics.scaled(1.0 / stride) if stride > 1 else f.intrinsics
        c2w = torch.as_tensor(f.c2w, dtype=torch.float32)
        maps.append(render_image(run.field, c2w, intr, opts, colour=False)[head].cpu())
    return maps


def rendered_2d(run, gt, frames, head, emb):
    labels, lut = ground_truth.label_set(gt)
    cm = 0
    for f, m in zip(frames, rendered_maps(run, frames, head, 1), strict=True):
        pred = (F.normalize(m, dim=-1) @ F.normalize(emb, dim=-1).T).argmax(-1)
        cm = cm + confusion_matrix(pred, ground_truth.gt_labels(f, lut), len(labels))
    return segmentation_scores(cm).as_dict()


def _status_mb(field: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field)) / 1024.0


def reset_peak_memory() -> float | None:
    """Reset the process's peak resident memory (Linux ``clear_refs``) and return the resident MiB now, or
    None where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return _status_mb("VmRSS:")
    except OSError:
        return None


def peak_memory_mb() -> float:
    """Peak resident MiB since :func:`reset_peak_memory` (``VmHWM``)."""
    return _status_mb("VmHWM:")


def views_per_object(frames):
    counts: dict[int, int] = {}
    for f in frames:
        if "instance" not in f.extra:
            return {}
        k = f.intrinsics
        ids, n = np.unique(load_uint(f.extra["instance"], expect_size=(k.width, k.height)), return_counts=True)
        for i, c in zip(ids.tolist(), n.tolist(), strict=True):
            if i > 0 and c >= 20:
                counts[i] = counts.get(i, 0) + 1
    return counts


def text_accuracy(ctx, head):
    ctx._engine = None  # a fresh engine reads the head as it is now (the bake holds geometry only)
    acc = localization.accuracies_by_kind(localization.evaluate_text(ctx.engine, ctx.gt, ctx.test, head=head))
    return {k: acc[k]["loc3d"] for k in ("name", "synonym", "category")} | {"2d_name": acc["name"]["loc2d_lerf"]}


def coherence(ctx, head, c2w, K, fdepths, maps, views: int = 4) -> dict:
    """Heatmap coherence (:mod:`semfield.eval.heatmap_coherence`) of every object's name query at the first
    ``views`` test views that see it: the field's heatmap against the fusion baseline's (the teacher's training
    maps fused onto the same view's surface points, field depth, same positives and negatives)."""
    eng = ctx.engine
    field_recs, fusion_recs = [], []
    for frame in ctx.test[:views]:
        k = frame.intrinsics
        inst = load_uint(frame.extra["instance"], expect_size=(k.width, k.height))
        points, hit = eng._view_surface(frame)
        fu = fuse_features_2d_to_3d(points.reshape(-1, 3).double(), c2w, K, fdepths, maps)
        for obj in ctx.gt["objects"]:
            mask = inst == obj["id"]
            if mask.sum() < 20:
                continue
            result = eng.text([obj["name"]], head=head)
            field_recs.append(heatmap_coherence(eng.heatmap(result, frame).numpy(), mask, hit.numpy()))
            cos = F.normalize(fu.features.float(), dim=-1) @ torch.cat([result.positives, result.negatives]).T
            rel = relevancy_from_cosines(cos[:, :1], cos[:, 1:], reduce="max").view(hit.shape)
            fusion_recs.append(heatmap_coherence(rel.numpy(), mask, (hit & fu.valid.view(hit.shape)).numpy()))
    return {"field": mean_coherence(field_recs), "fusion": mean_coherence(fusion_recs)}


def diagnose(run_dir: Path, fusion_cfg: HeadFusionConfig, skip_text: bool) -> dict:
    t0 = time.perf_counter()
    run = load_run(run_dir)
    scene = load_run_scene(run)
    gt = ground_truth.require_ground_truth(scene)
    ctx = Context(run, scene, gt)
    head = ctx.text_heads[0]
    labels, lut = ground_truth.label_set(gt)
    emb = ctx.engine.embed(head, labels).float()
    points, plabels = ground_truth.gt_points(scene, ctx.test, lut)
    train, test = ctx.train, ctx.test
    c2w = torch.stack([torch.as_tensor(f.c2w, dtype=torch.float64) for f in train])
    K = torch.stack([torch.as_tensor(f.intrinsics.K, dtype=torch.float64) for f in train])
    gt_depths = [torch.from_numpy(np.asarray(load_depth(f, scene))) for f in train]
    fdepths = field_depths(run, train)
    maps = [m.float() for m in ctx.teacher_maps(head, "train")]
    clean = [m.float() for m in ctx.teacher_maps(head, "train", NOISE_FREE_LABEL)]
    out: dict = {"run": str(run_dir), "scene": scene.source.name if hasattr(scene.source, "name") else str(scene.source),
                 "head": head, "labels": labels, "n_points": int(points.shape[0])}
    s2, s3 = {}, {}
    s2["teacher_gt_bilinear"] = segmentation.teacher_segmentation(
        ctx.teacher_maps(head, "test"), emb, gt, test, "bilinear")["miou"]
    s2["field_lookup"] = segmentation.segmentation_field(ctx.engine, gt, test, head)["miou"]
    s2["field_rendered"] = rendered_2d(run, gt, test, head, emb)["miou"]

    def fused(feature_maps, depths):
        fu = fuse_features_2d_to_3d(points.double(), c2w, K, depths, feature_maps)
        return point_miou(fu.features, fu.valid, emb, plabels)

    per_class = {}
    for name, sc in (("fusion_gtdepth", fused(maps, gt_depths)), ("fusion_fielddepth", fused(maps, fdepths)),
                     ("fusion_gtdepth_noise_free", fused(clean, gt_depths))):
        s3[name] = sc["miou"]
        per_class[name] = sc["iou"]
    look = point_miou(head_features(run.field, head, points), torch.ones(len(points), dtype=torch.bool), emb, plabels)
    s3["field_lookup"], per_class["field_lookup"] = look["miou"], look["iou"]
    rmaps = rendered_maps(run, train, head, 2)
    s3["field_rendered_fused"] = fused(rmaps, fdepths)["miou"]
    out["text_before"] = None if skip_text else text_accuracy(ctx, head)
    out["coherence_before"] = coherence(ctx, head, c2w, K, fdepths, maps)

    # the same field after head fusion, from the noisy teacher (what training would do) and the clean one
    bank = RayBank(train, run.field.device_)
    sizes = [(f.intrinsics.width, f.intrinsics.height) for f in train]
    saved = run.field.heads[head].values.clone()
    decoder = {k: v.clone() for k, v in run.field.head_decoders[head].state_dict().items()}
    for variant, src in (("noise_free", clean), ("", maps)):  # each from the trained head and decoder
        run.field.heads[head].values.copy_(saved)
        run.field.head_decoders[head].load_state_dict(decoder)
        start, resident = time.perf_counter(), reset_peak_memory()
        rep = fuse_heads(run.field, bank, {head: FeatureTargets(src, sizes)}, run.config.render, fusion_cfg)
        suffix = f"_{variant}" if variant else ""
        out[f"fusion_seconds{suffix}"] = time.perf_counter() - start
        out[f"fusion_extra_peak_mb{suffix}"] = None if resident is None else peak_memory_mb() - resident
        out[f"fusion_report{suffix}"] = rep
        sc = point_miou(head_features(run.field, head, points), torch.ones(len(points), dtype=torch.bool), emb,
                        plabels)
        s3[f"head_fused_lookup{suffix}"] = sc["miou"]
        per_class[f"head_fused_lookup{suffix}"] = sc["iou"]
        ctx._engine = None
        s2[f"head_fused_rendered{suffix}"] = rendered_2d(run, gt, test, head, emb)["miou"]
    s2["head_fused_lookup"] = segmentation.segmentation_field(ctx.engine, gt, test, head)["miou"]
    out["text_after"] = None if skip_text else text_accuracy(ctx, head)
    out["coherence_after"] = coherence(ctx, head, c2w, K, fdepths, maps)
    out["2d"], out["3d"] = s2, s3
    # per class: the classes by their share of the points
    share = np.bincount(plabels.numpy(), minlength=len(labels)) / len(plabels)
    out["per_class"] = {labels[c]: {"share": float(share[c]),
                                    **{k: v[c] for k, v in per_class.items()}}
                        for c in range(len(labels)) if share[c] > 0}
    focus = np.asarray(run.field.focus_aabb)
    vis = views_per_object(train)
    out["objects"] = [{"name": o["name"], "views": vis.get(o["id"], 0),
                       "in_focus": bool(np.all(np.asarray(o["box_min"]) >= focus[0] - 1e-6)
                                         and np.all(np.asarray(o["box_max"]) <= focus[1] + 1e-6)),
                       "size": float(np.max(np.asarray(o["box_max"]) - np.asarray(o["box_min"])))}
                      for o in gt["objects"]]
    hv = run.field.config.heads[head].voxel_factor * run.field.final_voxel
    out["grid"] = {"focus": focus.tolist(), "voxel": run.field.final_voxel, "head_voxel": hv,
                   "train_views": len(train)}
    out["seconds"] = time.perf_counter() - t0
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--prior", type=float, default=1.0)
    ap.add_argument("--skip-text", action="store_true")
    ap.add_argument("--note", help="a line shown under the section in BENCHMARKS.md")
    a = ap.parse_args(argv)
    results = []
    for r in a.runs:
        res = diagnose(r, HeadFusionConfig(stride=a.stride, prior=a.prior), a.skip_text)
        results.append(res)
        print(json.dumps({k: res[k] for k in ("run", "2d", "3d", "text_before", "text_after", "coherence_before",
                                              "coherence_after")}, indent=1),
              flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"benchmark": "semantics_diagnosis", "command": "python " + shlex.join(sys.argv),
                                     "machine": machine_info(), "note": a.note,
                                     "generator_version": GENERATOR_VERSION, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
