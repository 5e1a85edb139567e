"""Scene layout in pure numpy: room and furniture boxes, object placement, lights and camera poses.

World frame: z up, metres, floor at z = 0, room centred on the origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...scene.convention import look_at


@dataclass(frozen=True)
class Box:
    """A static textured box (stuff): ``name`` is unique, ``cls`` its semantic class."""

    name: str
    cls: str
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    material: str


@dataclass(frozen=True)
class Surface:
    """A horizontal rectangle objects can stand on: x/y bounds and height ``z``."""

    name: str
    lo: tuple[float, float]
    hi: tuple[float, float]
    z: float

    @property
    def area(self) -> float:
        return (self.hi[0] - self.lo[0]) * (self.hi[1] - self.lo[1])

    def contains(self, xy: np.ndarray, margin: float = 0.0) -> bool:
        return bool(np.all(xy >= np.asarray(self.lo) + margin) and np.all(xy <= np.asarray(self.hi) - margin))


@dataclass
class Furniture:
    """Boxes of one piece of furniture and the surfaces it offers."""

    boxes: list[Box]
    surfaces: list[Surface] = field(default_factory=list)


def _box(name, cls, lo, hi, material) -> Box:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Box(name, cls, tuple((lo + hi) / 2), tuple((hi - lo) / 2), material)


def room_boxes(size: tuple[float, float, float], thickness: float = 0.1) -> list[Box]:
    """Floor, four walls and ceiling of a closed room whose interior is ``[-X/2, X/2] × [-Y/2, Y/2] × [0, Z]``."""
    X, Y, Z = size[0] / 2, size[1] / 2, size[2]
    t = thickness
    return [
        _box("stuff/floor/0", "floor", (-X - t, -Y - t, -t), (X + t, Y + t, 0.0), "floor"),
        _box("stuff/ceiling/0", "ceiling", (-X - t, -Y - t, Z), (X + t, Y + t, Z + t), "ceiling"),
        _box("stuff/wall/0", "wall", (-X - t, -Y - t, 0.0), (-X, Y + t, Z), "wall"),
        _box("stuff/wall/1", "wall", (X, -Y - t, 0.0), (X + t, Y + t, Z), "wall"),
        _box("stuff/wall/2", "wall", (-X, -Y - t, 0.0), (X, -Y, Z), "wall"),
        _box("stuff/wall/3", "wall", (-X, Y, 0.0), (X, Y + t, Z), "wall"),
    ]


def room_aabb(size: tuple[float, float, float], pad: float = 0.05) -> np.ndarray:
    """The room interior ``[2, 3]`` grown by ``pad`` so wall surfaces lie strictly inside."""
    X, Y, Z = size[0] / 2, size[1] / 2, size[2]
    return np.array([[-X - pad, -Y - pad, -pad], [X + pad, Y + pad, Z + pad]])


def table(center_xy, top: tuple[float, float], height: float, name: str = "table",
          thickness: float = 0.04, leg: float = 0.05) -> Furniture:
    """A four-legged table: top ``top = (width, depth)`` whose upper face is at ``height``."""
    cx, cy = center_xy
    w, d = top[0] / 2, top[1] / 2
    boxes = [_box(f"stuff/{name}/top", name, (cx - w, cy - d, height - thickness), (cx + w, cy + d, height), name)]
    inset = 0.06
    for i, (sx, sy) in enumerate(((-1, -1), (1, -1), (-1, 1), (1, 1))):
        lx, ly = cx + sx * (w - inset), cy + sy * (d - inset)
        boxes.append(_box(f"stuff/{name}/leg{i}", name, (lx - leg / 2, ly - leg / 2, 0.0),
                          (lx + leg / 2, ly + leg / 2, height - thickness), name))
    return Furniture(boxes, [Surface(f"{name} top", (cx - w, cy - d), (cx + w, cy + d), height)])


def shelf(center_xy, width: float, depth: float, heights: tuple[float, ...], yaw_to_wall: str,
          name: str = "shelf", board: float = 0.025) -> Furniture:
    """An open shelf unit standing against a wall (``yaw_to_wall`` ∈ {"+y", "-y"}: the side its back is on).

    ``heights`` are the upper faces of its boards (the last one is the top); objects go on every board.
    """
    cx, cy = center_xy
    w, d = width / 2, depth / 2
    back = 1.0 if yaw_to_wall == "+y" else -1.0
    top = heights[-1]
    boxes = [
        _box(f"stuff/{name}/side0", name, (cx - w, cy - d, 0.0), (cx - w + board, cy + d, top), name),
        _box(f"stuff/{name}/side1", name, (cx + w - board, cy - d, 0.0), (cx + w, cy + d, top), name),
        _box(f"stuff/{name}/back", name, (cx - w, cy + back * d - board / 2, 0.0),
             (cx + w, cy + back * d + board / 2, top), name),
    ]
    surfaces = []
    for i, h in enumerate(heights):
        boxes.append(_box(f"stuff/{name}/board{i}", name, (cx - w, cy - d, h - board), (cx + w, cy + d, h), name))
        clear = (heights[i + 1] - board - h) if i + 1 < len(heights) else 1.0
        surfaces.append(Surface(f"{name} board {i}", (cx - w + board, cy - d + board * (back < 0)),
                                (cx + w - board, cy + d - board * (back > 0)), h))
        if clear < 0.18:
            surfaces.pop()
    return Furniture(boxes, surfaces)


def cabinet(center_xy, size: tuple[float, float, float], name: str = "cabinet") -> Furniture:
    """A closed low cabinet (one box) whose top is a surface."""
    cx, cy = center_xy
    w, d, h = size[0] / 2, size[1] / 2, size[2]
    boxes = [_box(f"stuff/{name}/body", name, (cx - w, cy - d, 0.0), (cx + w, cy + d, h), name)]
    return Furniture(boxes, [Surface(f"{name} top", (cx - w, cy - d), (cx + w, cy + d), h)])


# ---------------------------------------------------------------------------------------------- placement
def footprint(vertices_xy: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned footprint offsets ``(lo [2], hi [2])`` of body-frame vertices ``[V, 2]`` turned by ``yaw``."""
    c, s = math.cos(yaw), math.sin(yaw)
    xy = np.asarray(vertices_xy, float) @ np.array([[c, s], [-s, c]])
    return xy.min(0), xy.max(0)


