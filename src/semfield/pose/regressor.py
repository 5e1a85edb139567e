"""Per-scene pose regressor (SPINE's coarse inversion): image descriptor → camera position + 6D rotation.

The descriptor (global + layout, see :mod:`semfield.pose.descriptors`) is projected onto its principal
components fitted on the bank (whitened), then a small MLP predicts the camera position relative to the
capture's centre in units of the capture's radius, and the rotation in the continuous 6D representation.
Loss: L1 on the normalised position plus the Frobenius distance of the rotation matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .geometry import rotation_6d_to_matrix

__all__ = ["PoseRegressor", "RegressorSettings", "fit_pose_regressor", "regressor_from_state", "regressor_state"]


@dataclass
class RegressorSettings:
    components: int = 64
    hidden: int = 256
    steps: int = 1500
    lr: float = 2e-3
    weight_decay: float = 1e-4
    input_dropout: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class PoseRegressor(nn.Module):
    """Descriptor ``[B, F]`` → camera-to-world ``[B, 4, 4]``.

    Buffers: ``feat_mean [F]``, ``basis [F, C]`` (whitened principal directions), ``centre [3]`` and
    ``scale`` (position normalisation).
    """

    def __init__(self, in_dim: int, components: int, hidden: int):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("basis", torch.zeros(in_dim, components))
        self.register_buffer("centre", torch.zeros(3))
        self.register_buffer("scale", torch.ones(()))
        self.mlp = nn.Sequential(nn.Linear(components, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 9))

    def project(self, desc: torch.Tensor) -> torch.Tensor:
        return (desc - self.feat_mean) @ self.basis

    def head(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whitened components ``[B, C]`` → ``(normalised position [B, 3], rotation [B, 3, 3])``."""
        out = self.mlp(z)
        return out[:, :3], rotation_6d_to_matrix(out[:, 3:])

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        pos, R = self.head(self.project(desc))
        c2w = torch.eye(4, dtype=desc.dtype, device=desc.device).repeat(desc.shape[0], 1, 1)
        c2w[:, :3, :3] = R
        c2w[:, :3, 3] = pos * self.scale + self.centre
        return c2w


def fit_pose_regressor(desc: torch.Tensor, c2w: torch.Tensor, settings: RegressorSettings) -> tuple[PoseRegressor, dict]:
    """Fit a regressor on descriptors and their poses.

    Args:
        desc: ``[B, F]`` descriptors.
        c2w: ``[B, 4, 4]`` their camera-to-world poses.
        settings: :class:`RegressorSettings`.
    Returns:
        ``(regressor in eval mode, info)``; info has the final training ``loss``, ``position_err`` (mean, scene
        units) and ``rotation_err_deg`` (mean) on the fitting set.
    """
    torch.manual_seed(settings.seed)
    desc = desc.float()
    c2w = c2w.float()
    B, F_in = desc.shape
    C = min(settings.components, B - 1, F_in)
    mean = desc.mean(0)
    _, S, V = torch.linalg.svd(desc - mean, full_matrices=False)
    std = (S[:C] / max(1, B - 1) ** 0.5).clamp(min=1e-6)
    model = PoseRegressor(F_in, C, settings.hidden)
    centre = c2w[:, :3, 3].mean(0)
    scale = (c2w[:, :3, 3] - centre).norm(dim=1).mean().clamp(min=1e-6)
    with torch.no_grad():
        model.feat_mean.copy_(mean)
        model.basis.copy_(V[:C].T / std)
        model.centre.copy_(centre)
        model.scale.copy_(scale)
    z = model.project(desc).detach()
    pos_goal = (c2w[:, :3, 3] - centre) / scale
    R_goal = c2w[:, :3, :3]
    optim = torch.optim.AdamW(model.mlp.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, settings.steps)
    drop = nn.Dropout(settings.input_dropout)
    model.train()
    loss = torch.zeros(())
    for _ in range(settings.steps):
        pos, R = model.head(drop(z))
        loss = (pos - pos_goal).abs().sum(-1).mean() + (R - R_goal).square().sum((-1, -2)).clamp(min=1e-12).sqrt().mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        pred = model(desc)
        pos_err = (pred[:, :3, 3] - c2w[:, :3, 3]).norm(dim=-1).mean()
        cos = ((pred[:, :3, :3].transpose(1, 2) @ c2w[:, :3, :3]).diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2
        rot_err = torch.rad2deg(torch.arccos(cos.clamp(-1, 1))).mean()
    return model, {"loss": float(loss.detach()), "position_err": float(pos_err), "rotation_err_deg": float(rot_err),
                   "components": int(C)}


def regressor_state(model: PoseRegressor) -> dict[str, torch.Tensor]:
    """Tensors to save (safetensors-ready)."""
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def regressor_from_state(tensors: dict[str, torch.Tensor], hidden: int) -> PoseRegressor:
    """Rebuild a regressor saved with :func:`regressor_state`."""
    in_dim, comps = tensors["basis"].shape
    model = PoseRegressor(int(in_dim), int(comps), hidden)
    model.load_state_dict(tensors)
    return model.eval()

