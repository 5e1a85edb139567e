"""Scene data types: intrinsics, frames and scenes (I/O-free containers; readers live beside them)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

CAMERA_MODELS = ("PINHOLE", "OPENCV")


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, optional OpenCV distortion ``(k1, k2, p1, p2)``.

    Pixel centres sit at half-integers: the centre of the top-left pixel is (0.5, 0.5).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: str = "PINHOLE"
    distortion: tuple[float, ...] = ()

    @property
    def K(self) -> np.ndarray:
        """Calibration matrix ``[3, 3]``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, factor: float) -> Intrinsics:
        """Intrinsics of the same camera with the image resized by ``factor``."""
        return replace(
            self,
            width=round(self.width * factor),
            height=round(self.height * factor),
            fx=self.fx * factor,
            fy=self.fy * factor,
            cx=self.cx * factor,
            cy=self.cy * factor,
        )

    def long_side_at_most(self, size: int) -> Intrinsics:
        """The same camera scaled so its long side is ``size`` pixels, or unchanged when it is already no
        longer (a smaller render, never an upsampled one)."""
        return self.scaled(min(1.0, size / max(self.width, self.height)))


@dataclass
class Frame:
    """One posed image.

    Attributes:
        name: the image path as written in the capture (relative to the scene root); unique per scene.
        image_path: absolute path of the RGB image.
        c2w: camera-to-world ``[4, 4]`` float64, OpenCV camera axes (see :mod:`semfield.scene.convention`).
        intrinsics: the camera's intrinsics at the image's resolution.
        split: ``"train"`` or ``"test"``.
        depth_path: optional planar (z) depth image; units given by ``Scene.depth_scale``.
        mask_path: optional mask; pixels with value 0 are ignored in training.
        extra: other per-frame files (ground truth of generated scenes: ``instance``, ``semantic``).
    """

    name: str
    image_path: Path
    c2w: np.ndarray
    intrinsics: Intrinsics
    split: str = "train"
    depth_path: Path | None = None
    mask_path: Path | None = None
    extra: dict[str, Path] = field(default_factory=dict)


@dataclass
class Scene:
    """Posed images of one scene.

    Attributes:
        root: folder the frame paths are relative to.
        frames: all frames, train and test.
        depth_scale: scene units per depth-image unit (0.001 for millimetre PNGs).
        aabb: optional region of interest ``[2, 3]`` (min corner, max corner) in world units.
        ground_truth: optional ground truth of generated scenes (contents of ``scene.json``).
        source: the file the scene was read from (for error messages).
    """

    root: Path
    frames: list[Frame]
    depth_scale: float = 1.0
    aabb: np.ndarray | None = None
    ground_truth: dict[str, Any] | None = None
    source: Path | None = None

    def split(self, name: str) -> list[Frame]:
        """Frames of one split (``"train"`` or ``"test"``), in file order."""
        return [f for f in self.frames if f.split == name]

    def frame(self, spec: str) -> Frame:
        """Look a frame up by ``"test:3"`` / ``"train:0"`` (index within a split) or by its name."""
        from ..errors import SemfieldError

        if ":" in spec and spec.split(":", 1)[0] in ("train", "test"):
            split, idx = spec.split(":", 1)
            frames = self.split(split)
            try:
                return frames[int(idx)]
            except (ValueError, IndexError):
                raise SemfieldError(
                    f"no view {spec!r} (the {split} split has {len(frames)} views)", self.source
                ) from None
        for f in self.frames:
            if f.name == spec:
                return f
        raise SemfieldError(f"no view named {spec!r}", self.source)

    @property
    def c2w(self) -> np.ndarray:
        """All camera-to-world matrices ``[N, 4, 4]``."""
        return np.stack([f.c2w for f in self.frames]) if self.frames else np.zeros((0, 4, 4))
