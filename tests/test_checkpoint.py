"""Checkpoints (safetensors + JSON) and the training configuration's round trips."""

from __future__ import annotations

import json

import pytest
import torch

from semfield.errors import SemfieldError
from semfield.field import FieldConfig, HeadConfig
from semfield.train.checkpoint import CHECKPOINT, STATE, load_checkpoint, save_checkpoint
from semfield.train.config import TrainConfig


def _tensors():
    torch.manual_seed(0)
    return {"grid.density.values": torch.randn(7, 1), "grid.color.adam": torch.randn(5, 9),
            "module.w": torch.randn(3, 4).t(),  # non-contiguous
            "steps": torch.arange(4, dtype=torch.int64)}


def test_checkpoint_round_trip(tmp_path):
    tensors = _tensors()
    state = {"iteration": 12, "voxel": 0.05, "layout": {"outer_aabb": [[-1, -1, -1], [1, 1, 1]]}}
    save_checkpoint(tmp_path, tensors, state)
    assert (tmp_path / CHECKPOINT).exists() and (tmp_path / STATE).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CHECKPOINT, STATE])  # no temporaries left
    got, got_state = load_checkpoint(tmp_path)
    assert got_state == state
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype
        torch.testing.assert_close(got[k], v, rtol=0, atol=0)


def test_checkpoint_overwrite_replaces(tmp_path):
    save_checkpoint(tmp_path, {"a": torch.zeros(2)}, {"i": 1})
    save_checkpoint(tmp_path, {"a": torch.ones(3)}, {"i": 2})
    got, state = load_checkpoint(tmp_path)
    assert state == {"i": 2} and got["a"].tolist() == [1.0, 1.0, 1.0]


def test_missing_checkpoint_raises(tmp_path):
    with pytest.raises(SemfieldError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    save_checkpoint(tmp_path, {"a": torch.zeros(2)}, {"i": 1})
    (tmp_path / CHECKPOINT).unlink()  # state without tensors is no checkpoint either
    with pytest.raises(SemfieldError, match="no checkpoint"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_corrupt_safetensors_names_the_file(tmp_path, damage):
    save_checkpoint(tmp_path, _tensors(), {"i": 1})
    ck = tmp_path / CHECKPOINT
    data = ck.read_bytes()
    ck.write_bytes({"garbage": b"\x00not a safetensors file" * 10, "truncated": data[: len(data) // 2],
                    "empty": b""}[damage])
    with pytest.raises(SemfieldError) as err:
        load_checkpoint(tmp_path)
    assert err.value.path == ck
    assert str(ck) in str(err.value) and "\n" not in str(err.value)


def test_corrupt_state_json_names_the_file(tmp_path):
    save_checkpoint(tmp_path, _tensors(), {"i": 1})
    (tmp_path / STATE).write_text("{not json", encoding="utf-8")
    with pytest.raises(SemfieldError) as err:
        load_checkpoint(tmp_path)
    assert err.value.path == tmp_path / STATE and "\n" not in str(err.value)


# ----- TrainConfig --------------------------------------------------------------------------------------
def _config() -> TrainConfig:
    cfg = TrainConfig(seed=3, iterations=77, max_seconds=12.5, coarse_to_fine=[(0.0, 4.0), (0.5, 1.0)],
                      field=FieldConfig(focus_voxel=0.02, color_channels=8,
                                        heads={"clip": HeadConfig(dim=512, latent=32), "dino": HeadConfig(dim=3)}))
    cfg.render.heads = ("clip", "dino")
    return cfg


@pytest.mark.parametrize("make", [TrainConfig, _config])
def test_train_config_dict_round_trip(make):
    cfg = make()
    d = cfg.to_dict()
    back = TrainConfig.from_dict(d)
    assert back == cfg
    assert back.to_dict() == d
    assert isinstance(back.field, FieldConfig) and isinstance(back.render.heads, tuple)
    assert all(isinstance(h, HeadConfig) for h in back.field.heads.values())
    assert all(isinstance(s, tuple) for s in back.coarse_to_fine)


@pytest.mark.parametrize("make", [TrainConfig, _config])
def test_train_config_json_round_trip(make, tmp_path):
    cfg = make()
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg.to_dict(), indent=2), encoding="utf-8")
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == cfg.to_dict()
    assert TrainConfig.from_dict(saved, path) == cfg
    assert cfg.same_learning(saved)


def test_same_learning():
    cfg = _config()
    saved = cfg.to_dict()
    other = _config()
    other.iterations, other.max_seconds, other.threads = 5000, None, 2
    assert other.same_learning(saved)
    other = _config()
    other.field.color_channels = 16
    assert not other.same_learning(saved)
    other = _config()
    other.lr_grid = 0.3
    assert not other.same_learning(saved)
    other = _config()
    other.lr_heads = 0.1
    assert other.learning_differences(saved) == ["lr_heads"]


def test_unknown_keys_raise():
    d = TrainConfig().to_dict()
    with pytest.raises(SemfieldError, match="unknown training settings: bogus"):
        TrainConfig.from_dict({**d, "bogus": 1}, "run/config.json")
    bad_field = {**d, "field": {**d["field"], "not_a_field_setting": 2}}
    with pytest.raises(SemfieldError) as err:
        TrainConfig.from_dict(bad_field, "run/config.json")
    assert "run/config.json" in str(err.value)
    bad_render = {**d, "render": {**d["render"], "nope": 1}}
    with pytest.raises(SemfieldError):
        TrainConfig.from_dict(bad_render)
    bad_head = {**d, "field": {**d["field"], "heads": {"x": {"dim": 3, "width": 4}}}}
    with pytest.raises(SemfieldError):
        TrainConfig.from_dict(bad_head)
