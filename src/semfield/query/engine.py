"""Answer queries on a trained run: text (LERF relevancy) and exemplar queries, heatmaps, segmentation.

:class:`QueryEngine` holds a run's field, its bake (surface cloud + view depths, see :mod:`.bake`) and, per
head, the teacher that trained it (rebuilt from the run's config, only to embed text). Phrase embeddings
are cached, so a repeated phrase costs nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..errors import SemfieldError
from ..run import Run
from ..scene.types import Frame, Scene
from ..teachers.registry import build_teacher
from .bake import Bake, head_features
from .factored import FactoredFeatures
from .localize import Localization, localize, point_spacing
from .relevancy import (
    exemplar_relevancy_from_cosines,
    labels_from_cosines,
    negative_phrases,
    relevancy_from_cosines,
)

TEXT_KINDS = ("label", "clip", "siglip")  # teacher kinds with a text tower
CLOUD_PIXELS = 96  # rendered pixels on the short side of each view for the surface cloud
# Depth renders of the bake (surface cloud, view depths, new viewpoints): the training renderer's step, not the
# evaluation's finer one: a median depth needs no finer step, and a new view's map renders ~3x faster
# (with colour skipped: 1.9 s -> 0.6 s at 192² on 2 cores).
BAKE_STEP_VOXELS = 1.5
BAKE_MAX_SAMPLES = 384
VIEW_CACHE = 64  # (view, head) feature sets kept in memory (a 192² view of a 32-wide latent: 4.7 MB)
# The best point is the median of the top surface points around their mode (localize()'s defaults). The most
# relevant point alone (used before) often sits on a small object's support, as the label head's voxels reach
# past the object: over the 116 text queries of the quick suite's runs (point in box) 0.586 with it, 0.707
# with this rule (a mean of the top points: 0.66 at best).
LOCALIZE_TOP_K = 16
LOCALIZE_RADIUS_FACTOR = 3.0  # the object's points connect within 3 point spacings
LOCALIZE_VOTE_FACTOR = 8.0  # the top points vote within 8 point spacings (~10 cm on the default scene)


@dataclass
class QueryResult:
    """A query's answer on the surface cloud.

    Attributes:
        query: what was asked (phrases, or the exemplar's view and pixel); head: the head used.
        relevancy: ``[N]`` per surface point; localization: best point and 3D box (see :func:`localize`).
        positives, negatives: ``[P, D]`` and ``[K, D]`` embeddings used (for heatmaps at any view); an
            exemplar query has its feature as the one positive and no negatives.
        calibration: an exemplar query's ``(median, best)`` cosine over the surface cloud, which every view's
            heatmap shares (see :func:`.relevancy.exemplar_relevancy_from_cosines`); None for text queries.
    """

    query: str
    head: str
    relevancy: torch.Tensor
    localization: Localization
    positives: torch.Tensor
    negatives: torch.Tensor
    calibration: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        loc = self.localization
        return {"query": self.query, "head": self.head, "point": [float(v) for v in loc.point],
                "box": [[float(v) for v in row] for row in loc.box], "score": float(loc.score),
                "n_points": int(loc.n_points), "found": bool(loc.found), **self.extra}


class QueryEngine:
    """Queries on one trained run.

    Args:
        run: the loaded run (:func:`semfield.run.load_run`); scene: the scene it was trained on.
        stride: pixel stride of the surface cloud's renders (see :class:`.bake.Bake`); default: about 96
            rendered pixels on the short side of each training view.
    """

    def __init__(self, run: Run, scene: Scene, stride: int | None = None, progress: bool = False):
        self.run, self.scene, self.progress = run, scene, progress
        self.heads = tuple(run.field.config.heads)
        if stride is None:
            short = min(min(f.intrinsics.width, f.intrinsics.height) for f in scene.split("train") or scene.frames)
            stride = max(1, short // CLOUD_PIXELS)
        opts = replace(run.config.eval_render, step_voxels=BAKE_STEP_VOXELS, max_samples=BAKE_MAX_SAMPLES)
        self.bake = Bake(run.run_dir, run.field, run.iteration, opts, stride=stride)
        self._teachers: dict[str, Any] = {}
        self._phrases: dict[tuple[str, str], torch.Tensor] = {}
        self._scene_views = {f.name for f in scene.frames}
        self._cloud_feats: dict[str, FactoredFeatures] = {}
        self._spacing: float | None = None
        self._view_feats: OrderedDict[tuple[str, str], FactoredFeatures] = OrderedDict()  # least recent first

    # ----- heads and text ------------------------------------------------------------------------------
    def check_head(self, head: str) -> None:
        if head not in self.heads:
            raise SemfieldError(f"this run has no head {head!r} (heads: {', '.join(self.heads) or 'none'})",
                                self.run.run_dir)

    def has_text(self, head: str) -> bool:
        """Whether ``head`` was trained by a teacher with a text tower (so text queries can ask it)."""
        return self.run.config.teachers.get(head, {}).get("kind", head) in TEXT_KINDS

    def text_head(self, head: str | None = None) -> str:
        """The head answering text queries: ``head`` if given, else the first whose teacher embeds text."""
        if head is not None:
            self.check_head(head)
            if not self.has_text(head):
                raise SemfieldError(f"head {head!r} was trained by a teacher with no text encoder; use an exemplar "
                                    "query for it", self.run.run_dir)
            return head
        for name in self.heads:
            if self.has_text(name):
                return name
        raise SemfieldError("this run has no text-capable head (train it with a clip, siglip or label teacher "
                            "to ask text queries; exemplar queries work with any head)", self.run.run_dir)

    def teacher(self, head: str):
        """The teacher that trained ``head`` (rebuilt from the run's config on first use)."""
        if head not in self._teachers:
            spec = self.run.config.teachers.get(head)
            if spec is None:
                raise SemfieldError(f"no teacher recorded for head {head!r}", self.run.run_dir)
            self._teachers[head] = build_teacher(head, spec, self.scene)
        return self._teachers[head]

    def embed(self, head: str, phrases: list[str]) -> torch.Tensor:
        """Unit embeddings ``[N, D]`` of phrases by the teacher of ``head`` (cached per phrase)."""
        missing = [p for p in dict.fromkeys(phrases) if (head, p) not in self._phrases]
        if missing:
            emb = self.teacher(head).embed_text(missing)
            for p, e in zip(missing, emb, strict=True):
                self._phrases[(head, p)] = e.float()
        return torch.stack([self._phrases[(head, p)] for p in phrases])

    # ----- queries on the surface cloud --------------------------------------------------------------
    def cloud(self):
        return self.bake.cloud(self.scene.split("train"), progress=self.progress)

    def cloud_cosines(self, head: str, table: torch.Tensor) -> torch.Tensor:
        """Cosines ``[N, K]`` of the surface cloud's head features to the rows of ``table [K, D]`` (in factored
        form, see :mod:`.factored`: the field's exact features, where ``cloud().features`` are float16)."""
        feats = self._cloud_feats.get(head)
        if feats is None:
            feats = self._cloud_feats[head] = FactoredFeatures.from_field(self.run.field, head, self.cloud().points)
        return feats.cosines(table)

    def _localize(self, relevancy: torch.Tensor) -> Localization:
        points = self.cloud().points
        if self._spacing is None:  # the cloud's point spacing, as localize() would compute it every time
            self._spacing = point_spacing(points.cpu().numpy())
        return localize(points, relevancy, top_k=LOCALIZE_TOP_K, radius=LOCALIZE_RADIUS_FACTOR * self._spacing,
                        vote_radius=LOCALIZE_VOTE_FACTOR * self._spacing)

    def text(self, positives: list[str], negatives: list[str] = (), replace_negatives: bool = False,
             head: str | None = None) -> QueryResult:
        """Where are ``positives`` (several phrases = max over them)? LERF relevancy on the surface cloud."""
        head = self.text_head(head)
        pos = self.embed(head, list(positives))
        neg = self.embed(head, list(negative_phrases(negatives, replace=replace_negatives)))
        cos = self.cloud_cosines(head, torch.cat([pos, neg]))
        rel = relevancy_from_cosines(cos[:, : pos.shape[0]], cos[:, pos.shape[0]:], reduce="max")
        return QueryResult(" | ".join(positives), head, rel, self._localize(rel), pos, neg)

    def exemplar_feature(self, frame: Frame, box: tuple[float, float, float, float], head: str) -> torch.Tensor:
        """Mean head feature ``[D]`` of the surface seen by the pixels of ``box = (x0, y0, x1, y1)`` in ``frame``
        (pixel coordinates, x1/y1 exclusive; a clicked pixel is a small box around it)."""
        self.check_head(head)
        points, hit = self._view_surface(frame)
        H, W = hit.shape
        x0, y0, x1, y1 = (round(v) for v in box)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if x0 >= x1 or y0 >= y1:
            raise SemfieldError(f"box {tuple(box)} lies outside the {W}x{H} view {frame.name!r}")
        sel = points[y0:y1, x0:x1][hit[y0:y1, x0:x1]]
        if sel.shape[0] == 0:
            raise SemfieldError(f"box {tuple(box)} of view {frame.name!r} sees no surface")
        return head_features(self.run.field, head, sel).mean(dim=0)

    def _default_head(self, head: str | None) -> str:
        if head is not None:
            self.check_head(head)
            return head
        if not self.heads:
            raise SemfieldError("this run has no feature heads to query", self.run.run_dir)
        return self.heads[0]

    def exemplar(self, frame: Frame, x: float, y: float, head: str | None = None, radius: int = 2) -> QueryResult:
        """Where else is what pixel (x, y) of ``frame`` shows (with its neighbours within ``radius`` pixels)?"""
        head = self._default_head(head)
        box = (int(x) - radius, int(y) - radius, int(x) + radius + 1, int(y) + radius + 1)
        return self.exemplar_by_feature(self.exemplar_feature(frame, box, head), head, f"{frame.name}@{x:g},{y:g}")

    def exemplar_box(self, frame: Frame, box: tuple[float, float, float, float], head: str | None = None
                     ) -> QueryResult:
        """Where else is what the pixel box ``(x0, y0, x1, y1)`` of ``frame`` shows?"""
        head = self._default_head(head)
        label = f"{frame.name}@{','.join(f'{v:g}' for v in box)}"
        return self.exemplar_by_feature(self.exemplar_feature(frame, box, head), head, label)

    def exemplar_image(self, image: torch.Tensor, head: str | None = None, label: str = "image") -> QueryResult:
        """Where is what an image crop ``[H, W, 3]`` (float in [0, 1]) shows? Its mean teacher feature (the
        teacher of ``head`` run on the crop) is the exemplar."""
        head = self._default_head(head)
        teacher = self.teacher(head)
        feat = teacher.extract(image).features.reshape(-1, teacher.dim).mean(dim=0)
        return self.exemplar_by_feature(feat.float(), head, label)

    def exemplar_by_feature(self, feature: torch.Tensor, head: str, label: str) -> QueryResult:
        """Exemplar relevancy of feature ``[D]`` on the surface cloud: its cosine, calibrated on the cloud's
        median and best cosines (see :func:`.relevancy.exemplar_relevancy_from_cosines`)."""
        exemplar = feature.float()[None]
        cos = self.cloud_cosines(head, exemplar)[:, 0]
        calibration = (float(cos.median()), float(cos.max()))
        rel = exemplar_relevancy_from_cosines(cos, *calibration)
        return QueryResult(label, head, rel, self._localize(rel), exemplar, exemplar[:0], calibration)

    # ----- per-view maps --------------------------------------------------------------------------------
    def _view_surface(self, frame: Frame):
        """The bake's surface of a view; only the scene's own views are kept on disk (an arbitrary pose is
        rendered anew by every engine, so its latency and its answer never depend on an earlier run)."""
        return self.bake.view_surface(frame, persist=frame.name in self._scene_views)

    def view_cosines(self, frame: Frame, head: str, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosines ``[H, W, K]`` of the head features seen by each pixel to the rows of ``table [K, D]``, and the
        hit mask ``[H, W]``. The view's features are kept in factored form (see :mod:`.factored`), so a
        repeated view costs one small matrix product per query."""
        points, hit = self._view_surface(frame)
        key = (frame.name, head)
        feats = self._view_feats.get(key)
        if feats is None:
            feats = FactoredFeatures.from_field(self.run.field, head, points.reshape(-1, 3))
            self._view_feats[key] = feats
            while len(self._view_feats) > VIEW_CACHE:
                self._view_feats.popitem(last=False)
        self._view_feats.move_to_end(key)
        H, W = hit.shape
        return feats.cosines(table).view(H, W, -1), hit

    def heatmap(self, result: QueryResult, frame: Frame) -> torch.Tensor:
        """Relevancy ``[H, W]`` of a query at a view (0 where the pixel sees no surface)."""
        n_pos = result.positives.shape[0]
        cos, hit = self.view_cosines(frame, result.head, torch.cat([result.positives, result.negatives]))
        if result.calibration is not None:
            rel = exemplar_relevancy_from_cosines(cos[..., 0], *result.calibration)
        else:
            rel = relevancy_from_cosines(cos[..., :n_pos], cos[..., n_pos:], reduce="max")
        return torch.where(hit, rel, torch.zeros_like(rel))

    def segment_view(self, frame: Frame, labels: list[str], head: str | None = None) -> np.ndarray:
        """Per-pixel index into ``labels`` ``[H, W]`` (argmax cosine; -1 where no surface is seen)."""
        head = self.text_head(head)
        cos, hit = self.view_cosines(frame, head, self.embed(head, list(labels)))
        seg = labels_from_cosines(cos)
        return torch.where(hit, seg, torch.full_like(seg, -1)).numpy()
