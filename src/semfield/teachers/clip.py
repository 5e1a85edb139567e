"""CLIP teacher: dense MaskCLIP features or a LERF-style crop pyramid, plus CLIP text embeddings.

Weights: ``CLIPModel.from_pretrained(model_id)`` (default ``openai/clip-vit-base-patch16``; needs the hub or a
local copy, so not reachable offline), or an already-built model through :meth:`ClipTeacher.from_model`.
Preprocessing is done with torch (no torchvision): bicubic antialiased resize, CLIP mean / std.

Modes (``mode``):

- ``"maskclip"`` (default, one forward pass): the image is resized so its short side is ``input_size``
  (448 → a 28-patch short side for ViT-B/16; position embeddings are bicubically interpolated by
  transformers' ``interpolate_pos_encoding``). All layers but the last run as usual. In the last layer the
  patch tokens skip the query/key attention (MaskCLIP): ``o = out_proj(v_proj(layer_norm1(x)))``, and, as
  in F3RM's MaskCLIP code (whose authors note that adding the residual back, or running the MLP on ``o``,
  degrades the features), no residual and no MLP. Then ``post_layernorm`` and ``visual_projection`` into
  the joint space, unit-normalised: ``[h, w, D]``.
- ``"pyramid"`` (LERF-style): for each crop scale ``s`` (fraction of the short side) square crops of side
  ``s * min(H, W)`` tile the image with ``overlap`` (start positions spread evenly, last crop flush with the
  border), each is resized to the model's native size (224) and embedded as a normal CLIP image (CLS →
  projection). Each cell of the same grid as ``"maskclip"`` averages the unit embeddings of the crops whose
  square contains its centre; the scales' maps are unit-normalised, averaged and normalised again.
  Cost: per scale ``n_y * n_x`` crops with ``n = ceil((L - side) / (side * (1 - overlap))) + 1`` per axis;
  the default scales on a square image give 361 + 81 + 25 + 9 = 476 CLIP forwards at 224² per image
  (maskclip: one forward at 448²). Meant for a GPU: a ViT-B/16 on one CPU core takes ~0.36 s per crop,
  ~170 s per 448² image (maskclip: ~2.3 s for a 480×640 image).

The global embedding is always the normal CLIP image embedding: short side resized to 224, centre crop,
CLS → ``post_layernorm`` → ``visual_projection``, unit-normalised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import SemfieldError
from ..scene.types import Frame
from .base import TeacherOutput
from .dinov2 import grid_size, weights_digest

DEFAULT_CLIP_ID = "openai/clip-vit-base-patch16"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PYRAMID_SCALES = (0.1, 0.2, 0.35, 0.5)


def _check_image(image: torch.Tensor) -> torch.Tensor:
    """``[H, W, 3]`` float image → ``[3, H, W]`` float32 (raises on any other shape)."""
    if not torch.is_tensor(image) or image.dim() != 3 or image.shape[-1] != 3:
        shape = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise SemfieldError(f"expected an RGB image [H, W, 3], got {shape}")
    return image.to(torch.float32).permute(2, 0, 1)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize ``[N, 3, H, W]`` or ``[3, H, W]`` to ``size`` (h, w): bicubic, antialiased, clamped."""
    batched = x.dim() == 4
    x = x if batched else x[None]
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0.0, 1.0)
    return x if batched else x[0]


def center_crop(x: torch.Tensor, side: int) -> torch.Tensor:
    """Resize ``[3, H, W]`` so the short side is ``side``, then crop the central ``[3, side, side]``."""
    h, w = x.shape[-2:]
    scale = side / min(h, w)
    x = resize(x, (max(side, round(h * scale)), max(side, round(w * scale))))
    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
    return x[..., top : top + side, left : left + side]


def crop_starts(length: int, side: int, overlap: float) -> list[int]:
    """Start offsets of crops of ``side`` px covering ``[0, length)`` with at least ``overlap`` overlap."""
    if side >= length:
        return [0]
    stride = max(1.0, side * (1.0 - overlap))
    n = math.ceil((length - side) / stride) + 1
    return [round(i * (length - side) / (n - 1)) for i in range(n)]


