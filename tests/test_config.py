"""The YAML config: defaults, overrides, and errors that name the key and the file."""

from __future__ import annotations

import pytest

from cxr_fgbg.config import PipelineConfig, apply_overrides, dump_config, load_config, parse_overrides
from cxr_fgbg.errors import ConfigError


def test_defaults_without_a_file():
    config = load_config(None)
    assert isinstance(config, PipelineConfig)
    assert config.seed == 0
    assert config.segment.steps == 12000  # the paper's protocol
    assert config.finetune.learning_rate == pytest.approx(5e-5)  # RoentGen


def test_file_values_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("seed: 7\nsegment:\n  batch_size: 8\n")
    config = load_config(path, ["segment.learning_rate=2e-3", "seed=11"])
    assert config.segment.batch_size == 8
    assert config.segment.learning_rate == pytest.approx(2e-3)
    assert config.seed == 11  # the override wins over the file


def test_unknown_key_names_the_key_and_the_file(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("segment:\n  btach_size: 8\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "segment.btach_size" in message
    assert str(path) in message
    assert "unknown key" in message


def test_unknown_section_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("segmentation:\n  steps: 3\n")
    with pytest.raises(ConfigError, match="segmentation: unknown key"):
        load_config(path)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"segment\.steps"):
        load_config(None, ["segment.steps=many"])


def test_out_of_range_value_is_an_error():
    with pytest.raises(ConfigError, match=r"segment\.batch_size"):
        load_config(None, ["segment.batch_size=0"])


def test_missing_file_and_non_mapping_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listing)


@pytest.mark.parametrize("item", ["noequals", "=3", "a..b=1", ".a=1"])
def test_malformed_override(item):
    with pytest.raises(ConfigError, match=r"KEY\.SUB=VALUE"):
        parse_overrides([item])


def test_override_values_are_yaml():
    parsed = dict((".".join(path), value) for path, value in parse_overrides(["a.b=1", "a.c=[1, 2]", "a.d=true"]))
    assert parsed == {"a.b": 1, "a.c": [1, 2], "a.d": True}


def test_apply_overrides_does_not_mutate_and_refuses_value_as_section():
    data = {"a": {"b": 1}}
    result = apply_overrides(data, [(["a", "c"], 2)])
    assert result == {"a": {"b": 1, "c": 2}}
    assert data == {"a": {"b": 1}}
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides(data, [(["a", "b", "c"], 2)])


def test_dump_round_trips(tmp_path):
    config = load_config(None, ["seed=5", "segment.crop_size=64"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config


def test_every_shipped_config_validates():
    from pathlib import Path

    configs = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
    for path in configs:
        if path.name.startswith("accelerate_"):
            continue  # accelerate's own format, validated by accelerate
        load_config(path)
