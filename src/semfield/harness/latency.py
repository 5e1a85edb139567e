"""Query latencies of a trained run, after a warm-up (PROTOCOLS.md, "Speed and memory").

- text query: 3D point + box on the surface cloud plus the relevancy heatmap at one existing view, with every
  phrase's embedding already cached and that view's depth baked;
- exemplar query: the same from a pixel of a training view;
- new viewpoint: a relevancy map at a pose no one baked (a test camera moved :data:`SHIFT_METRES` along its
  own x axis), its depth render included.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import SemfieldError
from ..scene.types import Frame
from .ground_truth import exemplar_pixel, text_queries

SHIFT_METRES = 0.10


def _median_ms(seconds: list[float]) -> float | None:
    return 1000.0 * statistics.median(seconds) if seconds else None


def text_latency(engine, phrases: list[str], view: Frame) -> float | None:
    """Median ms of a text query plus its heatmap at ``view``, after one warm-up."""
    for p in phrases:
        engine.embed(engine.text_head(), [p])
    engine.heatmap(engine.text([phrases[0]]), view)  # warm-up
    seconds = []
    for p in phrases:
        start = time.perf_counter()
        engine.heatmap(engine.text([p]), view)
        seconds.append(time.perf_counter() - start)
    return _median_ms(seconds)


def exemplar_latency(engine, picks: list[tuple[Frame, float, float]], head: str, view: Frame) -> float | None:
    """Median ms of an exemplar query plus its heatmap at ``view``, after one warm-up; the exemplar views'
    depths are baked by the warm-up. A pixel that sees no surface is left out."""
    ok = []
    for frame, x, y in picks:
        try:
            engine.heatmap(engine.exemplar(frame, x, y, head=head), view)
            ok.append((frame, x, y))
        except SemfieldError:
            pass
    seconds = []
    for frame, x, y in ok:
        start = time.perf_counter()
        engine.heatmap(engine.exemplar(frame, x, y, head=head), view)
        seconds.append(time.perf_counter() - start)
    return _median_ms(seconds)


def shifted_view(frame: Frame, metres: float = SHIFT_METRES) -> Frame:
    """``frame`` with its camera moved ``metres`` along its own x axis, under a new name (nothing baked)."""
    c2w = np.array(frame.c2w, dtype=np.float64)
    c2w[:3, 3] += metres * c2w[:3, 0]
    return replace(frame, name=f"{frame.name}#shift{metres:g}m", c2w=c2w)


def new_view_latency(engine, result, views: list[Frame]) -> float | None:
    """Median ms of a query's relevancy map at brand-new viewpoints (each of ``views`` shifted)."""
    seconds = []
    for frame in views:
        new = shifted_view(frame)
        start = time.perf_counter()
        engine.heatmap(result, new)
        seconds.append(time.perf_counter() - start)
    return _median_ms(seconds)


def latencies(engine, gt: dict[str, Any], train_views: list[Frame], test_views: list[Frame],
              image_head: str | None) -> dict[str, float | None]:
    """``text_query_ms``, ``exemplar_query_ms`` (None without an image head) and ``new_view_relevancy_ms``."""
    phrases = [q["phrase"] for q in text_queries(gt)]
    out: dict[str, float | None] = {"text_query_ms": text_latency(engine, phrases, test_views[0])}
    picks = [p for p in (exemplar_pixel(gt, train_views, o["id"]) for o in gt["objects"]) if p is not None]
    out["exemplar_query_ms"] = exemplar_latency(engine, picks, image_head, test_views[0]) if image_head else None
    out["new_view_relevancy_ms"] = new_view_latency(engine, engine.text([phrases[0]]), test_views)
    return out
