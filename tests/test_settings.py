"""Training settings from files and --set: user-named mappings (teachers, heads) survive a round trip."""

from __future__ import annotations

import json

import pytest

from semfield.errors import SemfieldError
from semfield.field.grid_field import HeadConfig
from semfield.settings import apply_overrides, read_config_file
from semfield.train.config import TrainConfig


def test_a_runs_config_with_teachers_and_heads_reads_back_equal(tmp_path):
    config = TrainConfig(iterations=42, teachers={"label": {"kind": "label"},
                                                  "dino": {"kind": "dinov2", "input_size": 224}},
                         instance={"masks": {"kind": "simulated"}, "dim": 8})
    heads = {"dino": HeadConfig(dim=384, latent=32), "label": HeadConfig(dim=384, latent=32, loss="cosine",
                                                                         centre=False)}
    config = apply_overrides(config, {"field.heads": {k: v.__dict__ for k, v in heads.items()}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"scene": "x", "train": config.to_dict()}))  # as a run folder saves it
    back = read_config_file(path)
    assert back.to_dict() == config.to_dict()
    assert back.teachers["dino"] == {"kind": "dinov2", "input_size": 224}
    assert back.field.heads["label"].loss == "cosine"
    assert back.instance == {"masks": {"kind": "simulated"}, "dim": 8}


def test_unknown_top_level_settings_still_fail(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"teachers": {"label": {"kind": "label"}}, "no_such": 1}))
    with pytest.raises(SemfieldError, match="no_such"):
        read_config_file(path)


def test_bounds_settings_round_trip_and_refuse_bad_boxes(tmp_path):
    config = apply_overrides(TrainConfig(), {"bounds.focus": [[0, 0, 0], [1, 2, 1]], "bounds.mode": "cameras"})
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"scene": "x", "train": config.to_dict()}))
    back = read_config_file(path)
    assert back.bounds.focus == [[0.0, 0.0, 0.0], [1.0, 2.0, 1.0]] and back.bounds.mode == "cameras"
    assert back.to_dict() == config.to_dict()
    for key, value, words in (("bounds.mode", "gt", "bounds.mode must be one of auto, cameras"),
                              ("bounds.focus", [[0, 0, 0], [1, 1]], "bounds.focus must be"),
                              ("bounds.outer", [[0, 0, 0], [1, -1, 1]], "min < max"),
                              ("bounds.pass_iterations", 0, ">= 1")):
        with pytest.raises(SemfieldError, match="bad training settings") as err:
            apply_overrides(TrainConfig(), {key: value})
        assert words in str(err.value)
