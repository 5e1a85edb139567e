"""SigLIP teacher: dense patch features through the attention-pooling head's single-token path, plus text.

Weights: ``SiglipModel.from_pretrained(model_id)`` (default ``google/siglip-base-patch16-224``; needs the hub
or a local copy), or an already-built model through :meth:`SiglipTeacher.from_model`. Preprocessing with
torch: bicubic antialiased resize, mean = std = 0.5.

SigLIP has no CLS token: its image embedding is the multi-head attention pooling head (MAP) over the
post-layernorm patch tokens, ``e = a + mlp(layernorm(a))`` with ``a = attention(probe, tokens, tokens)``.

Dense features (``mode="dense"``): the whole encoder runs as usual (short side resized to ``input_size``,
position embeddings interpolated), then every post-layernorm patch token ``t`` goes through the head as if
the probe attended to that token alone — the softmax over one key is 1, so ``a = out_proj(W_v t + b_v)`` —
followed by the head's own residual MLP: ``f = a + mlp(layernorm(a))``. This is the MaskCLIP idea applied
to SigLIP's pooling head (the head is the only map from tokens into the joint space); the last encoder
layer keeps its attention. Unit-normalised, ``[h, w, D]``.

``mode="pyramid"``: LERF-style crops as in :mod:`semfield.teachers.clip`, each crop embedded by the head.

The global embedding is the normal SigLIP image embedding: the image squashed to the native size (224²,
no crop, as SigLIP's processor does), head output, unit-normalised. Text is tokenised padded to the
model's maximum length (64), the way SigLIP was trained, and pooled by the text head on the last token.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import SemfieldError
from .clip import PYRAMID_SCALES, ViTTextTeacher, load_pretrained, pooled_output, resize

DEFAULT_SIGLIP_ID = "google/siglip-base-patch16-224"


class SiglipTeacher(ViTTextTeacher):
    """SigLIP teacher (see the module docstring).

    Args:
        model_id: Hugging Face hub id, loaded with ``SiglipModel.from_pretrained`` unless ``model`` is given.
        input_size: short side in pixels for ``"dense"`` (rounded to the patch size); also sets the grid of
            ``"pyramid"``.
        mode: ``"dense"`` or ``"pyramid"``. pyramid_scales / pyramid_overlap: the crop pyramid.
        device: where the model runs; outputs are returned on the CPU. batch_size: crops per forward.
        model, tokenizer: an already-built ``SiglipModel`` and its tokenizer (see :meth:`from_model`).

    Attributes: name ``"siglip"``, dim (vision hidden width, 768 for ViT-B/16), has_text True.
    """

    family = "siglip"
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    modes = ("dense", "pyramid")
    recipe = "siglip-map-v1: full encoder; post_layernorm; head value path + head mlp per token"

    def __init__(self, model_id: str = DEFAULT_SIGLIP_ID, input_size: int = 448, mode: str = "dense",
                 pyramid_scales: Sequence[float] = PYRAMID_SCALES, pyramid_overlap: float = 0.5,
                 device: str = "cpu", batch_size: int = 32, model=None, tokenizer=None):
        if model is None:
            from transformers import SiglipModel

            model, tokenizer = load_pretrained(SiglipModel, model_id, "SigLIP")
        if not getattr(model.vision_model, "use_head", False):
            raise SemfieldError(f"SigLIP model {model_id!r} has no attention pooling head (vision_use_head)")
        self.dim = int(model.config.vision_config.hidden_size)
        super().__init__(model, tokenizer, model_id, input_size, mode, pyramid_scales, pyramid_overlap,
                         device, batch_size)

    @classmethod
    def from_model(cls, model, tokenizer, model_id: str = "custom", **options) -> SiglipTeacher:
        """A teacher around an already-built ``SiglipModel`` (``model_id`` only labels its settings)."""
        return cls(model_id=model_id, model=model, tokenizer=tokenizer, **options)

    def head_per_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """Post-layernorm tokens ``[N, C]`` → the pooling head's output for each token alone ``[N, C]``."""
        head = self.model.vision_model.head
        mha = head.attention
        c = tokens.shape[-1]
        a = mha.out_proj(F.linear(tokens, mha.in_proj_weight[2 * c :], mha.in_proj_bias[2 * c :]))
        return a + head.mlp(head.layernorm(a))

    def dense(self, pixels: torch.Tensor) -> torch.Tensor:
        h, w = pixels.shape[-2] // self.patch, pixels.shape[-1] // self.patch
        vm = self.model.vision_model
        out = vm(pixel_values=pixels, interpolate_pos_encoding=True)
        return self.head_per_token(out.last_hidden_state[0]).reshape(h, w, self.dim)

    def global_view(self, image: torch.Tensor) -> torch.Tensor:
        return resize(image, (self.native, self.native))

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return pooled_output(self.model.get_image_features(pixel_values=pixels))

    def encode_text(self, phrases: list[str]) -> torch.Tensor:
        limit = int(self.model.config.text_config.max_position_embeddings)
        tok = self.tokenizer(phrases, padding="max_length", truncation=True, max_length=limit,
                             return_tensors="pt")
        return pooled_output(self.model.get_text_features(input_ids=tok["input_ids"].to(self.device)))
