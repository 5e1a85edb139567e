"""Exports of trained runs: pictures (PNG) now; point clouds and JSON later."""

from .pictures import colorize_depth, error_map, save_picture, side_by_side, stack_rows, turbo

__all__ = ["colorize_depth", "error_map", "save_picture", "side_by_side", "stack_rows", "turbo"]
