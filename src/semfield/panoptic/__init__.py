"""Panoptic feature fields (PVLFF-style): a contrastive instance head trained from per-view 2D masks, HDBSCAN
instances with one id across views, classes by text similarity, scene-level PQ.

Entry points: :func:`evaluate_run` (scores on a generated scene), :class:`ScenePanoptic` (segment any view),
:func:`write_panoptic` (PNG maps with a legend, instances JSON, PLY).
"""

from .evaluate import evaluate_run
from .scene_panoptic import PanopticSettings, ScenePanoptic

__all__ = ["PanopticSettings", "ScenePanoptic", "evaluate_run"]
