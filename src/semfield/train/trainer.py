"""The training loop: batches of rays, photometric loss, lazy-Adam grid steps, coarse-to-fine, resume."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_write_json
from ..errors import SemfieldError
from ..field.grid_field import GridField, final_voxel_size
from ..field.renderer import render_rays
from ..machine import peak_rss_mb
from ..render.composite import distortion_loss, near_opacity
from ..scene.bounds import pixel_footprint
from ..scene.types import Scene
from .balanced import BalancedRays, teacher_segments
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import RayBank
from .features import FeatureTargets, feature_loss
from .head_fusion import fuse_heads
from .instance import INSTANCE_HEAD, InstanceMasks, InstanceSettings, init_instance_head

BOUNDS_FILE = "bounds.json"  # how a run found its boxes (see .bounds_pass)
ROULETTE_SEED_OFFSET = 7919  # the roulette's stream is seeded with the training seed plus this


def voxel_factor_at(config: TrainConfig, iteration: int) -> float:
    """Voxel size multiple of the coarse-to-fine stage that ``iteration`` falls in."""
    factor = config.coarse_to_fine[0][1] if config.coarse_to_fine else 1.0
    for frac, f in config.coarse_to_fine:
        if iteration >= int(frac * config.iterations):
            factor = f
    return factor


def lr_factor_at(config: TrainConfig, iteration: int) -> float:
    """Exponential decay from 1 to ``lr_final_factor`` over the schedule."""
    return config.lr_final_factor ** (iteration / max(1, config.iterations))


class Trainer:
    """Trains a GridField on a scene's training split into ``run_dir`` (resuming if it holds a checkpoint).

    Args:
        scene: the scene (images are read when training starts).
        run_dir: output folder: config.json, checkpoint.*, metrics.json, bounds.json, pictures (None: a
            trainer that is only stepped, never saved, such as the bounds pass).
        config: settings; on resume the saved config must match.
        bounds: ``(outer, focus)`` boxes ``[2, 3]`` to use; by default a fresh run finds them
            (:func:`~.bounds_pass.training_bounds`) and a resumed one reads them from its checkpoint.
    """

    def __init__(self, scene: Scene, run_dir: str | Path | None, config: TrainConfig,
                 feature_targets: dict[str, FeatureTargets] | None = None,
                 instance_segments: list[np.ndarray] | None = None,
                 bounds: tuple[np.ndarray, np.ndarray] | None = None):
        self.scene, self.config = scene, config
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.feature_targets = feature_targets or {}
        # Instance masks of the training views (see .instance), when config.instance asks for the head.
        self.instance_settings = InstanceSettings.from_dict(config.instance) if config.instance is not None else None
        if self.instance_settings is not None and instance_segments is None:
            raise SemfieldError("the config asks for an instance head but no instance masks were given")
        self.instance_segments = instance_segments
        self.instance_masks: InstanceMasks | None = None
        self.balanced: BalancedRays | None = None  # segment-balanced feature rays (without an instance head)
        self.last_instance_loss: float | None = None
        missing = sorted(set(config.field.heads) - set(self.feature_targets)
                         - ({INSTANCE_HEAD} if self.instance_settings is not None else set()))
        if missing:
            raise SemfieldError(f"no teacher features for the field head(s) {', '.join(missing)}")
        if not 0.0 <= config.feature_balance <= 1.0 or config.feature_clusters < 2:
            raise SemfieldError(f"feature_balance must lie in [0, 1] and feature_clusters be >= 2 (got "
                                f"{config.feature_balance}, {config.feature_clusters})")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise SemfieldError("device 'cuda' asked for but no CUDA GPU is available")
        self.iteration = 0
        self.train_seconds = 0.0
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        # The heads' Russian roulette draws from its own stream: with it on or off, the same rays are drawn
        # and the geometry trains the same, so an A/B of the roulette compares heads on the same geometry.
        self.roulette_generator = torch.Generator(device=self.device).manual_seed(config.seed + ROULETTE_SEED_OFFSET)
        torch.manual_seed(config.seed)
        self.field: GridField | None = None
        self.bounds = bounds
        self.bounds_report: dict | None = None  # how a fresh run found its boxes (written as bounds.json)
        self.near_distance = 0.0  # set from the field's focus box when it is built or loaded
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_samples: dict[str, int] = {}  # sample counts of the last step's render (diagnostics)
        self.last_feature_loss: dict[str, float] = {}  # per head, last step
        self.heads_fused_at: int | None = None  # the iteration whose heads were fused (see fuse_heads)

    # ----- setup / resume ----------------------------------------------------------------------------
    def build(self, bank: RayBank | None = None, progress: bool = False) -> None:
        """A new field in the given boxes, or in those :func:`~.bounds_pass.training_bounds` finds from
        ``bank`` (the training rays)."""
        cfg = self.config
        if self.bounds is None:
            from .bounds_pass import training_bounds

            outer, focus, self.bounds_report = training_bounds(self.scene, cfg, bank, progress=progress)
            self.bounds = (outer, focus)
            self.train_seconds += self.bounds_report.get("pass_seconds", 0.0)  # the pass is part of training
        outer, focus = self.bounds
        final = final_voxel_size(cfg.field, focus, pixel_footprint(self.scene, focus))
        fld = GridField(cfg.field, outer, focus, voxel=final * voxel_factor_at(cfg, 0),
                        device=self.device, final_voxel=final)
        self.field = fld
        self._set_near_distance()
        for name, targets in self.feature_targets.items():
            if cfg.field.heads[name].centre:
                fld.set_head_mean(name, targets.mean)
        if self.instance_settings is not None:
            init_instance_head(fld.heads[INSTANCE_HEAD].values, cfg.seed)
        self.optimizer = self._make_optimizer(fld)
        self._set_lrs(0)

    def _make_optimizer(self, fld: GridField) -> torch.optim.Optimizer:
        """Adam over the field's modules: the colour decoder, then each head's decoder in a group of its own
        (rates set by :meth:`_set_lrs`). The grids step themselves (SparseGrid)."""
        groups = [{"params": list(fld.color_mlp.parameters()), "lr": self.config.lr_mlp}]
        groups += [{"params": list(decoder.parameters()), "lr": self.config.lr_decoders, "head": name}
                   for name, decoder in fld.head_decoders.items()]
        return torch.optim.Adam(groups, eps=1e-15)

    def _set_lrs(self, iteration: int) -> None:
        """Every rate at ``iteration``: the schedule's factor times ``lr_density``, ``lr_grid`` (colour),
        ``lr_mlp``, and for each head ``lr_heads`` (grid) and ``lr_decoders`` times the head's ``lr_factor``."""
        cfg, heads = self.config, self.field.config.heads
        f = lr_factor_at(cfg, iteration)
        for name, grid in self.field.sparse_grids().items():
            if name.startswith("head."):
                base = cfg.lr_heads * heads[name[len("head."):]].lr_factor
            else:
                base = cfg.lr_density if name == "density" else cfg.lr_grid
            grid.lr = base * f
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                head = group.get("head")
                group["lr"] = f * (cfg.lr_mlp if head is None else cfg.lr_decoders * heads[head].lr_factor)

    def _set_near_distance(self) -> None:
        """``config.near_distance`` times the median distance of the training cameras to the focus centre."""
        lo, hi = self.field.focus_aabb
        centre = (lo + hi) / 2.0
        cams = [f.c2w[:3, 3] for f in self.scene.split("train")] or [centre]
        self.near_distance = self.config.near_distance * float(np.median(np.linalg.norm(np.stack(cams) - centre,
                                                                                        axis=1)))

    def resume_or_start(self, bank: RayBank | None = None, progress: bool = False) -> bool:
        """Load the run folder's checkpoint if there is one; returns True when resuming. A fresh run builds
        its field (finding its boxes from ``bank`` unless they were given)."""
        config_path = self.run_dir / "config.json"
        if (self.run_dir / "checkpoint.json").exists():
            tensors, state = load_checkpoint(self.run_dir)
            saved = json.loads(config_path.read_text(encoding="utf-8")) if config_path.exists() else {}
            differ = self.config.learning_differences(saved.get("train", {}))
            if differ:
                raise SemfieldError(f"run folder holds a run with different settings ({', '.join(differ)}); use "
                                    "a new --out or the same settings to resume", self.run_dir)
            self.field = GridField.from_state(state["layout"], tensors, device=self.device)
            self.optimizer = self._make_optimizer(self.field)
            opt_state = {k[len("optim."):]: v for k, v in tensors.items() if k.startswith("optim.")}
            if opt_state:
                saved = _unflatten_optim(opt_state, state["optim_meta"])
                # The groups are the current ones (their rates are set every step); runs saved when all head
                # decoders shared one group hold the same parameters in the same order.
                current = self.optimizer.state_dict()["param_groups"]
                if sum(len(g["params"]) for g in saved["param_groups"]) != sum(len(g["params"]) for g in current):
                    raise SemfieldError("the checkpoint's optimizer state does not match the field's decoders",
                                        self.run_dir)
                saved["param_groups"] = current
                self.optimizer.load_state_dict(saved)
            self.iteration = int(state["iteration"])
            self.train_seconds = float(state["train_seconds"])
            self.heads_fused_at = state.get("heads_fused_at")
            self.generator.set_state(tensors["rng.generator"])
            if "rng.roulette" in tensors:  # checkpoints from before the roulette had its own stream lack it
                self.roulette_generator.set_state(tensors["rng.roulette"])
            self._set_near_distance()
            return True
        self.build(bank, progress=progress)
        return False

    def save(self) -> None:
        """Checkpoint the run. Once the schedule is done the grids' Adam moments are left out: they are two
        thirds of the file (4.4 -> 1.5 GB for a quick-suite run with an instance head), and only more
        iterations would use them (they then restart at zero, as in a fresh Adam)."""
        tensors = self.field.state_tensors(moments=self.iteration < self.config.iterations)
        flat, meta = _flatten_optim(self.optimizer.state_dict())
        tensors.update({f"optim.{k}": v for k, v in flat.items()})
        tensors["rng.generator"] = self.generator.get_state()
        tensors["rng.roulette"] = self.roulette_generator.get_state()
        state = {"iteration": self.iteration, "train_seconds": self.train_seconds, "layout": self.field.layout(),
                 "heads_fused_at": self.heads_fused_at,
                 "optim_meta": meta}
        save_checkpoint(self.run_dir, tensors, state)

    # ----- the loop ----------------------------------------------------------------------------------
    def train(self, progress: bool = True, callback=None, callback_every: int = 0) -> dict:
        """Run (or finish) the schedule. Ctrl-C saves a checkpoint and re-raises KeyboardInterrupt.

        ``callback(trainer)`` runs every ``callback_every`` iterations (e.g. a benchmark evaluating the
        test views); its time is not counted in ``train_seconds``.
        """
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        bank = RayBank(self.scene.split("train"), self.device)
        resumed = self.resume_or_start(bank, progress)  # checks the saved settings before they are overwritten
        atomic_write_json(self.run_dir / "config.json", {"scene": str(self.scene.source), "train": cfg.to_dict()})
        if self.bounds_report is not None:
            outer, focus = self.bounds
            atomic_write_json(self.run_dir / BOUNDS_FILE, {**self.bounds_report, "outer": outer.tolist(),
                                                           "focus": focus.tolist(), "voxel": self.field.final_voxel})
        if self.instance_settings is not None:
            self.instance_masks = InstanceMasks(self.instance_segments, bank, self.instance_settings)
        elif self.feature_targets and cfg.feature_balance > 0:
            frames = self.scene.split("train")
            segments = teacher_segments(list(self.feature_targets.values()), bank,
                                        [(f.intrinsics.width, f.intrinsics.height) for f in frames],
                                        clusters=cfg.feature_clusters, seed=cfg.seed)
            try:
                self.balanced = BalancedRays(segments, bank)
            except ValueError:  # no segment large enough (tiny images): every feature ray is drawn uniformly
                self.balanced = None
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not progress, desc="train",
                   unit="it", dynamic_ncols=True)
        psnr_ema = None
        start = time.perf_counter() - self.train_seconds
        last_step = 0.0  # seconds the last step took: the budget stops before a step that would overrun it
        try:
            while self.iteration < cfg.iterations:
                if cfg.max_seconds is not None and time.perf_counter() - start + last_step > cfg.max_seconds:
                    break
                began = time.perf_counter()
                loss_val = self.step(bank)
                last_step = time.perf_counter() - began
                psnr = -10.0 * math.log10(max(loss_val, 1e-10))
                psnr_ema = psnr if psnr_ema is None else 0.9 * psnr_ema + 0.1 * psnr
                self.iteration += 1
                self.train_seconds = time.perf_counter() - start
                bar.update(1)
                if self.iteration % 10 == 0:
                    bar.set_postfix(psnr=f"{psnr_ema:.2f}", voxel=f"{self.field.voxel * 1000:.1f}mm")
                if cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0:
                    self.save()
                if callback is not None and callback_every and self.iteration % callback_every == 0:
                    paused = time.perf_counter()
                    callback(self)
                    start += time.perf_counter() - paused
        except KeyboardInterrupt:
            self.train_seconds = time.perf_counter() - start
            self.save()
            bar.close()
            raise
        bar.close()
        emptied = self.field.empty_unvisited()
        fusion = self.fuse_heads(bank, progress)
        self.save()
        return {"iterations": self.iteration, "train_seconds": self.train_seconds, "resumed": resumed,
                "train_psnr_ema": psnr_ema, "peak_rss_mb": peak_rss_mb(), "emptied_vertices": emptied,
                "head_fusion": fusion}

    def fuse_heads(self, bank: RayBank, progress: bool = False) -> dict | None:
        """When training stops (the schedule done or the time budget spent), fuse every training pixel's teacher
        features into the plain heads (:mod:`.head_fusion`), once per iteration reached; its seconds count as
        training time."""
        cfg = self.config.head_fusion
        if not cfg.enabled or not self.feature_targets or self.heads_fused_at == self.iteration:
            return None
        began = time.perf_counter()
        report = fuse_heads(self.field, bank, self.feature_targets, self.config.render, cfg, progress=progress)
        report["seconds"] = time.perf_counter() - began
        self.train_seconds += report["seconds"]
        self.heads_fused_at = self.iteration
        return report

    def step(self, bank: RayBank) -> float:
        cfg, fld = self.config, self.field
        target_voxel = fld.final_voxel * voxel_factor_at(cfg, self.iteration)
        if abs(target_voxel - fld.voxel) > 1e-9:
            fld.resample(target_voxel)
        fld.occupancy_ready = self.iteration >= cfg.occupancy_warmup * cfg.iterations
        if self.iteration % cfg.occupancy_every == 0:
            fld.refresh_occupancy()
        self._set_lrs(self.iteration)
        sel = bank.sample(cfg.batch_rays, self.generator)
        heads = tuple(fld.config.heads) if self.iteration >= cfg.feature_start * cfg.iterations else ()
        head_rays = cfg.feature_rays
        contrast = None
        if self.instance_masks is not None and INSTANCE_HEAD in heads:
            # The contrastive pixels lead the batch, so that the heads are rendered for them.
            rays, group, view = contrast = self.instance_masks.sample(self.generator)
            sel = torch.cat([rays, sel[rays.shape[0]:]])
            head_rays = max(head_rays, rays.shape[0])
        elif self.balanced is not None and heads:
            rays = self.balanced.sample(round(cfg.feature_balance * head_rays), self.generator)
            sel = torch.cat([rays, sel[rays.shape[0]:]])
        opts = replace(cfg.render, heads=heads)
        out = render_rays(fld, bank.origins[sel], bank.dirs[sel], bank.z_per_t[sel], opts, stratified=True,
                          generator=self.generator, head_rays=head_rays, centred_heads=True,
                          roulette_generator=self.roulette_generator)
        loss = torch.mean((out["rgb"] - bank.rgb[sel]) ** 2)
        self.last_samples = out["samples"]
        photometric = float(loss.detach())
        if contrast is not None:
            from ..panoptic.contrastive import instance_contrastive_loss

            rays, group, view = contrast
            inst = instance_contrastive_loss(out[INSTANCE_HEAD][: rays.shape[0]], group, view,
                                             self.instance_settings.temperature,
                                             pull_weight=self.instance_settings.pull_weight)
            self.last_instance_loss = float(inst.detach())
            loss = loss + self.instance_settings.weight * inst
        for name in (h for h in heads if h in self.feature_targets):
            hs = sel[: out[name].shape[0]]
            targets = self.feature_targets[name]
            target = targets.sample(bank.image_index[hs], bank.pixel[hs]) - fld.head_mean(name)
            head_loss = feature_loss(out[name], target, fld.config.heads[name].loss)
            self.last_feature_loss[name] = float(head_loss.detach())
            loss = loss + cfg.feature_weight * head_loss
        if cfg.opacity_weight > 0:  # closed scenes: every ray should end on a surface before the box wall
            loss = loss + cfg.opacity_weight * torch.mean((1.0 - out["acc"]) ** 2)
        if cfg.near_weight > 0:
            loss = loss + cfg.near_weight * near_opacity(out["alpha"], out["t"], self.near_distance).mean()
        if cfg.distortion_weight > 0:
            loss = loss + cfg.distortion_weight * distortion_loss(out["weights"], out["t"], out["deltas"]).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        for grid in fld.sparse_grids().values():
            grid.step()
        return photometric


def _flatten_optim(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """torch.optim state dict → flat tensors + JSON meta (no pickle)."""
    flat, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, s in state["state"].items():
        meta["state"][str(pid)] = []
        for k, v in s.items():
            if torch.is_tensor(v):
                flat[f"{pid}.{k}"] = v
                meta["state"][str(pid)].append(k)
    return flat, meta


def _unflatten_optim(flat: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {int(pid): {k: flat[f"{pid}.{k}"] for k in keys} for pid, keys in meta["state"].items()}
    return {"state": state, "param_groups": meta["param_groups"]}