def pyramid_features(image: torch.Tensor, encode: Callable[[torch.Tensor], torch.Tensor],
                     grid: tuple[int, int], scales: Sequence[float], overlap: float, crop_px: int,
                     batch_size: int = 32) -> torch.Tensor:
    """LERF-style multi-scale crop embeddings on a cell grid.

    Args:
        image: ``[3, H, W]`` in [0, 1].
        encode: ``[N, 3, crop_px, crop_px]`` crops in [0, 1] → ``[N, D]`` embeddings.
        grid: output cells ``(h, w)``; cell ``(i, j)`` is centred at ``((i + .5) H / h, (j + .5) W / w)``.
        scales: crop sides as fractions of ``min(H, W)``. overlap: wanted overlap of neighbouring crops.

    Returns:
        ``[h, w, D]`` unit-normalised mean over scales of the per-scale mean crop embedding.
    """
    H, W = image.shape[-2:]
    h, w = grid
    cy = (torch.arange(h, dtype=torch.float32) + 0.5) * H / h
    cx = (torch.arange(w, dtype=torch.float32) + 0.5) * W / w
    total = None
    for s in scales:
        side = max(1, round(s * min(H, W)))
        boxes = [(y, x) for y in crop_starts(H, side, overlap) for x in crop_starts(W, side, overlap)]
        emb = []
        for i in range(0, len(boxes), batch_size):
            crops = [resize(image[:, y : y + side, x : x + side], (crop_px, crop_px))
                     for y, x in boxes[i : i + batch_size]]
            emb.append(F.normalize(encode(torch.stack(crops)).float(), dim=-1).cpu())
        emb = torch.cat(emb)  # [N, D]
        ys = torch.tensor([b[0] for b in boxes], dtype=torch.float32)
        xs = torch.tensor([b[1] for b in boxes], dtype=torch.float32)
        in_y = (cy[None] >= ys[:, None]) & (cy[None] < ys[:, None] + side)  # [N, h]
        in_x = (cx[None] >= xs[:, None]) & (cx[None] < xs[:, None] + side)  # [N, w]
        cover = (in_y[:, :, None] & in_x[:, None, :]).float()  # [N, h, w]
        mean = torch.einsum("nhw,nd->hwd", cover, emb) / cover.sum(0).clamp(min=1.0)[..., None]
        total = F.normalize(mean, dim=-1) + (0.0 if total is None else total)
    return F.normalize(total, dim=-1)


