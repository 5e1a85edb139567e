"""CLIP and SigLIP teachers on tiny random models built offline: shapes, norms, dense maths, pyramid."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from semfield.errors import SemfieldError
from semfield.teachers.clip import ClipTeacher, crop_starts, resize
from semfield.teachers.siglip import SiglipTeacher

WORDS = ["<pad>", "<unk>", "<s>", "</s>", "mug", "cup", "coffee", "floor", "a", "red", "table", "on"]
LAYERS = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


@pytest.fixture(scope="module")
def tokenizer():
    """A word-level tokenizer over ``WORDS`` that adds ``<s> ... </s>`` (ids 2, 3)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )


def _ids(max_pos):
    return dict(
        vocab_size=len(WORDS),
        max_position_embeddings=max_pos,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        **LAYERS,
    )


@pytest.fixture(scope="module")
def clip_model():
    torch.manual_seed(0)
    cfg = transformers.CLIPConfig(
        text_config=_ids(16), projection_dim=24, vision_config=dict(image_size=16, patch_size=4, **LAYERS)
    )
    return transformers.CLIPModel(cfg).eval()


@pytest.fixture(scope="module")
def siglip_model():
    torch.manual_seed(1)
    cfg = transformers.SiglipConfig(
        text_config=_ids(8), vision_config=dict(image_size=16, patch_size=4, **LAYERS)
    )
    return transformers.SiglipModel(cfg).eval()


@pytest.fixture(scope="module")
def image():
    """A non-square ``[20, 30, 3]`` image in [0, 1]."""
    return torch.rand(20, 30, 3, generator=torch.Generator().manual_seed(3))


def _unit(x):
    return torch.allclose(x.norm(dim=-1), torch.ones(x.shape[:-1]), atol=1e-5)


def test_clip_dense_shape_norm_and_global(clip_model, tokenizer, image):
    t = ClipTeacher.from_model(clip_model, tokenizer, input_size=16)
    out = t.extract(image)
    # short side 20 -> 16 px = 4 patches; long side 30 -> round(1.5 * 4) = 6 patches
    assert out.features.shape == (4, 6, 24) and out.features.dtype == torch.float32
    assert _unit(out.features) and t.dim == 24 and t.name == "clip" and t.has_text
    # global = the normal CLIP image embedding of the centre crop at the native 16 px
    x = image.permute(2, 0, 1)
    crop = resize(x, (16, 24))[:, :, 4:20]
    with torch.no_grad():
        ref = clip_model.get_image_features(pixel_values=t.normalise(crop[None])).pooler_output[0]
    assert torch.allclose(out.global_embedding, F.normalize(ref, dim=-1), atol=1e-5)


def test_maskclip_equals_hand_computation(clip_model, tokenizer, image):
    t = ClipTeacher.from_model(clip_model, tokenizer, input_size=16)
    feats = t.extract(image).features
    pixels = t.preprocess(image)
    assert pixels.shape == (1, 3, 16, 24)
    with torch.no_grad():
        out = clip_model.vision_model(
            pixel_values=pixels, interpolate_pos_encoding=True, output_hidden_states=True
        )
    i, j = 2, 3
    x = out.hidden_states[-2][0, 1 + i * 6 + j]  # token of cell (2, 3) entering the last layer
    last, vm = clip_model.vision_model.encoder.layers[-1], clip_model.vision_model
    a = last.self_attn
    ln = F.layer_norm(x, (32,), last.layer_norm1.weight, last.layer_norm1.bias, last.layer_norm1.eps)
    o = (ln @ a.v_proj.weight.T + a.v_proj.bias) @ a.out_proj.weight.T + a.out_proj.bias
    post = F.layer_norm(o, (32,), vm.post_layernorm.weight, vm.post_layernorm.bias, vm.post_layernorm.eps)
    hand = F.normalize((post @ clip_model.visual_projection.weight.T).detach(), dim=-1)
    assert torch.allclose(feats[i, j], hand, atol=1e-5)
    # and it is not the ordinary last-layer output of that token
    usual = clip_model.visual_projection(vm.post_layernorm(out.last_hidden_state[0, 1 + i * 6 + j])).detach()
    assert float(F.cosine_similarity(usual, hand, dim=0)) < 0.99


def test_clip_text_embeddings(clip_model, tokenizer):
    t = ClipTeacher.from_model(clip_model, tokenizer, input_size=16)
    emb = t.embed_text(["red mug", "a coffee cup on table", "red mug"])
    assert emb.shape == (3, 24) and _unit(emb)
    assert torch.equal(emb[0], emb[2]) and float(emb[0] @ emb[1]) < 0.999
    tok = tokenizer(["a coffee cup on table"], return_tensors="pt")
    with torch.no_grad():
        ref = clip_model.get_text_features(**tok).pooler_output[0]
    assert torch.allclose(emb[1], F.normalize(ref, dim=-1), atol=1e-5)
    assert t.embed_text([]).shape == (0, 24)


def test_crop_starts():
    assert crop_starts(30, 20, 0.5) == [0, 10]
    assert crop_starts(100, 10, 0.5) == list(range(0, 91, 5))
    assert crop_starts(10, 20, 0.5) == [0]
    assert crop_starts(100, 30, 0.0) == [0, 23, 47, 70]  # 3 crops would leave 10 px; 4 spread evenly


