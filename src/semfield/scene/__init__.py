"""Scenes: posed images with intrinsics and optional depth, masks and ground truth.

Camera convention (the only one inside semfield; see :mod:`semfield.scene.convention`):
camera-to-world 4×4 matrices, OpenCV camera axes (x right, y down, z forward), world units as given by
the capture (metres for generated scenes), world z up for generated scenes.
"""

from .types import Frame, Intrinsics, Scene

__all__ = ["Frame", "Intrinsics", "Scene"]
