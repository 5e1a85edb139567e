"""Training configuration: one dataclass, saved as config.json beside every checkpoint."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from dataclasses import field as dc_field

from ..errors import SemfieldError
from ..field.grid_field import FieldConfig
from ..field.renderer import RenderOptions
from ..scene.bounds import BoundsConfig
from .head_fusion import HeadFusionConfig

# Settings that may change when a run is resumed: how long it runs and where, not what it learns.
RESUMABLE_CHANGES = ("iterations", "max_seconds", "checkpoint_every", "threads", "device", "eval_render")


@dataclass
class TrainConfig:
    """How to train one scene. Defaults are tuned for the ``default`` generated scene on a 2-core CPU.

    ``iterations`` is the schedule (deterministic for a seed); ``max_seconds`` optionally stops earlier.
    ``coarse_to_fine``: (fraction of iterations, voxel size as a multiple of the final one) stages.
    ``occupancy_warmup``: fraction of the schedule before empty space is skipped. The field starts as a
    thin fog (``field.density_init_alpha``) below the skipping threshold (``render.occupied_alpha``): for
    the warm-up every sample is rendered and surfaces grow out of it; afterwards space that never became
    more opaque than the threshold is skipped. A denser start (0.01) leaves a fog that takes the colour of
    what lies behind it and stays (the photometric loss has nothing against fog that matches what it
    hides), and new views see it smeared over other surfaces.
    ``lr_density``: the density grid's Adam rate (the colour grid has ``lr_grid``): a surface's raw density
    climbs ~10 from the thin start, and at 0.1 per step a fog of many faint voxels fits the pixels first.
    ``lr_grid`` (colour grid) and ``lr_mlp`` (colour decoder): at the earlier 0.1 and 2e-3 the colour lagged
    the geometry, and textured surfaces (the table's wood grain) stayed blurred when the schedule ended:
    0.2 and 5e-3 (with first-degree view dependence, ``field.sh_degree = 1``) gave +1.8 dB held-out PSNR on
    the default scene at the same 560 iterations (GPU sweep, 3 seeds; 25.2 -> 27.3 dB in the CPU training
    benchmark), +0.75 dB on quick-suite scene 2 and none on scene 1, whose table is plainer (bench/sweeps,
    BENCHMARKS.md). ``lr_heads`` and
    ``lr_decoders``: the feature heads' grids and decoders, apart from the colour's so that retuning one
    does not move the other.
    """

    seed: int = 0
    iterations: int = 560
    batch_rays: int = 4096
    lr_grid: float = 0.2
    lr_density: float = 0.3
    lr_mlp: float = 5e-3
    lr_heads: float = 0.05
    lr_decoders: float = 2e-3
    lr_final_factor: float = 0.1
    coarse_to_fine: list[tuple[float, float]] = dc_field(default_factory=lambda: [(0.0, 4.0), (0.2, 2.0), (0.45, 1.0)])
    occupancy_every: int = 16
    occupancy_warmup: float = 0.2
    distortion_weight: float = 0.01
    opacity_weight: float = 0.0  # penalise rays reaching the box wall; 0.1 helped tiny, hurt default
    near_weight: float = 0.1  # penalise opacity in front of the training cameras (FreeNeRF occlusion loss)
    near_distance: float = 0.4  # ... closer than this fraction of the median camera-to-focus distance
    # Distillation: teacher name -> spec ({"kind": "dinov2" | "clip" | "siglip" | "label", options...}); each
    # teacher trains the field head of the same name (field.heads, filled from the teacher's width).
    teachers: dict[str, dict] = dc_field(default_factory=dict)
    feature_rays: int = 1024  # rays per iteration that also carry the teachers' features
    # Fraction of those drawn segment-balanced (a segment of a view uniformly, then a pixel in it; segments:
    # the instance masks if there is an instance head, else `feature_clusters` k-means clusters of the
    # teachers' own features), so that small objects are learnt as well as the floor (semfield.train.balanced).
    feature_balance: float = 0.5
    feature_clusters: int = 16
    # Instance field (panoptic): None, or InstanceSettings as a dict ({"masks": {"kind": "simulated"}, ...},
    # see semfield.train.instance); trains the field head "instance" with a contrastive loss on 2D masks.
    instance: dict | None = None
    feature_weight: float = 1.0
    feature_start: float = 0.0  # fraction of the schedule before the heads train (geometry first)
    max_seconds: float | None = None
    checkpoint_every: int = 500
    device: str = "cpu"
    threads: int | None = None
    # The outer and focus boxes: found from the images and cameras by a short coarse pass unless set
    # (semfield.scene.bounds.BoundsConfig; bounds.outer / bounds.focus are user-set boxes).
    bounds: BoundsConfig = dc_field(default_factory=BoundsConfig)
    # After the schedule, every training pixel's teacher features are averaged into the plain feature heads
    # through the field's rendering weights (semfield.train.head_fusion); head_fusion.enabled=false keeps the
    # heads as the gradient steps left them.
    head_fusion: HeadFusionConfig = dc_field(default_factory=HeadFusionConfig)
    field: FieldConfig = dc_field(default_factory=FieldConfig)
    render: RenderOptions = dc_field(default_factory=RenderOptions)
    eval_render: RenderOptions = dc_field(default_factory=lambda: RenderOptions(step_voxels=0.75, max_samples=768))

    def to_dict(self) -> dict:
        """JSON-ready settings (tuples as lists, so a saved config compares equal to a fresh one)."""
        return json.loads(json.dumps(asdict(self)))

    def learning_differences(self, saved: dict) -> list[str]:
        """Settings (top-level names) in which ``saved`` (a to_dict() read back) differs from these, leaving
        out :data:`RESUMABLE_CHANGES`; empty when a run trained with ``saved`` can resume with these."""
        mine = self.to_dict()
        try:  # settings added since the run was saved compare at their defaults
            saved = TrainConfig.from_dict(saved).to_dict()
        except SemfieldError:
            pass
        return sorted(k for k in set(mine) | set(saved)
                      if k not in RESUMABLE_CHANGES and mine.get(k) != saved.get(k))

    def same_learning(self, saved: dict) -> bool:
        """Whether ``saved`` differs only in :data:`RESUMABLE_CHANGES`."""
        return not self.learning_differences(saved)

    @classmethod
    def from_dict(cls, d: dict, source=None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise SemfieldError(f"unknown training settings: {', '.join(sorted(unknown))}", source)
        d = dict(d)
        try:
            if "field" in d:
                d["field"] = FieldConfig.from_dict(d["field"])
            if "bounds" in d:
                d["bounds"] = BoundsConfig(**d["bounds"])
            if "head_fusion" in d:
                d["head_fusion"] = HeadFusionConfig(**d["head_fusion"])
            for key in ("render", "eval_render"):
                if key in d:
                    r = dict(d[key])
                    r["heads"] = tuple(r.get("heads", ()))
                    d[key] = RenderOptions(**r)
            if "coarse_to_fine" in d:
                d["coarse_to_fine"] = [tuple(x) for x in d["coarse_to_fine"]]
            return cls(**d)
        except (TypeError, ValueError) as exc:
            raise SemfieldError(f"bad training settings ({exc})", source) from None
