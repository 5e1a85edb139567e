"""Bake a trained run for fast queries: a surface point cloud with per-point features, and per-view depth.

Queries ask "where is X": the answer lives on surfaces. So once per run the training views are rendered
(at a pixel stride) to their expected depth, the surface points are back-projected, thinned on a voxel grid
and given colour and every head's features by a direct grid lookup (no volume rendering per query).
A view's relevancy heatmap then needs only that view's depth (rendered once, kept in the bake folder) and one
feature lookup per pixel.

Layout (``RUN/bake/``, safetensors + JSON, written atomically)::

    bake.json                  {"iteration", "stride", "voxel", "depth", "step_voxels", "max_samples",
                                "n_points", "seconds", "heads"}
    cloud.safetensors          points [N, 3], rgb [N, 3], feat.<head> [N, D] (float16)
    views/<view>.safetensors   distance [H, W] (along the ray), acc [H, W]

A bake made from another checkpoint iteration is rebuilt.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write, atomic_write_json
from ..errors import SemfieldError
from ..field.grid_field import GridField
from ..field.renderer import RenderOptions, render_image
from ..jsonfile import read_json
from ..render.rays import image_rays
from ..scene.types import Frame

BAKE_DIR = "bake"
DEPTH_RULE = "median-boundary"  # how surface points were placed; a bake made otherwise is rebuilt
MIN_ACC = 0.5  # without a boundary background, a pixel whose opacity is below this saw no surface


@dataclass
class SurfaceCloud:
    """Surface points of a run: ``points [N, 3]``, ``rgb [N, 3]`` in [0, 1], ``features[head] [N, D]``."""

    points: torch.Tensor
    rgb: torch.Tensor
    features: dict[str, torch.Tensor]


def surface_points(fld: GridField, frame: Frame, opts: RenderOptions, stride: int = 1):
    """Back-projected surface of one view: ``(points [M, 3], rgb [M, 3])`` for pixels that hit a surface
    (at the median depth, see :func:`semfield.render.composite.median_depth`).

    ``stride`` renders every ``stride``-th pixel on each axis (a smaller camera of the same view).
    """
    intr = frame.intrinsics.scaled(1.0 / stride) if stride > 1 else frame.intrinsics
    c2w = torch.as_tensor(frame.c2w, dtype=torch.float32, device=fld.device_)
    out = render_image(fld, c2w, intr, opts)
    origins, dirs, zpt = image_rays(c2w, intr)
    distance = out["median_depth"].reshape(-1) / zpt
    keep = _hits(out["acc"], opts).reshape(-1)
    points = origins[keep] + dirs[keep] * distance[keep, None]
    return points, out["rgb"].reshape(-1, 3)[keep]


def _hits(acc: torch.Tensor, opts: RenderOptions) -> torch.Tensor:
    """Pixels that see a surface: with a ``"boundary"`` background the outer box is one (the room's walls
    of a closed capture), so every pixel does; otherwise those with opacity above :data:`MIN_ACC`."""
    if opts.background == "boundary":
        return torch.ones_like(acc, dtype=torch.bool)
    return acc > MIN_ACC


def voxel_thin(points: torch.Tensor, voxel: float) -> torch.Tensor:
    """Indices ``[K]`` keeping one point (the first) per occupied cell of a ``voxel``-sized grid."""
    if points.shape[0] == 0:
        return torch.zeros(0, dtype=torch.int64, device=points.device)
    cells = torch.floor((points - points.min(dim=0).values) / voxel).long()
    dims = cells.max(dim=0).values + 1
    key = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    _, inverse = torch.unique(key, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), points.shape[0], dtype=torch.int64, device=points.device)
    first.scatter_reduce_(0, inverse, torch.arange(points.shape[0], device=points.device), reduce="amin")
    return first.sort().values


@torch.no_grad()
def head_features(fld: GridField, name: str, points: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Head ``name``'s features ``[N, D]`` at ``points [N, 3]`` (direct lookup, chunked)."""
    if points.shape[0] == 0:
        return torch.zeros(0, fld.config.heads[name].dim)
    return torch.cat([fld.feature(name, p) for p in points.split(chunk)])


def _view_file(bake_dir: Path, frame: Frame) -> Path:
    digest = hashlib.sha1(frame.name.encode()).hexdigest()[:10]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(frame.name).stem)[:40]
    return bake_dir / "views" / f"{stem}-{digest}.safetensors"