class ViTTextTeacher:
    """Shared machinery of CLIP-style teachers (settings, modes, text cache); subclasses add the maths."""

    has_text = True
    family = ""
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    modes: tuple[str, ...] = ()

    def __init__(self, model, tokenizer, model_id: str, input_size: int, mode: str,
                 pyramid_scales: Sequence[float], pyramid_overlap: float, device: str, batch_size: int):
        if mode not in self.modes:
            choices = ", ".join(self.modes)
            raise SemfieldError(f"unknown {self.family} teacher mode {mode!r} (choose from {choices})")
        if not pyramid_scales or not all(0.0 < float(s) <= 1.0 for s in pyramid_scales):
            raise SemfieldError(f"pyramid scales must be fractions in (0, 1], got {list(pyramid_scales)}")
        if not 0.0 <= pyramid_overlap < 1.0:
            raise SemfieldError(f"pyramid overlap must be in [0, 1), got {pyramid_overlap}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.model_id, self.mode, self.batch_size = model_id, mode, int(batch_size)
        self.name = self.family
        vision = self.model.config.vision_config
        self.patch, self.native = int(vision.patch_size), int(vision.image_size)
        self.input_size = max(self.patch, round(input_size / self.patch) * self.patch)
        self.pyramid_scales = tuple(float(s) for s in pyramid_scales)
        self.pyramid_overlap = float(pyramid_overlap)
        self._mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        self._digest: str | None = None
        self._text_cache: dict[str, torch.Tensor] = {}

    def settings(self) -> dict:
        """Model id, weights digest, input size, mode and (in pyramid mode) the crop pyramid."""
        if self._digest is None:
            self._digest = weights_digest(self.model)
        out = {"teacher": self.family, "model": self.model_id, "weights": self._digest, "dim": self.dim,
               "input_size": self.input_size, "patch_size": self.patch, "mode": self.mode,
               "dense_recipe": self.recipe, "resize": "bicubic-antialias",
               "normalize": [list(self.mean), list(self.std)]}
        if self.mode == "pyramid":
            out.update(pyramid_scales=list(self.pyramid_scales), pyramid_overlap=self.pyramid_overlap,
                       pyramid_crop_px=self.native, pyramid_combine="mean-of-scales")
        return out

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """``[N, 3, h, w]`` in [0, 1] → model input (mean / std)."""
        return (x.to(self.device) - self._mean) / self._std

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """``[H, W, 3]`` in [0, 1] → normalised pixels ``[1, 3, p h, p w]`` (short side ``input_size``)."""
        x = _check_image(image)
        h, w = grid_size(x.shape[1], x.shape[2], self.input_size, self.patch)
        return self.normalise(resize(x, (h * self.patch, w * self.patch))[None])

    @torch.inference_mode()
    def extract(self, image: torch.Tensor, frame: Frame | None = None) -> TeacherOutput:
        """Features ``[h, w, D]`` (unit norm, float32, CPU) and global embedding ``[D]`` of ``[H, W, 3]``."""
        x = _check_image(image)
        if self.mode == "pyramid":
            grid = grid_size(x.shape[1], x.shape[2], self.input_size, self.patch)
            feats = pyramid_features(x, lambda c: self.encode_images(self.normalise(c)), grid,
                                     self.pyramid_scales, self.pyramid_overlap, self.native, self.batch_size)
        else:
            feats = F.normalize(self.dense(self.preprocess(image)).float(), dim=-1)
        glob = self.encode_images(self.normalise(self.global_view(x)[None]))[0]
        return TeacherOutput(features=feats.cpu(), global_embedding=F.normalize(glob.float(), dim=-1).cpu())

    @torch.inference_mode()
    def embed_text(self, phrases: list[str]) -> torch.Tensor:
        """Unit-normalised text embeddings ``[N, D]`` (float32, CPU), cached per phrase."""
        phrases = [str(p) for p in phrases]
        todo = list(dict.fromkeys(p for p in phrases if p not in self._text_cache))
        if todo:
            emb = F.normalize(self.encode_text(todo).float(), dim=-1).cpu()
            self._text_cache.update(zip(todo, emb))
        if not phrases:
            return torch.zeros(0, self.dim)
        return torch.stack([self._text_cache[p] for p in phrases])

    # subclass hooks -------------------------------------------------------------------------------
    recipe = ""

    def dense(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[1, 3, p h, p w]`` → dense features ``[h, w, D]`` (not yet normalised)."""
        raise NotImplementedError

    def global_view(self, image: torch.Tensor) -> torch.Tensor:
        """``[3, H, W]`` in [0, 1] → ``[3, S, S]`` as the model's own processor would feed it."""
        raise NotImplementedError

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised ``[N, 3, S, S]`` at native size → image embeddings ``[N, D]``."""
        raise NotImplementedError

    def encode_text(self, phrases: list[str]) -> torch.Tensor:
        """Phrases → text embeddings ``[N, D]``."""
        raise NotImplementedError


def pooled_output(out) -> torch.Tensor:
    """transformers ≥ 5 returns a model output from ``get_*_features``; older versions a tensor."""
    return out if torch.is_tensor(out) else out.pooler_output


def load_pretrained(model_cls, model_id: str, family: str):
    """``(model, tokenizer)`` from the hub or the local Hugging Face cache; a SemfieldError if unreachable."""
    from transformers import AutoTokenizer

    try:
        return model_cls.from_pretrained(model_id), AutoTokenizer.from_pretrained(model_id)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        problem = f"cannot load {family} weights {model_id!r} (hub not reachable offline?): {first}"
        raise SemfieldError(problem) from None


class ClipTeacher(ViTTextTeacher):
    """CLIP teacher (see the module docstring for the two modes).

    Args:
        model_id: Hugging Face hub id, loaded with ``CLIPModel.from_pretrained`` unless ``model`` is given.
        input_size: short side in pixels for ``"maskclip"`` (rounded to the patch size); also sets the grid of
            ``"pyramid"`` (``input_size / patch`` cells on the short side).
        mode: ``"maskclip"`` or ``"pyramid"``. pyramid_scales / pyramid_overlap: the crop pyramid.
        device: where the model runs; outputs are returned on the CPU. batch_size: crops per forward.
        model, tokenizer: an already-built ``CLIPModel`` and its tokenizer (see :meth:`from_model`).

    Attributes: name ``"clip"``, dim (projection width, 512 for ViT-B/16), has_text True.
    """

    family = "clip"
    mean, std = CLIP_MEAN, CLIP_STD
    modes = ("maskclip", "pyramid")
    recipe = "maskclip-v1: last layer value path, no residual, no mlp; post_layernorm; visual_projection"

    def __init__(self, model_id: str = DEFAULT_CLIP_ID, input_size: int = 448, mode: str = "maskclip",
                 pyramid_scales: Sequence[float] = PYRAMID_SCALES, pyramid_overlap: float = 0.5,
                 device: str = "cpu", batch_size: int = 32, model=None, tokenizer=None):
        if model is None:
            from transformers import CLIPModel

            model, tokenizer = load_pretrained(CLIPModel, model_id, "CLIP")
        self.dim = int(model.config.projection_dim)
        super().__init__(model, tokenizer, model_id, input_size, mode, pyramid_scales, pyramid_overlap,
                         device, batch_size)

    @classmethod
    def from_model(cls, model, tokenizer, model_id: str = "custom", **options) -> ClipTeacher:
        """A teacher around an already-built ``CLIPModel`` (``model_id`` only labels its settings)."""
        return cls(model_id=model_id, model=model, tokenizer=tokenizer, **options)

    def dense(self, pixels: torch.Tensor) -> torch.Tensor:
        vm = self.model.vision_model
        h, w = pixels.shape[-2] // self.patch, pixels.shape[-1] // self.patch
        x = vm.pre_layrnorm(vm.embeddings(pixels, interpolate_pos_encoding=True))  # [1, 1 + h w, C]
        *body, last = vm.encoder.layers
        for layer in body:
            x = layer(x, None)
            x = x[0] if isinstance(x, tuple) else x
        attn = last.self_attn
        o = attn.out_proj(attn.v_proj(last.layer_norm1(x[0, 1:])))  # [h w, C]: value path only
        return self.model.visual_projection(vm.post_layernorm(o)).reshape(h, w, self.dim)

    def global_view(self, image: torch.Tensor) -> torch.Tensor:
        return center_crop(image, self.native)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return pooled_output(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, phrases: list[str]) -> torch.Tensor:
        limit = int(self.model.config.text_config.max_position_embeddings)
        tok = self.tokenizer(phrases, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        ids, mask = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)
        return pooled_output(self.model.get_text_features(input_ids=ids, attention_mask=mask))
