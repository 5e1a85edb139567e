"""Per-scene training of a GridField from posed images (resumable, progress with ETA)."""

from .config import TrainConfig

__all__ = ["TrainConfig"]
