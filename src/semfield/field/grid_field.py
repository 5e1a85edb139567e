"""GridField: density, view-dependent colour and named feature heads on warped dense grids.

Geometry lives in a density grid, appearance in a low-width colour feature grid decoded by a tiny MLP
(direct diffuse colour plus a view-dependent residual), and every feature head (a teacher's features of
any width) in a grid of its own, optionally a low-width latent decoded by a linear layer. All grids share
one warp (fine in the focus box, coarse out to the room), heads at a coarser voxel size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .encoding import sh_basis
from .sparse_grid import SparseGrid
from .warp import AxisWarp, make_axis, trilinear_corners, vertex_to_world


@dataclass
class HeadConfig:
    """A feature head. ``dim``: output width; ``latent``: grid channels (0 = store ``dim`` directly);
    ``voxel_factor``: head voxel size relative to the density grid's; ``loss``: "cosine_mse", "cosine" or "l1"
    (see :func:`semfield.train.features.feature_loss`); ``centre``: learn features minus the teacher's mean
    feature (added back on decoding), for teachers whose features share a large common component (DINOv2);
    ``unit``: every sample's value is a direction (normalised before compositing), so a rendered feature is
    the opacity-weighted blend of the directions along the ray and no surface outweighs another by the
    length of its vector (the instance head: a contrastive loss on rendered features leaves lengths free,
    and objects grew vectors twice the table's, so a ray grazing an object took the object's direction).
    ``sh_degree``: view dependence. Each vertex stores ``(sh_degree + 1)²`` latents ``z_0, z_1, ...``, and
    a ray with direction ``d`` sees ``z_0 + Σ_{k≥1} Y_k(d) z_k`` (real spherical harmonics without the
    constant one), so ``z_0`` is the feature averaged over all directions: what a point lookup returns
    (3D queries, the surface cloud, PLY export). A ViT sees a point differently from different sides, and
    its features of nearby views agree more than those of distant views (DINOv2 on the default scene:
    0.848 cosine for the plain mean of the views that see a point, 0.894 for a mean weighted towards
    views from a similar direction; bench/teacher_consistency.py). ``lr_factor``: the head's grid and decoder
    learn at this multiple of the training's ``lr_heads`` and ``lr_decoders``. ``shared_moments``: the grid's
    Adam keeps one second moment per latent (the ``width`` channels of each direction share it) instead of
    one per channel (:class:`~.sparse_grid.SparseGrid` ``moment_block``): a faster step, less state.
    ``roulette``: training renders thin this head's low-weight samples by Russian roulette
    (:class:`~.renderer.RenderOptions` ``head_roulette``): unbiased per ray, fewer lookups and updates."""

    dim: int
    latent: int = 0
    voxel_factor: float = 2.0
    loss: str = "cosine_mse"
    centre: bool = True  # learn the teacher's features minus their mean (set by the trainer), add it back
    unit: bool = False  # each sample's grid value is normalised to unit length before compositing
    sh_degree: int = 0  # 0: the same feature from every direction; 1-3: view-dependent (see above)
    lr_factor: float = 1.0
    shared_moments: bool = False
    roulette: bool = False

    def __post_init__(self):
        if not 0 <= self.sh_degree <= 3:
            raise ValueError(f"a head's sh_degree must be 0 to 3 (got {self.sh_degree})")
        if self.unit and self.sh_degree:
            raise ValueError("a unit head (each sample a direction) cannot also be view-dependent")

    @property
    def width(self) -> int:
        """Channels of the latent a ray decodes (``latent``, or ``dim`` without one)."""
        return self.latent or self.dim

    @property
    def directions(self) -> int:
        """Latents per vertex: ``(sh_degree + 1)²``."""
        return (self.sh_degree + 1) ** 2


@dataclass
class FieldConfig:
    """Field architecture. Voxel size: ``focus_voxel`` metres if given, else ``voxel_per_pixel`` times the
    training cameras' pixel footprint at the focus box (what the images can resolve), but never so small
    that the focus box holds more than ``focus_vertices``; outer cells ``outer_factor`` times larger."""

    focus_voxel: float | None = None
    voxel_per_pixel: float = 1.25
    focus_vertices: int = 6_000_000
    outer_factor: float = 4.0
    color_channels: int = 12
    color_hidden: int = 32
    sh_degree: int = 1
    density_init_alpha: float = 0.001
    heads: dict[str, HeadConfig] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FieldConfig:
        d = dict(d)
        d["heads"] = {k: HeadConfig(**v) for k, v in d.get("heads", {}).items()}
        return cls(**d)


def final_voxel_size(config: FieldConfig, focus_aabb, pixel_footprint: float | None = None) -> float:
    """Final density voxel size (metres): ``config.focus_voxel`` if set, else ``voxel_per_pixel`` times the
    pixel footprint, but never so small that the focus box holds more than ``focus_vertices``."""
    if config.focus_voxel:
        return float(config.focus_voxel)
    focus_aabb = np.asarray(focus_aabb, dtype=np.float64)
    budget = (float(np.prod(focus_aabb[1] - focus_aabb[0])) / config.focus_vertices) ** (1.0 / 3.0)
    if pixel_footprint:
        return max(budget, pixel_footprint * config.voxel_per_pixel)
    return budget


def make_axes(outer: np.ndarray, focus: np.ndarray, voxel: float, outer_factor: float):
    return tuple(make_axis((outer[0, d], outer[1, d]), (focus[0, d], focus[1, d]), voxel, outer_factor)
                 for d in range(3))


def _grid_shape(axes) -> tuple[int, int, int]:
    return tuple(a.vertices for a in axes)


class GridField(nn.Module):
    """Density, colour and feature heads over an outer box with a finer focus box.

    Args:
        config: architecture.
        outer_aabb: ``[2, 3]`` everything the cameras see (the room).
        focus_aabb: ``[2, 3]`` where most pixels look (the table); gets the finest voxels.
        voxel: current density voxel size (progressive training starts coarser); default: the final one.
        pixel_footprint: size of one training pixel at the focus box (metres), for ``voxel_per_pixel``.
        final_voxel: the final voxel size, when known (reloading a run); otherwise from the config.
    """

    def __init__(self, config: FieldConfig, outer_aabb, focus_aabb, voxel: float | None = None,
                 device: str | torch.device = "cpu", pixel_footprint: float | None = None,
                 final_voxel: float | None = None):
        super().__init__()
        self.config = config
        self.outer_aabb = np.asarray(outer_aabb, dtype=np.float64)
        self.focus_aabb = np.asarray(focus_aabb, dtype=np.float64)
        self.device_ = torch.device(device)
        self.final_voxel = (float(final_voxel) if final_voxel else
                            final_voxel_size(config, self.focus_aabb, pixel_footprint))
        self.voxel = float(voxel or self.final_voxel)
        self.axes = make_axes(self.outer_aabb, self.focus_aabb, self.voxel, config.outer_factor)
        n = math.prod(_grid_shape(self.axes))
        shift = math.log(math.expm1(-math.log(1.0 - config.density_init_alpha)))
        self.density_shift = shift
        self.density = SparseGrid(torch.zeros(n, 1, device=self.device_), lr=0.1)
        self.color = SparseGrid(torch.zeros(n, config.color_channels, device=self.device_), lr=0.1)
        sh_dim = (config.sh_degree + 1) ** 2
        self.color_mlp = nn.Sequential(nn.Linear(config.color_channels + sh_dim, config.color_hidden), nn.ReLU(),
                                       nn.Linear(config.color_hidden, 3))
        nn.init.zeros_(self.color_mlp[2].weight)
        nn.init.zeros_(self.color_mlp[2].bias)
        self.head_axes: dict[str, tuple[AxisWarp, AxisWarp, AxisWarp]] = {}
        self.heads: dict[str, SparseGrid] = {}
        self.head_decoders = nn.ModuleDict()
        for name, head in config.heads.items():
            axes = make_axes(self.outer_aabb, self.focus_aabb, self.final_voxel * head.voxel_factor,
                             config.outer_factor)
            self.head_axes[name] = axes
            self.heads[name] = SparseGrid(
                torch.zeros(math.prod(_grid_shape(axes)), head.width * head.directions, device=self.device_), lr=0.05,
                moment_block=head.width if head.shared_moments else 1)
            if head.latent:
                self.head_decoders[name] = nn.Linear(head.latent, head.dim)
            if not name.isidentifier():
                raise ValueError(f"head name {name!r} must be an identifier (letters, digits, _)")
            # The teacher's mean feature: the head learns the centred feature, and decoding adds the mean
            # back (most of a DINOv2 feature is a component every patch shares; a cosine loss on raw
            # features would learn little else).
            self.register_buffer(f"head_mean__{name}", torch.zeros(head.dim))
        self.to(self.device_)
        # Until the trainer says the density means something, nothing is pruned as empty space.
        self.occupancy_ready = False
        self.refresh_occupancy()

    # ----- layout -------------------------------------------------------------------------------------
    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return _grid_shape(self.axes)

    def sparse_grids(self) -> dict[str, SparseGrid]:
        grids = {"density": self.density, "color": self.color}
        grids.update({f"head.{k}": v for k, v in self.heads.items()})
        return grids

    def vertex_positions(self, axes) -> torch.Tensor:
        """World positions of all vertices of a grid with ``axes``: ``[V, 3]`` (x-major order)."""
        coords = [vertex_to_world(torch.arange(a.vertices, device=self.device_, dtype=torch.float32), a)
                  for a in axes]
        gx, gy, gz = torch.meshgrid(*coords, indexing="ij")
        return torch.stack([gx.reshape(-1), gy.reshape(-1), gz.reshape(-1)], dim=-1)

    @torch.no_grad()
    def resample(self, voxel: float) -> None:
        """Change the density/colour voxel size, trilinearly resampling the values (Adam state restarts)."""
        new_axes = make_axes(self.outer_aabb, self.focus_aabb, voxel, self.config.outer_factor)
        pts = self.vertex_positions(new_axes)
        new_d, new_c, visited = [], [], []
        old_visited = self.density.visited.to(torch.float32)[:, None]
        for chunk in pts.split(1 << 20):
            idx, w, _ = trilinear_corners(chunk, self.axes)
            new_d.append(self.density.lookup_nograd(idx, w))
            new_c.append(self.color.lookup_nograd(idx, w))
            visited.append(F.embedding_bag(idx, old_visited, per_sample_weights=w, mode="sum")[:, 0] > 0)
        self.axes, self.voxel = new_axes, float(voxel)
        self.density = SparseGrid(torch.cat(new_d), lr=self.density.lr)
        self.density.visited = torch.cat(visited)
        self.color = SparseGrid(torch.cat(new_c), lr=self.color.lr)
        self.refresh_occupancy()

    @torch.no_grad()
    def empty_unvisited(self) -> int:
        """Make every density vertex that no training sample ever reached empty; returns how many.

        The initial density is a thin fog so that geometry can be carved from it; where no training ray
        passed, the data says nothing and the fog would remain, in front of any new camera placed there.
        """
        unvisited = ~self.density.visited
        self.density.values[unvisited] = self.raw_for_sigma(1e-6)
        self.refresh_occupancy()
        return int(unvisited.sum())

    # ----- occupancy used for sampling --------------------------------------------------------------
    POOL = 2

    @torch.no_grad()
    def refresh_occupancy(self) -> None:
        """Max-pool the density grid by ``POOL`` per axis: a conservative coarse density for sampling."""
        nx, ny, nz = self.grid_shape
        raw = self.density.values.view(1, 1, nx, ny, nz)
        self.pooled = F.max_pool3d(raw, kernel_size=self.POOL, stride=self.POOL, ceil_mode=True)[0, 0]

    def pooled_raw(self, points: torch.Tensor) -> torch.Tensor:
        """Max-pooled raw density at ``points [P, 3]`` (points outside the box clamp to the border): ``[P]``."""
        from .warp import world_to_vertex

        nx, ny, nz = self.pooled.shape
        flat = None
        for d, n in enumerate((nx, ny, nz)):
            u = world_to_vertex(points[:, d], self.axes[d]).div_(self.POOL).floor_().clamp_(0, n - 1).long()
            flat = u if flat is None else flat * n + u
        return self.pooled.reshape(-1)[flat]

    def raw_for_sigma(self, sigma: float) -> float:
        """The raw grid value whose density is ``sigma`` (inverse of :meth:`activate_density`)."""
        x = sigma * self.final_voxel
        return (math.log(math.expm1(x)) if x < 20 else x) - self.density_shift

    # ----- queries ------------------------------------------------------------------------------------
    def activate_density(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw grid value → density per metre (softplus with a shift, scaled by the finest voxel)."""
        return F.softplus(raw + self.density_shift) / self.final_voxel

    def corners(self, points: torch.Tensor):
        """Trilinear corners of ``points [P, 3]`` in the density/colour grid (see trilinear_corners)."""
        return trilinear_corners(points, self.axes)

    def sigma(self, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Density per metre ``[P]`` at points given by their corners."""
        return self.activate_density(self.density.lookup(idx, w).squeeze(-1))

    def rgb(self, idx: torch.Tensor, w: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """Colour ``[P, 3]`` in [0, 1] seen along unit ``dirs [P, 3]``."""
        feat = self.color.lookup(idx, w)
        enc = sh_basis(dirs, self.config.sh_degree)
        return torch.sigmoid(feat[:, :3] + self.color_mlp(torch.cat([feat, enc], dim=-1)))

    def head_values(self, name: str, points: torch.Tensor) -> torch.Tensor:
        """Head ``name``'s grid values ``[P, width * directions]`` at ``points [P, 3]``: all the point's
        latents, before :meth:`view_latent` picks a direction. A point outside the outer box reads the box's
        nearest boundary point: the wall on which rendering draws whatever lies beyond the box (a
        ``"boundary"`` background), where the grid's own lookup would give every such point the same constant
        (zero latents, i.e. the decoder's bias)."""
        lo, hi = self.outer_bounds(points)
        idx, w, _ = trilinear_corners(torch.maximum(torch.minimum(points, hi), lo), self.head_axes[name])
        values = self.heads[name].lookup(idx, w)
        return F.normalize(values, dim=-1, eps=1e-8) if self.config.heads[name].unit else values

    def outer_bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The outer box's corners ``([3], [3])`` as tensors of ``like``'s dtype and device."""
        box = torch.as_tensor(self.outer_aabb, dtype=like.dtype, device=like.device)
        return box[0], box[1]

    def composite_head_values(self, name: str, points: torch.Tensor, weights: torch.Tensor, ray: torch.Tensor,
                              n_rays: int) -> torch.Tensor:
        """``Σ_i weights_i · head_values(points_i)`` over each ray's samples: ``points [P, 3]`` and
        ``weights [P]`` of samples ordered by ``ray [P]`` (non-decreasing, in ``[0, n_rays)``) →
        ``[n_rays, width * directions]``. Plain heads composite inside the grid's gather, without the
        per-sample values in between (14 % less head time per step with the default label and DINOv2 heads);
        unit heads normalise each sample first."""
        if self.config.heads[name].unit:
            values = self.head_values(name, points)
            return torch.zeros(n_rays, values.shape[1], device=values.device, dtype=values.dtype).index_add(
                0, ray, values * weights[:, None])
        idx, w, _ = trilinear_corners(points, self.head_axes[name])
        return self.heads[name].lookup(idx, w * weights[:, None], bags=(ray, n_rays))

    def view_latent(self, name: str, values: torch.Tensor, dirs: torch.Tensor | None = None) -> torch.Tensor:
        """The latent ``[P, width]`` seen along unit ``dirs [P, 3]``, from values ``[P, width * directions]``
        (a point's, or composited along a ray: the mix is linear): ``z_0 + Σ_{k≥1} Y_k(d) z_k``. Without
        ``dirs``, the direction-averaged ``z_0``. A head without view dependence returns ``values``."""
        head = self.config.heads[name]
        if head.sh_degree == 0:
            return values
        per_direction = values.view(values.shape[0], head.directions, head.width)
        if dirs is None:
            return per_direction[:, 0]
        basis = sh_basis(dirs, head.sh_degree)[:, 1:]  # [P, directions - 1], the constant left out
        return per_direction[:, 0] + torch.einsum("pk,pkc->pc", basis, per_direction[:, 1:])

    def head_latent(self, name: str, points: torch.Tensor, dirs: torch.Tensor | None = None) -> torch.Tensor:
        """Head ``name``'s latent ``[P, width]`` at ``points [P, 3]`` (before the decoder), seen along
        ``dirs [P, 3]`` or, without them, averaged over directions (see :meth:`view_latent`)."""
        return self.view_latent(name, self.head_values(name, points), dirs)

    def head_mean(self, name: str) -> torch.Tensor:
        """The teacher's mean feature ``[dim]`` that decoding adds to head ``name``'s centred output."""
        return getattr(self, f"head_mean__{name}")

    @torch.no_grad()
    def set_head_mean(self, name: str, mean: torch.Tensor) -> None:
        self.head_mean(name).copy_(mean.to(self.head_mean(name)))

    def decode_head(self, name: str, latent: torch.Tensor, acc: torch.Tensor | None = None,
                    centred: bool = False) -> torch.Tensor:
        """Decode latents ``[P, latent]`` to features ``[P, dim]`` (plus the teacher's mean unless ``centred``).
        For latents composited along rays pass the rays' opacity ``acc [P]``: constant terms (the decoder's
        bias, the mean) are weighted by it as every sample's would be."""
        if name in self.head_decoders:
            dec = self.head_decoders[name]
            out, const = F.linear(latent, dec.weight), dec.bias
        else:
            out, const = latent, torch.zeros_like(self.head_mean(name))
        if not centred:
            const = const + self.head_mean(name)
        return out + (const if acc is None else acc[:, None] * const)

    def feature(self, name: str, points: torch.Tensor, dirs: torch.Tensor | None = None) -> torch.Tensor:
        """Head ``name``'s features ``[P, dim]`` at ``points [P, 3]``, seen along ``dirs [P, 3]`` or averaged
        over directions (see :meth:`view_latent`)."""
        return self.decode_head(name, self.head_latent(name, points, dirs))

    # ----- persistence --------------------------------------------------------------------------------
    def state_tensors(self, moments: bool = True) -> dict[str, torch.Tensor]:
        """Grids (with their Adam moments unless ``moments`` is False) and module tensors."""
        out: dict[str, torch.Tensor] = {}
        for name, grid in self.sparse_grids().items():
            out.update(grid.state_tensors(f"grid.{name}", moments))
        for k, v in self.state_dict().items():
            out[f"module.{k}"] = v
        return out

    def layout(self) -> dict:
        return {"outer_aabb": self.outer_aabb.tolist(), "focus_aabb": self.focus_aabb.tolist(),
                "voxel": self.voxel, "final_voxel": self.final_voxel, "occupancy_ready": self.occupancy_ready,
                "config": self.config.to_dict()}

    @classmethod
    def from_state(cls, layout: dict, tensors: dict[str, torch.Tensor], device="cpu") -> GridField:
        config = FieldConfig.from_dict(layout["config"])
        fld = cls(config, layout["outer_aabb"], layout["focus_aabb"], voxel=layout["voxel"], device=device,
                  final_voxel=layout.get("final_voxel"))
        for name, grid in fld.sparse_grids().items():
            grid.load_state_tensors(tensors, f"grid.{name}")
        modules = {k[len("module."):]: v for k, v in tensors.items() if k.startswith("module.")}
        for name in config.heads:  # runs saved before heads were centred: a zero mean is what they learned
            modules.setdefault(f"head_mean__{name}", torch.zeros(config.heads[name].dim))
        fld.load_state_dict(modules)
        fld.occupancy_ready = bool(layout.get("occupancy_ready", True))
        fld.refresh_occupancy()
        return fld
