"""Radiance + feature fields in plain PyTorch (no compiled extensions; same code on CPU and CUDA)."""

from .grid_field import FieldConfig, GridField, HeadConfig

__all__ = ["FieldConfig", "GridField", "HeadConfig"]