def place_objects(rng: np.random.Generator, footprints: list[tuple[np.ndarray, np.ndarray]],
                  surfaces: list[Surface], occupied: list[tuple[int, np.ndarray, np.ndarray]] = (),
                  margin: float = 0.03, gap: float = 0.015, tries: int = 400) -> list[tuple[int, float, float] | None]:
    """Rejection-sample non-overlapping rectangular footprints on ``surfaces``.

    Args:
        footprints: per object, ``(lo, hi)`` offsets of its footprint from its origin (see :func:`footprint`).
        occupied: rectangles already taken, ``(surface index, lo [2], hi [2])`` in world x/y.
    Returns, per object, ``(surface index, x, y)`` of its origin, or None when it did not fit. Larger
    objects go first; a surface is drawn with probability proportional to its area.
    """
    areas = np.array([s.area for s in surfaces])
    out: list[tuple[int, float, float] | None] = [None] * len(footprints)
    taken = [(s, np.asarray(lo, float), np.asarray(hi, float)) for s, lo, hi in occupied]
    sizes = [float(np.prod(np.subtract(hi, lo))) for lo, hi in footprints]
    for i in np.argsort(-np.asarray(sizes), kind="stable"):
        off_lo, off_hi = (np.asarray(v, float) for v in footprints[i])
        for _ in range(tries):
            s = int(rng.choice(len(surfaces), p=areas / areas.sum()))
            lo = np.asarray(surfaces[s].lo) + margin - off_lo
            hi = np.asarray(surfaces[s].hi) - margin - off_hi
            if np.any(hi <= lo):
                continue
            xy = rng.uniform(lo, hi)
            box_lo, box_hi = xy + off_lo, xy + off_hi
            if all(s2 != s or np.any(box_lo >= hi2 + gap) or np.any(box_hi <= lo2 - gap) for s2, lo2, hi2 in taken):
                taken.append((s, box_lo, box_hi))
                out[i] = (s, float(xy[0]), float(xy[1]))
                break
    return out


# ------------------------------------------------------------------------------------------------ lights
def ceiling_lights(rng: np.random.Generator, size: tuple[float, float, float], n: int,
                   focus_xy=(0.0, 0.0)) -> list[dict]:
    """``n`` spot lights hanging just under the ceiling, aimed at points near ``focus_xy``.

    No shadows: MuJoCo's spot-light shadow maps show acne (dark speckles) on surfaces lit at grazing angles
    in a closed room, which would be noise a radiance field has to explain.
    """
    X, Y, Z = size[0] / 2, size[1] / 2, size[2]
    lights = []
    base = rng.uniform(0, 2 * math.pi)
    for i in range(n):
        ang = base + 2 * math.pi * i / n + rng.uniform(-0.3, 0.3)
        rad = rng.uniform(0.4, 0.8) * min(X, Y)
        pos = np.array([np.clip(focus_xy[0] + rad * math.cos(ang), -X + 0.2, X - 0.2),
                        np.clip(focus_xy[1] + rad * math.sin(ang), -Y + 0.2, Y - 0.2), Z - 0.05])
        aim = np.array([focus_xy[0] + rng.uniform(-0.3, 0.3), focus_xy[1] + rng.uniform(-0.3, 0.3), 0.7])
        direction = (aim - pos) / np.linalg.norm(aim - pos)
        strength = rng.uniform(0.45, 0.7) * (1.6 / n) ** 0.5
        warm = rng.uniform(-0.06, 0.06)
        lights.append({
            "pos": pos.round(4).tolist(), "dir": direction.round(4).tolist(),
            "diffuse": [round(strength * (1 + warm), 4), round(strength, 4), round(strength * (1 - warm), 4)],
            "ambient": [round(0.28 / n, 4)] * 3, "specular": [0.15] * 3,
            "castshadow": False, "cutoff": 85.0,
        })
    return lights


