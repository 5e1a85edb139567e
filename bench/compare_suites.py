#!/usr/bin/env python
"""Two runs of the same ``semfield bench`` suite side by side: the training boxes found from the data
against the ground-truth ones (``semfield bench --ground-truth-bounds``), scene by scene.

    python bench/compare_suites.py --before bench/results/suite_full_gt_bounds \
        --after bench/results/suite_full --out bench/results/bounds_ab_full

Writes ``OUT/results.json`` (benchmark ``suite_ab``): per figure, the mean of the default scenes and of the
rooms in each run, the change, and whether it is within the tolerance of issue 23 (PSNR within 0.3 dB,
foreground depth abs-rel within 0.02, 3D mIoU within 0.02, 3D localization within 0.05 on the default
scenes; on rooms no worse at all). ``make_benchmarks_md.py`` renders it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

# (summary key, label, format, tolerance: how much worse "after" may be, +1 if higher is better / -1 if lower)
FIGURES = (
    ("psnr_test", "held-out PSNR (dB)", ".2f", 0.3, 1),
    ("depth_abs_rel_fg_test", "depth abs-rel, table + objects", ".3f", 0.02, -1),
    ("depth_abs_rel_test", "depth abs-rel, full image", ".3f", None, -1),
    ("miou_3d_field", "3D point mIoU, field", ".3f", 0.02, 1),
    ("miou_2d_field", "2D mIoU, field", ".3f", None, 1),
    ("loc3d_acc_names", "3D localization, names", ".3f", 0.05, 1),
    ("loc3d_acc_paraphrases", "3D localization, paraphrases", ".3f", 0.05, 1),
    ("loc3d_acc_categories", "3D localization, categories", ".3f", 0.05, 1),
    ("loc_acc_names", "2D localization, names (LERF)", ".3f", None, 1),
    ("pq_scene", "panoptic PQ", ".1f", None, 1),
    ("pose_success_5deg_5cm", "pose success at 5 deg / 5 cm", ".3f", None, 1),
    ("pose_success_2deg_2cm", "pose success at 2 deg / 2 cm", ".3f", None, 1),
    ("train_seconds", "training time (s)", ".1f", None, -1),
    ("peak_rss_mb", "training peak RSS (MiB)", ".0f", None, -1),
)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def compare(before: dict, after: dict) -> dict:
    """Per figure and scene group (default scenes, rooms): the two means, the change and the verdict."""
    b_scenes = {s["scene"]: s["summary"] for s in before["scenes"]}
    a_scenes = {s["scene"]: s["summary"] for s in after["scenes"]}
    common = [name for name in a_scenes if name in b_scenes]
    groups = {"default scenes": [n for n in common if n.startswith("default")],
              "rooms": [n for n in common if n.startswith("room")]}
    rows = []
    for key, label, spec, tolerance, sign in FIGURES:
        row = {"key": key, "label": label, "format": spec, "tolerance": tolerance, "higher_is_better": sign > 0,
               "groups": {}, "per_scene": {n: [b_scenes[n].get(key), a_scenes[n].get(key)] for n in common}}
        for group, names in groups.items():
            if not names:
                continue
            b = _mean(b_scenes[n].get(key) for n in names)
            a = _mean(a_scenes[n].get(key) for n in names)
            change = None if a is None or b is None else a - b
            allowed = tolerance if group == "default scenes" else 0.0  # rooms: no worse
            ok = None if change is None or tolerance is None else sign * change >= -allowed - 1e-12
            row["groups"][group] = {"before": b, "after": a, "change": change, "within_tolerance": ok}
        rows.append(row)
    return {"scenes": common, "groups": groups, "rows": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="suite folder trained with ground-truth boxes")
    ap.add_argument("--after", type=Path, required=True, help="suite folder trained with boxes from the data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--title", default="Training boxes from the data", help="the BENCHMARKS.md section's title")
    ap.add_argument("--labels", nargs=2, default=("GT boxes", "from data"), metavar=("BEFORE", "AFTER"),
                    help="column names of the two runs")
    ap.add_argument("--note", help="a line shown under the section in BENCHMARKS.md")
    args = ap.parse_args(argv)
    before = json.loads((args.before / "bench.json").read_text(encoding="utf-8"))
    after = json.loads((args.after / "bench.json").read_text(encoding="utf-8"))
    result = {"benchmark": "suite_ab", "suite": after["suite"], "title": args.title, "labels": list(args.labels),
              "note": args.note,
              "command": "python bench/compare_suites.py " + shlex.join(sys.argv[1:] if argv is None else argv),
              "before": {"path": str(args.before), "command": before["command"],
                         "bounds": before.get("bounds", "ground truth"), "started": before["started"],
                         "machine": before["machine"]},
              "after": {"path": str(args.after), "command": after["command"], "bounds": after.get("bounds"),
                        "started": after["started"], "machine": after["machine"]},
              "generator_version": after.get("generator_version"), **compare(before, after)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    for row in result["rows"]:
        cells = [f"{g}: {v['before']:{row['format']}} -> {v['after']:{row['format']}}"
                 for g, v in row["groups"].items() if v["before"] is not None and v["after"] is not None]
        print(f"{row['label']:36s} " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
