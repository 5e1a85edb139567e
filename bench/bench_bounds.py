#!/usr/bin/env python
"""How well the boxes found from the data match the ground truth, on scenes the suites do not use, and on
the real fox capture.

    python bench/bench_bounds.py --out bench/results/bounds --scenes default:10-15 room:2-4 \
        --fox ../shared/data/fox

For each generated scene (made into ``OUT/scenes``, or reused): the coarse pass of ``semfield train`` finds
the outer and focus boxes (``semfield.train.bounds_pass.training_bounds``, default settings) without the
scene's ground truth; then, against ``scene.json`` (read here, for evaluation only): the share of every
object's box volume inside the focus box, IoU of the focus box with the ground-truth one, the final voxel
size each gives, and the outer box against the room.

For the fox (``--fox``, a real phone capture: instant-ngp ``transforms.json``, 67 frames listed of which 50
images exist): the existing frames are downsampled to ``--fox-long-side`` pixels into ``OUT/fox_scene``
(never committed), then trained twice for ``--fox-iterations``, with the boxes found from the data and with
the cameras-only guess (``bounds.mode=cameras``), and held-out PSNR (every 8th frame) is compared.

Writes ``OUT/results.json`` and ``OUT/boxes.png`` (top and side views of cameras and boxes, per scene).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _parse_scenes(items: list[str]) -> list[tuple[str, int]]:
    out = []
    for item in items:
        preset, _, seeds = item.partition(":")
        lo, _, hi = seeds.partition("-")
        out += [(preset, s) for s in range(int(lo), int(hi or lo) + 1)]
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.prod(np.clip(np.minimum(a[1], b[1]) - np.maximum(a[0], b[0]), 0, None))
    return float(inter / (np.prod(a[1] - a[0]) + np.prod(b[1] - b[0]) - inter))


def inside_share(box: np.ndarray, obj_lo, obj_hi) -> float:
    """Share of the object box's volume inside ``box``."""
    lo, hi = np.asarray(obj_lo), np.asarray(obj_hi)
    inter = np.prod(np.clip(np.minimum(hi, box[1]) - np.maximum(lo, box[0]), 0, None))
    return float(inter / max(np.prod(hi - lo), 1e-12))


def generated_scene(preset: str, seed: int, out: Path) -> dict:
    import torch

    from semfield.data.generate import make_scene
    from semfield.field.grid_field import final_voxel_size
    from semfield.scene.bounds import pixel_footprint
    from semfield.scene.load import load_scene
    from semfield.train.bounds_pass import training_bounds
    from semfield.train.config import TrainConfig
    from semfield.train.data import RayBank

    scene_dir = out / "scenes" / f"{preset}-{seed}"
    if not (scene_dir / "scene.json").exists():
        make_scene(scene_dir, preset=preset, seed=seed, progress=False)
    scene = load_scene(scene_dir)
    gt = scene.ground_truth
    capture = load_scene(scene_dir)
    capture.ground_truth = None  # what training gets from a capture (the bounds code never reads it anyway)
    config = TrainConfig()
    bank = RayBank(capture.split("train"), torch.device("cpu"))
    start = time.perf_counter()
    outer, focus, report = training_bounds(capture, config, bank, progress=False)
    seconds = time.perf_counter() - start
    gt_focus, room = np.asarray(gt["focus_aabb"]), np.asarray(gt["room_aabb"])
    shares = [inside_share(focus, o["box_min"], o["box_max"]) for o in gt["objects"]]
    voxel = final_voxel_size(config.field, focus, pixel_footprint(scene, focus))
    gt_voxel = final_voxel_size(config.field, gt_focus, pixel_footprint(scene, gt_focus))
    return {"scene": f"{preset}-{seed}", "seconds": seconds, "outer": outer.tolist(), "focus": focus.tolist(),
            "gt_focus": gt_focus.tolist(), "room": room.tolist(), "focus_iou_gt": box_iou(focus, gt_focus),
            "outer_iou_room": box_iou(outer, room), "voxel_mm": voxel * 1000, "gt_voxel_mm": gt_voxel * 1000,
            "objects_inside_mean": float(np.mean(shares)), "objects_inside_min": float(np.min(shares)),
            "objects_mostly_inside": int(sum(s >= 0.9 for s in shares)), "objects": len(shares),
            "surface_points": report["surface_points"], "exit_points": report["exit_points"],
            "cameras": [f.c2w[:3, 3].tolist() for f in scene.split("train")]}