# ----------------------------------------------------------------------------------------------- cameras
@dataclass(frozen=True)
class Orbit:
    """Camera ranges around a target region; ``weight`` is its share of the views."""

    center: tuple[float, float, float]
    radius: tuple[float, float] = (0.8, 1.4)
    elevation_deg: tuple[float, float] = (20.0, 60.0)
    target_jitter: tuple[float, float, float] = (0.12, 0.1, 0.04)
    azimuth_deg: tuple[float, float] | None = None  # None: all around
    weight: float = 1.0


def _split_counts(total: int, weights: list[float]) -> list[int]:
    w = np.asarray(weights, float) / sum(weights)
    counts = np.floor(w * total).astype(int)
    for i in np.argsort(-(w * total - counts), kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def orbit_cameras(rng: np.random.Generator, orbits: list[Orbit], n_train: int, n_test: int,
                  room_size: tuple[float, float, float], wall_margin: float = 0.25) -> list[tuple[np.ndarray, str]]:
    """Camera-to-world poses (OpenCV axes) and splits, orbit after orbit, in azimuth order.

    Each orbit's views are spread evenly in azimuth with a low-discrepancy elevation sequence; every k-th
    view is a test view, so each test view lies between train views in azimuth and inside the same
    elevation range (an interpolation, not an extrapolation).
    """
    X, Y, Z = room_size[0] / 2 - wall_margin, room_size[1] / 2 - wall_margin, room_size[2] - wall_margin
    weights = [o.weight for o in orbits]
    out = []
    for orbit, n_tr, n_te in zip(orbits, _split_counts(n_train, weights), _split_counts(n_test, weights)):
        n = n_tr + n_te
        step = n / max(n_te, 1)
        test_idx = {int(step * k + step / 2) for k in range(n_te)}
        if orbit.azimuth_deg is None:
            az0, span, slots = rng.uniform(0, 2 * math.pi), 2 * math.pi, n
        else:
            az0, span = math.radians(orbit.azimuth_deg[0]), math.radians(orbit.azimuth_deg[1] - orbit.azimuth_deg[0])
            slots = max(n - 1, 1)
        phase = rng.uniform()
        for i in range(n):
            az = az0 + span * (i + (rng.uniform(-0.3, 0.3) if orbit.azimuth_deg is None else 0.0)) / slots
            frac = (phase + i * 0.6180339887) % 1.0
            el = math.radians(orbit.elevation_deg[0] + (orbit.elevation_deg[1] - orbit.elevation_deg[0]) * frac)
            target = np.asarray(orbit.center) + rng.uniform(-1, 1, 3) * np.asarray(orbit.target_jitter)
            r = rng.uniform(*orbit.radius)
            for _ in range(20):  # pull the camera in until it is inside the room
                eye = target + r * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
                if abs(eye[0]) <= X and abs(eye[1]) <= Y and 0.2 <= eye[2] <= Z:
                    break
                r *= 0.93
            eye = np.clip(eye, [-X, -Y, 0.2], [X, Y, Z])
            out.append((look_at(eye, target), "test" if i in test_idx else "train"))
    return out


def intrinsics_from_fovy(width: int, height: int, fovy_deg: float) -> tuple[float, float, float, float]:
    """``(fx, fy, cx, cy)`` of MuJoCo's camera: square pixels, vertical field of view ``fovy_deg``."""
    f = (height / 2) / math.tan(math.radians(fovy_deg) / 2)
    return f, f, width / 2, height / 2


def focus_box(table_lo, table_hi, object_boxes: list[tuple[np.ndarray, np.ndarray]],
              pad_xy: float = 0.3, pad_z: float = 0.05) -> np.ndarray:
    """Box ``[2, 3]`` holding the table(s), all objects and the floor around them (the dense region)."""
    lo = np.array([table_lo[0] - pad_xy, table_lo[1] - pad_xy, -0.02])
    hi = np.array([table_hi[0] + pad_xy, table_hi[1] + pad_xy, table_hi[2] + pad_z])
    for bmin, bmax in object_boxes:
        lo = np.minimum(lo, np.asarray(bmin) - 0.02)
        hi = np.maximum(hi, np.asarray(bmax) + pad_z)
    return np.stack([lo, hi])
