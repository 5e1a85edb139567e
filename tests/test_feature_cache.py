"""On-disk teacher feature cache: hits and misses, keys, float16 round trip, corrupt files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from semfield.errors import SemfieldError
from semfield.scene.types import Frame, Intrinsics
from semfield.teachers import TeacherOutput
from semfield.teachers.cache import cache_file, cache_key, default_cache_root, extract_cached


class CountingTeacher:
    """Features ``[2, 2, 4]``: the image's quadrant means (RGB) and their sum, times ``scale``."""

    has_text = False

    def __init__(self, scale: float = 1.0, name: str = "fake"):
        self.name, self.dim, self.scale, self.calls = name, 4, scale, 0

    def settings(self) -> dict:
        return {"teacher": self.name, "scale": self.scale}

    def extract(self, image: torch.Tensor, frame: Frame | None = None) -> TeacherOutput:
        self.calls += 1
        h, w = image.shape[0] // 2, image.shape[1] // 2
        quads = image[: 2 * h, : 2 * w].reshape(2, h, 2, w, 3).mean((1, 3))  # [2, 2, 3]
        feats = torch.cat([quads, quads.sum(-1, keepdim=True)], -1) * self.scale
        return TeacherOutput(feats, image.mean((0, 1)) * self.scale)

    def embed_text(self, phrases):
        raise NotImplementedError


class FrameTeacher(CountingTeacher):
    uses_frame = True


def _images(n: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(6 + 2 * i, 8, 3, generator=g) for i in range(n)]


def _frame(tmp_path: Path, semantic: bytes) -> Frame:
    (tmp_path / "sem.png").write_bytes(semantic)
    return Frame(name="a.png", image_path=tmp_path / "a.png", c2w=np.eye(4),
                 intrinsics=Intrinsics(8, 6, 5.0, 5.0, 4.0, 3.0), extra={"semantic": tmp_path / "sem.png"})


def test_second_call_reads_the_cache(tmp_path):
    teacher, images = CountingTeacher(), _images()
    first = extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    assert teacher.calls == 3
    second = extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    assert teacher.calls == 3  # no model run
    for a, b in zip(first, second, strict=True):
        assert a.features.dtype == torch.float32 and a.features.shape == (2, 2, 4)
        assert torch.equal(a.features, b.features) and torch.equal(a.global_embedding, b.global_embedding)
    files = sorted((tmp_path / "features" / "fake").rglob("*"))
    stored = [p for p in files if p.is_file()]
    assert len(stored) == 3
    assert all(p.suffix == ".safetensors" and p.parent.name == p.name[:2] for p in stored)
    key = cache_key(teacher, images[0])
    assert cache_file(tmp_path, "fake", key) in stored
    extract_cached(teacher, images + [images[0] + 0.5], cache_root=tmp_path, progress=False)
    assert teacher.calls == 4  # only the new image


def test_key_follows_settings_and_image_content():
    images = _images(1)
    base = cache_key(CountingTeacher(1.0), images[0])
    assert cache_key(CountingTeacher(1.0), images[0].clone()) == base  # content, not identity
    assert cache_key(CountingTeacher(2.0), images[0]) != base
    changed = images[0].clone()
    changed[3, 4, 1] += 1e-3
    assert cache_key(CountingTeacher(1.0), changed) != base
    assert cache_key(CountingTeacher(1.0), images[0].reshape(3, 16, 3)) != base  # same bytes, other shape
    assert len(base) == 64 and int(base, 16) >= 0


def test_float16_round_trip_is_within_half_precision(tmp_path):
    teacher = CountingTeacher(scale=37.0)
    images = _images(2, seed=5)
    fresh = [teacher.extract(im) for im in images]
    cached = extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    for f, c in zip(fresh, cached, strict=True):
        assert c.features.dtype == torch.float32 and c.global_embedding.dtype == torch.float32
        torch.testing.assert_close(c.features, f.features, rtol=2**-11, atol=0)  # fp16: 11-bit mantissa
        torch.testing.assert_close(c.global_embedding, f.global_embedding, rtol=2**-11, atol=0)
        assert not torch.equal(c.features, f.features)  # really stored in half precision
    huge = CountingTeacher(scale=1e6)  # beyond float16's range: clamped, not inf
    (out,) = extract_cached(huge, images[:1], cache_root=tmp_path, progress=False)
    assert torch.isfinite(out.features).all() and out.features.max() == 65504.0


def test_corrupt_or_truncated_files_are_recomputed(tmp_path):
    teacher, images = CountingTeacher(), _images()
    first = extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    paths = [cache_file(tmp_path, "fake", cache_key(teacher, im)) for im in images]
    paths[0].write_bytes(b"\x00garbage")
    paths[1].write_bytes(paths[1].read_bytes()[:-7])
    again = extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    assert teacher.calls == 5
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.features, b.features)
    extract_cached(teacher, images, cache_root=tmp_path, progress=False)
    assert teacher.calls == 5  # rewritten files are valid
    assert not [p for p in tmp_path.rglob("*.tmp*")]


def test_frame_teachers_key_on_frame_files(tmp_path):
    image = _images(1)[0]
    frame = _frame(tmp_path, b"labels-v1")
    teacher = FrameTeacher()
    k1 = cache_key(teacher, image, frame)
    frame2 = _frame(tmp_path, b"labels-v2")
    assert cache_key(teacher, image, frame2) != k1
    plain = CountingTeacher()  # image teachers ignore the frame's files
    assert cache_key(plain, image, frame2) == cache_key(plain, image)
    extract_cached(teacher, [image], [frame2], cache_root=tmp_path, progress=False)
    extract_cached(teacher, [image], [frame2], cache_root=tmp_path, progress=False)
    assert teacher.calls == 1
    (tmp_path / "sem.png").unlink()
    with pytest.raises(SemfieldError, match="sem.png"):
        cache_key(teacher, image, frame2)
    with pytest.raises(ValueError):
        extract_cached(teacher, [image, image], [frame2], cache_root=tmp_path, progress=False)


def test_default_root_and_progress_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEMFIELD_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c"
    teacher = CountingTeacher(name="counting")
    extract_cached(teacher, _images(2), progress=True)
    assert len(list((tmp_path / "c" / "features" / "counting").rglob("*.safetensors"))) == 2
    assert "counting features" in capsys.readouterr().err