def fox_scene(fox: Path, out: Path, long_side: int) -> Path:
    """The fox's existing frames, downsampled (area filter), as a transforms.json of their own."""
    from PIL import Image

    data = json.loads((fox / "transforms.json").read_text(encoding="utf-8"))
    scale = long_side / max(float(data["w"]), float(data["h"]))
    dst = out / "fox_scene"
    (dst / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for frame in data["frames"]:
        src = fox / frame["file_path"]
        if not src.exists():
            continue
        name = Path(frame["file_path"]).with_suffix(".png").name
        if not (dst / "images" / name).exists():
            with Image.open(src) as im:
                im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)),
                                         Image.Resampling.BOX).save(dst / "images" / name)
        frames.append({"file_path": f"images/{name}", "transform_matrix": frame["transform_matrix"]})
    with Image.open(dst / "images" / Path(frames[0]["file_path"]).name) as im:
        w, h = im.size
    sx, sy = w / float(data["w"]), h / float(data["h"])
    meta = {"w": w, "h": h, "fl_x": data["fl_x"] * sx, "fl_y": data["fl_y"] * sy, "cx": data["cx"] * sx,
            "cy": data["cy"] * sy, **{k: data[k] for k in ("k1", "k2", "p1", "p2") if k in data}, "frames": frames}
    (dst / "transforms.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return dst


def fox_runs(fox: Path, out: Path, long_side: int, iterations: int) -> dict:
    from semfield.pipeline import train_and_evaluate
    from semfield.settings import apply_overrides
    from semfield.train.config import TrainConfig

    scene_dir = fox_scene(fox, out, long_side)
    result = {"scene": str(scene_dir), "long_side": long_side, "iterations": iterations, "runs": {}}
    for mode in ("auto", "cameras"):
        run_dir = out / "fox_runs" / mode
        config = apply_overrides(TrainConfig(iterations=iterations), {"bounds.mode": mode})
        m = train_and_evaluate(scene_dir, run_dir, config, progress=False)
        bounds = json.loads((run_dir / "bounds.json").read_text(encoding="utf-8"))
        result["runs"][mode] = {k: m[k] for k in ("psnr_test", "ssim_test", "train_seconds", "peak_rss_mb",
                                                  "n_test_views")}
        result["runs"][mode].update({"outer": bounds["outer"], "focus": bounds["focus"],
                                     "voxel_mm": bounds["voxel"] * 1000})
    from semfield.scene.load import load_scene

    result["cameras"] = [f.c2w[:3, 3].tolist() for f in load_scene(scene_dir).split("train")]
    return result


def _draw_box(ax, box, axes, **kw):
    (a, b) = axes
    lo, hi = np.asarray(box[0]), np.asarray(box[1])
    ax.plot([lo[a], hi[a], hi[a], lo[a], lo[a]], [lo[b], lo[b], hi[b], hi[b], lo[b]], **kw)


def picture(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(r["scene"], r["cameras"], [("found", r["focus"], "tab:red"), ("ground truth", r["gt_focus"], "k"),
                                          ("outer found", r["outer"], "tab:orange"), ("room", r["room"], "0.6")])
              for r in results["generated"]]
    if results.get("fox"):
        fox = results["fox"]
        panels.append(("fox (real)", fox["cameras"],
                       [("found", fox["runs"]["auto"]["focus"], "tab:red"),
                        ("cameras only", fox["runs"]["cameras"]["focus"], "tab:blue"),
                        ("outer found", fox["runs"]["auto"]["outer"], "tab:orange")]))
    cols = len(panels)
    fig, axs = plt.subplots(2, cols, figsize=(2.6 * cols, 5.2), squeeze=False)
    for c, (title, cams, boxes) in enumerate(panels):
        cams = np.asarray(cams)
        for r, axes in enumerate(((0, 1), (0, 2))):
            ax = axs[r][c]
            ax.scatter(cams[:, axes[0]], cams[:, axes[1]], s=4, c="tab:green")
            for label, box, colour in boxes:
                _draw_box(ax, box, axes, color=colour, lw=1.2, label=label)
            ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
            ax.set_title(f"{title} ({'top' if r == 0 else 'side'})", fontsize=7)
    axs[0][0].legend(fontsize=5, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--scenes", nargs="*", default=["default:10-15", "room:2-4"],
                    help="PRESET:SEED[-SEED] items (default: seeds no suite uses)")
    ap.add_argument("--fox", type=Path, help="the fox capture folder (skipped when absent)")
    ap.add_argument("--fox-long-side", type=int, default=240)
    ap.add_argument("--fox-iterations", type=int, default=360)
    ap.add_argument("--note", help="a note kept in results.json and shown in BENCHMARKS.md")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from semfield.data.generate.presets import GENERATOR_VERSION

    results = {"benchmark": "bounds", "generator_version": GENERATOR_VERSION,
               "command": "python bench/bench_bounds.py " + shlex.join(sys.argv[1:] if argv is None else argv),
               "generated": [], "fox": None, **({"note": args.note} if args.note else {})}
    from semfield.machine import machine_info

    results["machine"] = machine_info()
    for preset, seed in _parse_scenes(args.scenes):
        r = generated_scene(preset, seed, args.out)
        results["generated"].append(r)
        print(f"{r['scene']}: focus IoU {r['focus_iou_gt']:.2f}, objects inside {r['objects_mostly_inside']}/"
              f"{r['objects']} (min share {r['objects_inside_min']:.2f}), voxel {r['voxel_mm']:.1f} mm "
              f"(GT box {r['gt_voxel_mm']:.1f}), outer IoU room {r['outer_iou_room']:.2f}, {r['seconds']:.1f} s")
    if args.fox is not None and (args.fox / "transforms.json").exists():
        results["fox"] = fox_runs(args.fox, args.out, args.fox_long_side, args.fox_iterations)
        for mode, run in results["fox"]["runs"].items():
            print(f"fox {mode}: PSNR {run['psnr_test']:.2f} dB, voxel {run['voxel_mm']:.1f} mm, "
                  f"{run['train_seconds']:.0f} s")
    elif args.fox is not None:
        print(f"fox: {args.fox} not found, skipped")
    gen = results["generated"]
    if gen:
        results["summary"] = {k: float(np.mean([r[k] for r in gen])) for k in
                              ("focus_iou_gt", "objects_inside_mean", "objects_inside_min", "outer_iou_room",
                               "voxel_mm", "gt_voxel_mm", "seconds")}
        results["summary"]["objects_mostly_inside"] = f"{sum(r['objects_mostly_inside'] for r in gen)}/" \
                                                     f"{sum(r['objects'] for r in gen)}"
    (args.out / "results.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    picture(results, args.out / "boxes.png")
    print(f"wrote {args.out / 'results.json'} and {args.out / 'boxes.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