class Bake:
    """The baked surface cloud and view depths of a run (built on first use, then read from disk).

    Args:
        run_dir: the run folder; field: its trained field; iteration: the checkpoint iteration.
        opts: render options for the depth renders; stride: pixel stride of the cloud's renders;
        voxel: the cloud's thinning cell (default: twice the field's final voxel).
    """

    def __init__(self, run_dir: str | Path, fld: GridField, iteration: int, opts: RenderOptions,
                 stride: int = 4, voxel: float | None = None):
        self.dir = Path(run_dir) / BAKE_DIR
        self.field, self.iteration, self.opts, self.stride = fld, int(iteration), opts, int(stride)
        self.voxel = float(voxel or 2.0 * fld.final_voxel)
        self._cloud: SurfaceCloud | None = None
        self._views: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # view name -> (points, hits), read once
        self.seconds = 0.0

    def _meta_ok(self) -> bool:
        meta_path = self.dir / "bake.json"
        if not meta_path.exists() or not (self.dir / "cloud.safetensors").exists():
            return False
        meta = read_json(meta_path, "bake metadata")
        expected = {"iteration": self.iteration, "depth": DEPTH_RULE, "stride": self.stride,
                    "heads": sorted(self.field.config.heads), "step_voxels": self.opts.step_voxels,
                    "max_samples": self.opts.max_samples}
        return isinstance(meta, dict) and all(meta.get(k) == v for k, v in expected.items())

    def cloud(self, frames: list[Frame], progress: bool = False) -> SurfaceCloud:
        """The surface cloud from ``frames`` (the training views), baked on first call."""
        if self._cloud is not None:
            return self._cloud
        if self._meta_ok():
            try:
                t = load_file(str(self.dir / "cloud.safetensors"))
                feats = {k[len("feat."):]: v.float() for k, v in t.items() if k.startswith("feat.")}
                self._cloud = SurfaceCloud(t["points"], t["rgb"], feats)
                return self._cloud
            except (SafetensorError, OSError, KeyError):
                pass  # unreadable: bake again
        self._cloud = self._bake_cloud(frames, progress)
        return self._cloud

    def _bake_cloud(self, frames: list[Frame], progress: bool) -> SurfaceCloud:
        from tqdm.auto import tqdm

        if not frames:
            raise SemfieldError("no views to bake a surface cloud from", self.dir.parent)
        start = time.perf_counter()
        pts, cols = [], []
        for f in tqdm(frames, desc="bake surface", unit="view", disable=not progress):
            p, c = surface_points(self.field, f, self.opts, self.stride)
            pts.append(p)
            cols.append(c)
        points, rgb = torch.cat(pts), torch.cat(cols)
        keep = voxel_thin(points, self.voxel)
        points, rgb = points[keep].contiguous(), rgb[keep].contiguous()
        feats = {name: head_features(self.field, name, points) for name in self.field.config.heads}
        self.seconds = time.perf_counter() - start
        tensors = {"points": points.cpu(), "rgb": rgb.cpu()}
        tensors.update({f"feat.{k}": v.to(torch.float16).cpu() for k, v in feats.items()})
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.dir / "cloud.safetensors", lambda tmp: save_file(tensors, str(tmp)))
        atomic_write_json(self.dir / "bake.json", {
            "iteration": self.iteration, "stride": self.stride, "voxel": self.voxel, "depth": DEPTH_RULE,
            "step_voxels": self.opts.step_voxels, "max_samples": self.opts.max_samples,
            "n_points": int(points.shape[0]), "seconds": self.seconds, "heads": sorted(self.field.config.heads)})
        # fp16 round trip, so a fresh bake answers exactly as a reloaded one
        return SurfaceCloud(points, rgb, {k: v.to(torch.float16).float() for k, v in feats.items()})

    @torch.no_grad()
    def view_surface(self, frame: Frame, persist: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel surface points ``[H, W, 3]`` and a hit mask ``[H, W]`` of one view (depth rendered once and
        kept on disk unless ``persist`` is False, e.g. for a pose that is not one of the scene's views; then in
        memory for the engine's lifetime)."""
        if frame.name in self._views:
            return self._views[frame.name]
        path = _view_file(self.dir, frame)
        c2w = torch.as_tensor(frame.c2w, dtype=torch.float32, device=self.field.device_)
        t = None
        if persist and path.exists() and self._meta_ok():
            try:
                t = load_file(str(path))
            except (SafetensorError, OSError):
                t = None
        if t is None:
            out = render_image(self.field, c2w, frame.intrinsics, self.opts, colour=False)
            _, _, zpt = image_rays(c2w, frame.intrinsics)
            H, W = frame.intrinsics.height, frame.intrinsics.width
            t = {"distance": (out["median_depth"].reshape(-1) / zpt).view(H, W).cpu(), "acc": out["acc"].cpu()}
            if persist and self._meta_ok():  # views are kept only beside a current cloud
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda tmp: save_file(t, str(tmp)))
        origins, dirs, _ = image_rays(c2w, frame.intrinsics)
        H, W = t["distance"].shape
        points = (origins + dirs * t["distance"].reshape(-1, 1).to(dirs)).view(H, W, 3)
        self._views[frame.name] = (points, _hits(t["acc"], self.opts))
        return self._views[frame.name]
