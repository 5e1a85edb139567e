"""Scene-consistent panoptic segmentation of a trained run with an instance head.

1. The training views are rendered (every ``stride``-th pixel, at most ``views`` of them) with the
   ``instance`` head and the text head (e.g. ``label``); ``max_points`` random rendered pixels are kept,
   each with its surface point, and each pixel's label is the one whose text embedding (by the teacher of
   the text head) is most similar to its semantic feature. The instance features are clustered with HDBSCAN
   (:class:`.cluster.InstanceClusterer`).
2. ``fusion = "semantic"`` (default): each cluster takes the label that its HDBSCAN members resemble most
   above the scene's level: the mean over members of each label's cosine standardised over all sampled
   pixels (:func:`.classify.cluster_label_scores`). A teacher that blurs small objects into the table they
   stand on makes "table" the nearest label of most of an object's pixels, yet the object's own label rises
   several standard deviations above its level elsewhere and "table" about one. A pixel inside a thing
   cluster (cosine to its centre at least the cluster's ``radius_percentile`` member cosine) belongs to that
   instance; any other pixel follows its own label: a stuff label joins that label's one stuff segment, a
   thing label the nearest thing cluster.
3. ``fusion = "instance"`` (PVLFF as published): every pixel takes the nearest centre of any cluster, each
   cluster its members' majority label, and the clusters of one stuff label merge into one segment.
One set of centres serves every view, so instance ids are the same in every view.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..errors import SemfieldError
from ..query.engine import QueryEngine
from ..scene.types import Frame
from ..train.instance import INSTANCE_HEAD
from .classify import cluster_label_scores, cluster_labels, label_cosines, panoptic_instances, point_labels
from .cluster import InstanceClusterer, nearest_centre
from .rendered import render_view, sample_views

BOX_PERCENTILES = (1.0, 99.0)  # an instance's 3D box spans these percentiles of its points per axis


@dataclass
class PanopticSettings:
    """Clustering: HDBSCAN's ``min_cluster_size`` and ``min_samples`` on ``max_points`` rendered pixels of at
    most ``views`` training views (evenly spaced) rendered at pixel ``stride`` (``seed`` draws the pixels);
    ``text_head``: the head whose features are labelled (default: the run's first text-capable head);
    ``fusion``: how a pixel's instance is chosen, "semantic" or "instance"; ``radius_percentile``: the
    semantic fusion's rule (see the module docstring). A low percentile (generous radius) suits an instance
    field without halos (see :mod:`semfield.train.instance`): on two quick-suite scenes 3 gave PQ 69.7 and
    69.0 where 10 gave 63.2 and 66.5, the pixels lost being object pixels the label teacher calls table.
    ``cluster_selection``: HDBSCAN's selection method (see :class:`InstanceClusterer`); over the 8 full-suite
    runs "leaf" gave mean PQ 60.1 against 55.6 for "eom" (+42.6 on default-4, -7.1 on default-3, equal on
    the other six)."""

    min_cluster_size: int = 20
    min_samples: int | None = 5
    max_points: int = 20000
    views: int = 24
    stride: int = 2
    seed: int = 0
    text_head: str | None = None
    fusion: str = "semantic"
    radius_percentile: float = 3.0
    cluster_selection: str = "leaf"


@dataclass
class PanopticInstance:
    """One instance (or one stuff region) of the scene, with its sampled surface points' extent."""

    id: int
    label: int
    name: str
    stuff: bool
    n_points: int
    box_min: list[float]
    box_max: list[float]
    centre: list[float]
    agreement: float  # share of the instance's points whose own label agrees

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ScenePanoptic:
    """Panoptic segmentation of one run (see the module docstring).

    Args:
        engine: a :class:`QueryEngine` on the run (for the text head's teacher and its phrase cache).
        labels: label phrases (the classes to tell apart).
        stuff: the labels (phrases from ``labels``) that are stuff; every other label is a thing.
        settings: clustering settings.

    Attributes (after :meth:`fit`): ``instances``, ``sample`` (the rendered pixels,
    :class:`.rendered.RenderedSample`), ``point_instance [N]`` (instance of each sampled pixel),
    ``cluster_instance [K]``, ``clusterer``, ``render_seconds``, ``seconds`` (clustering + labelling).
    """

    def __init__(self, engine: QueryEngine, labels: list[str], stuff: list[str] = (),
                 settings: PanopticSettings | None = None):
        if INSTANCE_HEAD not in engine.heads:
            raise SemfieldError(f"this run has no {INSTANCE_HEAD!r} head (train it with an instance setting, e.g. "
                                "--set 'instance={\"masks\": {\"kind\": \"simulated\"}}')", engine.run.run_dir)
        if not labels:
            raise SemfieldError("panoptic segmentation needs at least one label")
        unknown = sorted(set(stuff) - set(labels))
        if unknown:
            raise SemfieldError(f"stuff label(s) not among the labels: {', '.join(unknown)}")
        self.engine, self.labels = engine, list(labels)
        self.stuff_labels = sorted(self.labels.index(s) for s in set(stuff))
        self.settings = settings or PanopticSettings()
        if self.settings.fusion not in ("semantic", "instance"):
            raise SemfieldError(f"unknown panoptic fusion {self.settings.fusion!r} (semantic or instance)")
        self.text_head = engine.text_head(self.settings.text_head)
        self.instances: list[PanopticInstance] = []

    def training_views(self) -> list[Frame]:
        """The views the instance features are sampled from (at most ``settings.views`` training views,
        evenly spaced)."""
        frames = self.engine.scene.split("train") or self.engine.scene.frames
        n = min(len(frames), max(1, self.settings.views))
        return [frames[int(i)] for i in np.linspace(0, len(frames) - 1, n).round()]

    def fit(self, progress: bool = False) -> ScenePanoptic:
        """Render and sample the training views, cluster the instance features and label the instances.

        ``render_seconds`` times the renders; ``seconds`` the clustering and labelling."""
        s, run = self.settings, self.engine.run
        start = time.perf_counter()
        self.sample = sample_views(run.field, self.training_views(), run.config.eval_render,
                                   (INSTANCE_HEAD, self.text_head), s.stride, s.max_points, s.seed, progress)
        self.render_seconds = time.perf_counter() - start
        embeddings = self.engine.embed(self.text_head, self.labels)
        start = time.perf_counter()
        feats = self.sample.features[INSTANCE_HEAD]
        cosines = label_cosines(self.sample.features[self.text_head], embeddings)
        voted = cosines.argmax(dim=1)
        self.clusterer = InstanceClusterer(s.min_cluster_size, s.min_samples, s.max_points, s.seed,
                                           s.cluster_selection).fit(feats)
        n_clusters = self.clusterer.centres_.shape[0]
        if s.fusion == "instance":
            label, _ = cluster_labels(voted, self.clusterer.predict(feats), n_clusters, len(self.labels))
            label = label.numpy()
            label[label < 0] = 0  # a cluster no sampled pixel chose: never seen, any label
            present_stuff: list[int] = []
        else:
            label = self._label_clusters(cosines)
            present_stuff = sorted(set(voted.tolist()) & set(self.stuff_labels))
        # stuff labels seen by the pixels join as centre-less entries: each becomes (or joins) its stuff instance
        cluster_instance, instance_label = panoptic_instances(np.concatenate([label, present_stuff]).astype(np.int64),
                                                              self.stuff_labels)
        self.cluster_instance = cluster_instance[:n_clusters]
        self._embeddings = embeddings
        self._stuff_instance = {int(lab): i for i, lab in enumerate(instance_label) if int(lab) in self.stuff_labels}
        self._thing_clusters = torch.as_tensor(np.flatnonzero(~np.isin(label, self.stuff_labels)))
        self._radius = self._cluster_radius(feats)
        self.point_instance = self._assign(feats, voted)
        self.seconds = time.perf_counter() - start
        self.instances = self._describe(instance_label, voted)
        return self

    def _label_clusters(self, cosines: torch.Tensor) -> np.ndarray:
        """Semantic fusion: each cluster takes the label with the highest mean standardised cosine over its
        HDBSCAN members (:func:`.classify.cluster_label_scores`), ``cosines [N, L]`` of the sampled pixels."""
        c = self.clusterer
        scores = cluster_label_scores(cosines[c.sample_index_], c.sample_labels_, c.centres_.shape[0])
        return scores.argmax(dim=1).numpy()

    def _cluster_radius(self, feats: torch.Tensor) -> torch.Tensor:
        """Per cluster ``[K]``: the ``radius_percentile`` of its HDBSCAN members' cosine to the centre."""
        c = self.clusterer
        member = torch.nn.functional.normalize(feats[c.sample_index_].float(), dim=-1)
        cos = (member * c.centres_[c.sample_labels_.clamp(min=0)]).sum(dim=-1)
        q = self.settings.radius_percentile / 100.0
        return torch.stack([torch.quantile(cos[c.sample_labels_ == k], q) for k in range(c.centres_.shape[0])])

    def _assign(self, instance_features: torch.Tensor, pixel_label: torch.Tensor) -> torch.Tensor:
        """Instance ``[N]`` of pixels from their instance features ``[N, D]`` and own labels ``[N]`` (fusion
        rule); -1 for a thing pixel when the scene has no thing instance."""
        lut = torch.as_tensor(self.cluster_instance)
        nearest = self.clusterer.predict(instance_features)
        if self.settings.fusion == "instance":
            return lut[nearest]
        out = torch.full_like(nearest, -1)
        for lab, inst in self._stuff_instance.items():
            out[pixel_label == lab] = inst
        thing_pixel = ~torch.as_tensor(np.isin(pixel_label.numpy(), self.stuff_labels))
        if self._thing_clusters.numel():
            if bool(thing_pixel.any()):  # a pixel the semantic head calls a thing: the nearest thing instance
                centres = self.clusterer.centres_[self._thing_clusters]
                near_thing = nearest_centre(instance_features[thing_pixel], centres)
                out[thing_pixel] = lut[self._thing_clusters[near_thing]]
            # a pixel inside a thing cluster's radius belongs to it, whatever its own label says
            unit = torch.nn.functional.normalize(instance_features.float(), dim=-1)
            cos = (unit * self.clusterer.centres_[nearest]).sum(dim=-1)
            inside = torch.as_tensor(np.isin(nearest.numpy(), self._thing_clusters.numpy())) & \
                (cos >= self._radius[nearest])
            out[inside] = lut[nearest[inside]]
        return out

    def _describe(self, instance_label: np.ndarray, point_label: torch.Tensor) -> list[PanopticInstance]:
        out = []
        points = self.sample.points.numpy()
        for i, lab in enumerate(instance_label):
            member = (self.point_instance == i).numpy()
            p = points[member]
            lo, hi = np.percentile(p, BOX_PERCENTILES, axis=0) if len(p) else np.zeros((2, 3))
            agree = float((point_label[torch.as_tensor(member)] == int(lab)).float().mean()) if len(p) else 0.0
            out.append(PanopticInstance(id=i, label=int(lab), name=self.labels[int(lab)],
                                        stuff=int(lab) in self.stuff_labels, n_points=int(member.sum()),
                                        box_min=lo.tolist(), box_max=hi.tolist(),
                                        centre=(p.mean(axis=0) if len(p) else np.zeros(3)).tolist(),
                                        agreement=agree))
        return out

    def _check_fitted(self) -> None:
        if not self.instances:
            raise RuntimeError("fit the panoptic segmentation first")

    @property
    def instance_labels(self) -> np.ndarray:
        """``[I + 1]`` label index of each instance, and -1 last (the label of instance -1: none)."""
        self._check_fitted()
        return np.array([inst.label for inst in self.instances] + [-1], dtype=np.int64)

    def instances_of(self, instance_features: torch.Tensor, semantic_features: torch.Tensor) -> torch.Tensor:
        """Instance id ``[N]`` of rendered pixels: instance features ``[N, D]``, text-head features ``[N, E]``."""
        self._check_fitted()
        return self._assign(instance_features, point_labels(semantic_features, self._embeddings))

    def view(self, frame: Frame) -> tuple[np.ndarray, np.ndarray]:
        """A view's panoptic maps: label index ``[H, W]`` and instance id ``[H, W]``."""
        run = self.engine.run
        out = render_view(run.field, frame, run.config.eval_render, (INSTANCE_HEAD, self.text_head))
        H, W, D = out[INSTANCE_HEAD].shape
        inst = self.instances_of(out[INSTANCE_HEAD].reshape(-1, D), out[self.text_head].reshape(H * W, -1))
        inst = inst.view(H, W).numpy()
        return self.instance_labels[inst], inst

    def to_json(self) -> dict[str, Any]:
        self._check_fitted()
        return {"labels": self.labels, "stuff": [self.labels[i] for i in self.stuff_labels],
                "text_head": self.text_head, "settings": asdict(self.settings),
                "n_clusters": int(self.clusterer.centres_.shape[0]),
                "noise_fraction": self.clusterer.noise_fraction_, "seconds": self.seconds,
                "render_seconds": self.render_seconds,
                "instances": [inst.to_json() for inst in self.instances]}
