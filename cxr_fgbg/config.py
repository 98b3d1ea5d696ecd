"""The YAML configuration: one file, one section per pipeline stage, validated by pydantic.

An unknown or mistyped key is an error that names the key and the file; `--set key.sub=value`
overrides (values parsed as YAML scalars) are applied before validation, so they are checked the
same way. Each stage defines its own section model next to its code (``*/settings.py``, light
modules with no heavy imports); this module only composes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from cxr_fgbg.attention.settings import LocalizeSettings
from cxr_fgbg.data.phantom.settings import PhantomSettings
from cxr_fgbg.data.settings import DataSettings
from cxr_fgbg.errors import ConfigError
from cxr_fgbg.evaluation.settings import EvaluateSettings
from cxr_fgbg.masks.settings import MaskSettings
from cxr_fgbg.models.settings import ModelSettings
from cxr_fgbg.paths_settings import PathsSettings
from cxr_fgbg.segmentation.settings import SegmentSettings
from cxr_fgbg.settings_base import StrictModel
from cxr_fgbg.training.settings import FinetuneSettings

__all__ = ["PipelineConfig", "apply_overrides", "deep_merge", "load_config", "parse_overrides"]


class PipelineConfig(StrictModel):
    """The whole configuration. Every section has defaults, so an empty file is a valid config."""

    seed: int = Field(0, description="Master seed; every random draw derives from it.")
    threads: int | None = Field(
        None, ge=1,
        description="CPU threads for torch (None: torch's default). Small models run fastest on 1 thread.",
    )
    paths: PathsSettings = Field(default_factory=PathsSettings)
    phantom: PhantomSettings = Field(default_factory=PhantomSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    finetune: FinetuneSettings = Field(default_factory=FinetuneSettings)
    localize: LocalizeSettings = Field(default_factory=LocalizeSettings)
    masks: MaskSettings = Field(default_factory=MaskSettings)
    segment: SegmentSettings = Field(default_factory=SegmentSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)


def parse_overrides(items: Iterable[str]) -> list[tuple[list[str], Any]]:
    """Parse `key.sub=value` strings; the value is read as a YAML scalar or flow collection."""
    parsed = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: expected KEY.SUB=VALUE, e.g. --set finetune.steps=100")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        parsed.append((key.split("."), value))
    return parsed


def apply_overrides(data: dict[str, Any], overrides: Iterable[tuple[list[str], Any]]) -> dict[str, Any]:
    """Return a copy of `data` with each (path, value) set, creating intermediate mappings."""
    result: dict[str, Any] = _deep_copy(data)
    for path, value in overrides:
        node = result
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise ConfigError(f"--set {'.'.join(path)}: {where} is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
) -> PipelineConfig:
    """Read and validate a config file (or the defaults when `path` is None), with overrides.

    `base` is a mapping applied under the file (used by commands with their own defaults).
    """
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = _deep_copy(dict(base or {}))
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        try:
            loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: the top level must be a mapping of sections, got {type(loaded).__name__}")
        data = deep_merge(data, loaded)
    parsed = parse_overrides(overrides)
    data = apply_overrides(data, parsed)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source, bool(parsed))) from None


def dump_config(config: PipelineConfig) -> str:
    """The resolved config as YAML, written beside every stage's outputs for reproducibility."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _format_validation_error(exc: ValidationError, source: str, has_overrides: bool) -> str:
    lines = [f"invalid configuration in {source}" + (" (after --set overrides)" if has_overrides else "") + ":"]
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "<top level>"
        if error["type"] == "extra_forbidden":
            lines.append(f"  - {key}: unknown key (check the spelling; see docs/configuration.md)")
        else:
            lines.append(f"  - {key}: {error['msg']} (got {error.get('input')!r})")
    return "\n".join(lines)


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _deep_copy(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_deep_copy(value) for value in data]
    return data


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `update` merged in, section by section; neither input is modified."""
    merged = _deep_copy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = _deep_copy(value)
    return merged
