"""The teacher contract: an image in, a dense feature map (and optionally a global embedding) out.

A teacher is any 2D model whose features a field distils: CLIP-style vision-language models (which also
embed text), DINOv2 (image only), or the simulated label teacher of generated scenes. Every teacher:

- has a short ``name`` (used for the field head and the cache folder) and ``dim`` (feature width);
- reports ``settings()``: a JSON-ready dict of everything that changes its output (model id or weights
  digest, input size, pyramid scales, noise seed...). The feature cache keys on it, so two teachers with
  equal settings must give equal features;
- maps one image to a :class:`TeacherOutput` with :meth:`extract`;
- if ``has_text``, embeds phrases into the same space with :meth:`embed_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from ..scene.types import Frame


@dataclass
class TeacherOutput:
    """What a teacher says about one image.

    Attributes:
        features: ``[h, w, D]`` float32 dense features on the teacher's own grid (h, w need not equal the
            image size: a ViT gives one vector per patch). Feature ``[i, j]`` covers the image region
            ``[i * H / h, (i + 1) * H / h) x [j * W / w, (j + 1) * W / w)``.
        global_embedding: optional ``[D_g]`` float32 embedding of the whole image (CLS token, pooled).
    """

    features: torch.Tensor
    global_embedding: torch.Tensor | None = None


@runtime_checkable
class Teacher(Protocol):
    name: str
    dim: int
    has_text: bool

    def settings(self) -> dict:
        """JSON-ready description of everything that changes the output (the cache key)."""

    def extract(self, image: torch.Tensor, frame: Frame | None = None) -> TeacherOutput:
        """Features of one image.

        Args:
            image: ``[H, W, 3]`` float32 RGB in [0, 1].
            frame: the frame the image belongs to; teachers that read ground truth (the simulated label
                teacher) need it, image models ignore it.
        """

    def embed_text(self, phrases: list[str]) -> torch.Tensor:
        """Unit-normalised embeddings ``[N, D]`` of phrases in the feature space (only if ``has_text``)."""
