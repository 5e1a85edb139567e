"""Scene presets: how big, how many objects, how many views."""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import SemfieldError

# Bumped whenever the same preset and seed start to give other files (2: RGB supersampled 3 x 3; 3: no
# semfield.aabb in transforms.json, the room's box only in scene.json). Written
# to scene.json as "generator_version"; scene reusers (the bench harness, bench_train.py) regenerate a scene
# of another version instead of silently measuring the old one.
GENERATOR_VERSION = 3


def is_current_scene(scene_json: dict) -> bool:
    """Whether a generated scene's ``scene.json`` content comes from this generator version."""
    return scene_json.get("generator_version") == GENERATOR_VERSION


@dataclass(frozen=True)
class Preset:
    """Settings of one generated scene kind (lengths in metres, angles in degrees)."""

    name: str
    n_objects: int
    n_train: int
    n_test: int
    width: int
    height: int
    room_size: tuple[float, float, float] = (4.0, 4.0, 2.6)
    table_top: tuple[float, float] = (1.2, 0.9)
    table_height: float = 0.75
    furniture: bool = False  # add a shelf and a cabinet along the walls
    fovy: float = 55.0
    radius: tuple[float, float] = (0.8, 1.4)
    elevation: tuple[float, float] = (20.0, 60.0)
    settle_steps: int = 1000
    n_lights: tuple[int, int] = (2, 4)  # inclusive range
    # RGB is rendered at this many times the resolution and box-filtered down in linear light, as a camera's
    # pixel integrates the light over its area (1 = one sample per pixel centre: aliased edges and textures,
    # which no 3D model can fit from every view; on default seed 0, 120 s of CPU training reached 23.99 dB
    # held-out PSNR on the aliased images and 25.49 dB with 3). Depth and labels stay one sample per pixel
    # centre.
    supersample: int = 3


PRESETS: dict[str, Preset] = {
    "tiny": Preset("tiny", n_objects=3, n_train=16, n_test=4, width=64, height=64,
                   room_size=(3.2, 3.2, 2.4), table_top=(0.9, 0.7), radius=(0.7, 1.0), settle_steps=600),
    "default": Preset("default", n_objects=10, n_train=48, n_test=8, width=192, height=192),
    "room": Preset("room", n_objects=15, n_train=96, n_test=12, width=192, height=192,
                   room_size=(5.0, 4.4, 2.6), furniture=True, radius=(0.9, 1.6)),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise SemfieldError(f"unknown scene preset {name!r} (choose from {', '.join(PRESETS)})") from None
