"""Benchmark scene generator: LIBERO objects on a table in a closed, textured room, rendered by MuJoCo.

``make_scene(out_dir, preset, seed)`` writes a nerfstudio dataset with ground truth::

    OUT/transforms.json            poses (OpenGL, nerfstudio), intrinsics, splits (no box: see scene.bounds)
    OUT/scene.json                 classes, objects (3D boxes, names, synonyms), per-view 2D boxes, ...
    OUT/images/frame_00000.png     RGB
    OUT/depth/frame_00000.png      16-bit planar z-depth in millimetres (0 = no value)
    OUT/instance/frame_00000.png   16-bit object id (0 = stuff)
    OUT/semantic/frame_00000.png   16-bit index into scene.json "classes" (0 = unlabelled)
    OUT/preview.png                contact sheet of a few views

The same seed gives byte-identical files; the folder appears atomically when complete.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...atomic import atomic_write_json
from ...errors import SemfieldError
from ...scene.nerfstudio import write_transforms
from ...scene.types import Frame, Intrinsics, Scene
from . import layout
from .assets import (
    assets_root,
    compose_scene,
    import_mujoco,
    load_object,
    load_vocabulary,
    texture_path,
    yaw_quat,
)
from .presets import GENERATOR_VERSION, PRESETS, Preset, get_preset
from .render import Simulation, render_views
from .write import SUBDIRS, boxes_2d, label_maps, write_preview, write_view

__all__ = ["PRESETS", "Preset", "make_scene"]

STUFF_BASE = ("floor", "wall", "ceiling", "table")
TEXTURE_REPEAT = {"floor": 1.0, "wall": 1.5, "ceiling": 1.5, "table": 0.9, "shelf": 0.8, "cabinet": 0.8}
DROP_HEIGHT = 0.02
MAX_REPLACEMENTS = 4  # spare objects tried when some do not fit or fall off


def make_scene(out_dir: str | Path, preset: str = "default", seed: int = 0, progress: bool = True,
               supersample: int | None = None) -> Path:
    """Generate one benchmark scene into ``out_dir`` (must not exist or be empty); returns transforms.json.

    ``supersample``: RGB samples per pixel along each axis (default: the preset's, see :class:`Preset`).

    Raises :class:`SemfieldError` if the folder is not empty or not writable, or if mujoco or the LIBERO
    assets are missing (install them with ``pip install 'semfield[bench]'``).
    """
    p = get_preset(preset)
    if supersample is not None:
        if int(supersample) < 1:
            raise SemfieldError(f"supersample must be >= 1, got {supersample}")
        p = replace(p, supersample=int(supersample))
    out = Path(out_dir).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SemfieldError("output folder is not empty", out)
    import_mujoco()
    assets_root()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise SemfieldError(f"cannot write the output folder ({exc.strerror})", out.parent) from None
    try:
        _build(p, int(seed), tmp, progress)
        os.chmod(tmp, 0o755)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "transforms.json"


# ---------------------------------------------------------------------------------------------- the build
def _pick_objects(rng: np.random.Generator, n: int) -> list[tuple[str, dict]]:
    """``n`` vocabulary entries with distinct classes, in seed order."""
    objects = load_vocabulary()["objects"]
    chosen, classes = [], set()
    for key in rng.permutation(sorted(objects)).tolist():
        entry = objects[key]
        if entry.get("checked") and entry["class"] not in classes:
            chosen.append((key, entry))
            classes.add(entry["class"])
        if len(chosen) == n:
            break
    return chosen


def _furniture(p: Preset, rng: np.random.Generator) -> tuple[list[layout.Furniture], list[layout.Orbit]]:
    Y = p.room_size[1] / 2
    if not p.furniture:
        centre = rng.uniform(-0.1, 0.1, 2)
        t = layout.table(centre, p.table_top, p.table_height)
        return [t], [layout.Orbit((*centre, p.table_height + 0.05), p.radius, p.elevation)]
    # room preset: table in the middle-left, a shelf against the +y wall, a cabinet against the -y wall
    t_xy = np.array([-0.7, -0.2]) + rng.uniform(-0.1, 0.1, 2)
    sh_xy = np.array([1.0 + rng.uniform(-0.2, 0.2), Y - 0.2])
    cab_xy = np.array([1.2 + rng.uniform(-0.2, 0.2), -Y + 0.25])
    pieces = [
        layout.table(t_xy, p.table_top, p.table_height),
        layout.shelf(sh_xy, 1.0, 0.36, (0.35, 0.75, 1.15), "+y"),
        layout.cabinet(cab_xy, (0.9, 0.45, 0.7)),
    ]
    orbits = [  # the shelf and the cabinet are seen from the room side only
        layout.Orbit((*t_xy, p.table_height + 0.05), p.radius, p.elevation, weight=0.5),
        layout.Orbit((sh_xy[0], sh_xy[1] - 0.1, 0.75), (1.2, 1.8), (5.0, 35.0), (0.25, 0.05, 0.25),
                     azimuth_deg=(-150.0, -30.0), weight=0.3),
        layout.Orbit((cab_xy[0], cab_xy[1] + 0.1, 0.75), (1.0, 1.6), (20.0, 50.0), (0.2, 0.05, 0.05),
                     azimuth_deg=(30.0, 150.0), weight=0.2),
    ]
    return pieces, orbits


def _compose(p, boxes, objects, poses, cameras, lights, materials) -> Simulation:
    mjcf = [load_object(entry["xml"], f"obj{k}/", pos, quat) for k, ((_, entry), (pos, quat)) in
            enumerate(zip(objects, poses))]
    xml = compose_scene(boxes, mjcf, cameras, lights, materials, extent=max(p.room_size),
                        offscreen=(max(640, p.width * p.supersample), max(480, p.height * p.supersample)),
                        far=1.5 * float(np.linalg.norm(p.room_size)))
    return Simulation.from_xml(xml, len(objects))


def _on_surface(sim: Simulation, k: int, surf: layout.Surface) -> bool:
    """Object k rests on ``surf``: origin above it and no visible part sunk through or hanging below it."""
    return surf.contains(sim.root_pos(k)[:2]) and sim.visual_vertices(k)[:, 2].min() > surf.z - 0.015


def _place_and_settle(p, rng, pool, surfaces, boxes, cameras, lights, materials):
    """Drop objects on the surfaces and let physics settle them; objects that fail to fit or fall off are
    replaced by the next ones in ``pool`` (up to two rounds), then dropped. Returns the simulation and the
    objects in it (instance id k + 1 = position k)."""
    active, rest = list(pool[:p.n_objects]), list(pool[p.n_objects:])
    fixed: dict[int, tuple[np.ndarray, np.ndarray, int]] = {}  # index in active -> (pos, quat, surface)
    for round_ in range(3):
        poses = [(fixed[k][0], fixed[k][1]) if k in fixed else ((0.0, 0.0, -1.0 - k), (1.0, 0.0, 0.0, 0.0))
                 for k in range(len(active))]
        sim = _compose(p, boxes, active, poses, cameras, lights, materials)
        new = [k for k in range(len(active)) if k not in fixed]
        occupied = []
        for k in fixed:
            pts = sim.visual_vertices(k)
            occupied.append((fixed[k][2], pts[:, :2].min(0), pts[:, :2].max(0)))
        yaws = rng.uniform(0, 2 * math.pi, len(new))
        local = [sim.visual_vertices(k, local=True) for k in new]
        feet = [layout.footprint(v[:, :2], yaw) for v, yaw in zip(local, yaws)]
        spots = layout.place_objects(rng, feet, surfaces, occupied)
        surface_of = {k: fixed[k][2] for k in fixed}
        for k, v, yaw, spot in zip(new, local, yaws, spots):
            if spot is not None:
                s, x, y = spot
                sim.set_pose(k, (x, y, surfaces[s].z - v[:, 2].min() + DROP_HEIGHT), yaw_quat(yaw))
                surface_of[k] = s
        sim.settle(p.settle_steps if round_ == 0 else p.settle_steps // 2)
        fixed = {k: (sim.root_pos(k), sim.data.xquat[sim.roots[k]].copy(), s) for k, s in surface_of.items()
                 if _on_surface(sim, k, surfaces[s])}
        if len(fixed) == len(active):
            return sim, active
        keep = sorted(fixed)
        replace = [] if round_ == 2 else rest[:len(active) - len(keep)]
        rest = rest[len(replace):]
        active = [active[k] for k in keep] + replace
        fixed = {j: fixed[k] for j, k in enumerate(keep)}
        if not replace:
            break
    # last resort: rebuild with the objects that stayed, at their settled poses
    sim = _compose(p, boxes, active, [(fixed[k][0], fixed[k][1]) for k in range(len(active))],
                   cameras, lights, materials)
    sim.settle(50)
    return sim, active


def _build(p: Preset, seed: int, root: Path, progress: bool) -> None:
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    vocab = load_vocabulary()
    pieces, orbits = _furniture(p, rng)
    stuff = list(STUFF_BASE) + [c for c in ("shelf", "cabinet") if p.furniture]
    textures = {}
    for role in stuff:
        pool = vocab["textures"]["table" if role == "table" else "furniture" if role in ("shelf", "cabinet")
                                 else role]
        textures[role] = str(rng.choice(sorted(set(pool) - set(textures.values())) or pool))
    materials = {r: {"texture": texture_path(t), "repeat": TEXTURE_REPEAT[r]} for r, t in textures.items()}
    boxes = layout.room_boxes(p.room_size) + [b for piece in pieces for b in piece.boxes]
    surfaces = [s for piece in pieces for s in piece.surfaces]
    n_lights = int(rng.integers(p.n_lights[0], p.n_lights[1] + 1))
    focus_xy = np.mean([np.add(s.lo, s.hi) / 2 for s in surfaces], 0)
    lights = layout.ceiling_lights(rng, p.room_size, n_lights, focus_xy=tuple(focus_xy.tolist()))
    poses_cv = layout.orbit_cameras(rng, orbits, p.n_train, p.n_test, p.room_size)
    cameras = [(f"view{i}", c2w, p.fovy) for i, (c2w, _) in enumerate(poses_cv)]
    pool = _pick_objects(rng, p.n_objects + MAX_REPLACEMENTS)
    sim, objects = _place_and_settle(p, rng, pool, surfaces, boxes, cameras, lights, materials)
    if not objects:
        raise SemfieldError(f"no object could be placed (preset {p.name!r}, seed {seed})")

    # 3. classes and ground-truth objects
    obj_classes = list(dict.fromkeys(entry["class"] for _, entry in objects))
    classes = ["unlabelled"] + stuff + obj_classes
    cls_index = {c: i for i, c in enumerate(classes)}
    gt_objects, object_boxes = [], []
    for k, (key, entry) in enumerate(objects):
        pts = sim.visual_vertices(k)
        bmin, bmax = pts.min(0), pts.max(0)
        object_boxes.append((bmin, bmax))
        gt_objects.append({
            "id": k + 1, "class": cls_index[entry["class"]], "name": entry["name"],
            "synonyms": list(entry["synonyms"]), "category": entry["category"], "asset": key,
            "box_min": _r(bmin), "box_max": _r(bmax), "center": _r((bmin + bmax) / 2),
        })
    instance_lut, stuff_lut = sim.geom_labels({c: cls_index[c] for c in stuff})
    object_class = np.array([0] + [o["class"] for o in gt_objects], np.int64)

    # 4. render and write every view
    for sub in SUBDIRS:
        (root / sub).mkdir()
    fx, fy, cx, cy = layout.intrinsics_from_fovy(p.width, p.height, p.fovy)
    intr = Intrinsics(p.width, p.height, fx, fy, cx, cy)
    frames, views, keep_for_preview = [], {}, []
    preview_idx = set(np.linspace(0, len(cameras) - 1, 6).round().astype(int).tolist())
    stream = render_views(sim, [c[0] for c in cameras], p.width, p.height, p.supersample)
    for i, view in enumerate(tqdm(stream, total=len(cameras), desc=f"rendering {p.name}", disable=not progress)):
        instance, semantic = label_maps(view.geom, instance_lut, stuff_lut, object_class)
        paths = write_view(root, i, view.rgb, view.depth, instance, semantic)
        split = poses_cv[i][1]
        name = paths["images"].relative_to(root).as_posix()
        frames.append(Frame(name=name, image_path=paths["images"], c2w=view.c2w, intrinsics=intr, split=split,
                            depth_path=paths["depth"],
                            extra={"instance": paths["instance"], "semantic": paths["semantic"]}))
        views[name] = {"split": split, "boxes": boxes_2d(instance)}
        if i in preview_idx:
            keep_for_preview.append((name, view.rgb, view.depth, instance))

    # 5. scene.json, transforms.json, preview
    furniture = np.array([[np.subtract(b.center, b.half), np.add(b.center, b.half)]
                          for piece in pieces for b in piece.boxes])
    focus = layout.focus_box(furniture[:, 0].min(0), furniture[:, 1].max(0), object_boxes)
    room = layout.room_aabb(p.room_size)
    focus = np.stack([np.maximum(focus[0], room[0]), np.minimum(focus[1], room[1])])
    gt = {
        "preset": p.name, "seed": seed, "generator": "semfield.data.generate",
        "generator_version": GENERATOR_VERSION, "rgb_supersample": p.supersample,
        "classes": classes, "stuff_classes": stuff, "objects": gt_objects,
        "views": views,
        "focus_aabb": _r(focus), "room_aabb": _r(room),
        "lights": lights, "textures": textures,
        "units": {"length": "metre", "depth_png": "millimetre", "box_2d": "pixels [x0, y0, x1, y1), x1/y1 exclusive",
                  "camera": "see transforms.json (nerfstudio / OpenGL)"},
        "room_size": list(p.room_size),
        "surfaces": [{"name": s.name, "lo": _r(s.lo), "hi": _r(s.hi), "z": round(s.z, 5)} for s in surfaces],
    }
    # No semfield.aabb: training finds its boxes from the images (the room's box is ground truth, kept in
    # scene.json for evaluation only).
    scene = Scene(root=root, frames=frames, depth_scale=0.001, ground_truth=gt)
    write_transforms(scene, root / "transforms.json")
    atomic_write_json(root / "scene.json", gt)
    write_preview(root / "preview.png", keep_for_preview, n_labels=len(gt_objects) + 1,
                  scale=max(1, 192 // p.width))


def _r(values, nd: int = 5):
    return np.round(np.asarray(values, dtype=np.float64), nd).tolist()