def test_clip_pyramid_cells_average_their_crops(clip_model, tokenizer, image):
    t = ClipTeacher.from_model(clip_model, tokenizer, input_size=16, mode="pyramid", pyramid_scales=(1.0,))
    feats = t.extract(image).features
    assert feats.shape == (4, 6, 24) and _unit(feats)
    # scale 1.0 on a 20x30 image: two 20 px crops at x = 0 and x = 10; cell centres at x = 2.5, 7.5, ..., 27.5
    x = image.permute(2, 0, 1)
    crops = torch.stack([resize(x[:, :, s : s + 20], (16, 16)) for s in (0, 10)])
    with torch.no_grad():
        e = F.normalize(t.encode_images(t.normalise(crops)), dim=-1)
    assert torch.allclose(feats[:, 0], e[0].expand(4, -1), atol=1e-5)  # only the first crop
    assert torch.allclose(feats[:, 5], e[1].expand(4, -1), atol=1e-5)  # only the second
    assert torch.allclose(feats[:, 2], F.normalize(e[0] + e[1], dim=-1).expand(4, -1), atol=1e-5)  # both
    multi = ClipTeacher.from_model(
        clip_model, tokenizer, input_size=16, mode="pyramid", pyramid_scales=(0.5, 1.0)
    )
    assert multi.extract(image).features.shape == (4, 6, 24)


def test_settings_stable_and_keyed_on_weights(clip_model, tokenizer):
    a = ClipTeacher.from_model(clip_model, tokenizer, input_size=16)
    b = ClipTeacher.from_model(clip_model, tokenizer, input_size=16)
    s = a.settings()
    assert s == a.settings() == b.settings() and json.loads(json.dumps(s)) == s
    assert s["mode"] == "maskclip" and s["input_size"] == 16 and len(s["weights"]) == 16
    p = ClipTeacher.from_model(
        clip_model, tokenizer, input_size=18, mode="pyramid", pyramid_scales=(0.25, 0.5)
    )
    sp = p.settings()
    assert sp["pyramid_scales"] == [0.25, 0.5] and sp["input_size"] == 16 and sp["weights"] == s["weights"]
    other = transformers.CLIPModel(clip_model.config).eval()
    with torch.no_grad():
        other.load_state_dict(clip_model.state_dict())
        other.visual_projection.weight[0, 0] += 1e-3
    assert ClipTeacher.from_model(other, tokenizer, input_size=16).settings()["weights"] != s["weights"]


def test_bad_input_is_a_semfield_error(clip_model, tokenizer):
    with pytest.raises(SemfieldError, match="mode"):
        ClipTeacher.from_model(clip_model, tokenizer, mode="nope")
    with pytest.raises(SemfieldError, match="pyramid scales"):
        ClipTeacher.from_model(clip_model, tokenizer, mode="pyramid", pyramid_scales=(0.0,))
    with pytest.raises(SemfieldError, match=r"\[H, W, 3\]"):
        ClipTeacher.from_model(clip_model, tokenizer, input_size=16).extract(torch.zeros(3, 20, 30))
    with pytest.raises(SemfieldError, match="cannot load CLIP weights"):
        ClipTeacher("/nonexistent/semfield/clip")  # a missing local folder, never the network


def test_siglip_dense_global_and_text(siglip_model, tokenizer, image):
    t = SiglipTeacher.from_model(siglip_model, tokenizer, input_size=16)
    out = t.extract(image)
    assert out.features.shape == (4, 6, 32) and _unit(out.features) and t.name == "siglip"
    # dense = the pooling head applied to each post-layernorm token on its own
    with torch.no_grad():
        tokens = siglip_model.vision_model(pixel_values=t.preprocess(image), interpolate_pos_encoding=True)
        tokens = tokens.last_hidden_state
        alone = siglip_model.vision_model.head(tokens[:, 1 * 6 + 4 : 1 * 6 + 5])[0]
        glob = siglip_model.get_image_features(
            pixel_values=t.normalise(resize(image.permute(2, 0, 1), (16, 16))[None])
        )
    assert torch.allclose(out.features[1, 4], F.normalize(alone, dim=-1), atol=1e-5)
    assert torch.allclose(out.global_embedding, F.normalize(glob.pooler_output[0], dim=-1), atol=1e-5)
    emb = t.embed_text(["red mug", "floor"])
    assert emb.shape == (2, 32) and _unit(emb)
    ids = tokenizer(["floor"], padding="max_length", max_length=8, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = siglip_model.get_text_features(input_ids=ids).pooler_output[0]
    assert torch.allclose(emb[1], F.normalize(ref, dim=-1), atol=1e-5)
    pyr = SiglipTeacher.from_model(
        siglip_model, tokenizer, input_size=16, mode="pyramid", pyramid_scales=(0.5,)
    )
    assert pyr.extract(image).features.shape == (4, 6, 32)
    assert pyr.settings()["teacher"] == "siglip" and pyr.settings()["pyramid_scales"] == [0.5]
