"""Options shared by every stage command (`--config`, `--set`) and the config loading they do."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from cxr_fgbg.config import PipelineConfig

CONFIG_HELP = "YAML config file (see configs/ and docs/configuration.md). Defaults apply to what it leaves out."
SET_HELP = "Override one config value, e.g. --set finetune.steps=200 (repeatable)."


def config_option() -> Path | None:
    return typer.Option(None, "--config", "-c", help=CONFIG_HELP, exists=False, dir_okay=False)


def set_option() -> list[str]:
    return typer.Option([], "--set", "-s", help=SET_HELP, metavar="KEY.SUB=VALUE")


def load_cli_config(config: Path | None, overrides: list[str] | None) -> PipelineConfig:
    from cxr_fgbg.config import load_config

    loaded = load_config(config, overrides or [])
    if loaded.threads is not None:
        import torch

        torch.set_num_threads(loaded.threads)
    return loaded


def resolve_model_folder(model: Path | None, cfg: PipelineConfig, config: Path | None, purpose: str = "") -> Path:
    """--model when given, else paths.model, else model.path: one rule for every command that loads a model.

    A folder from the config must exist; the error names the key, the config file and the flag. (A --model
    folder is checked by the model loader, which names the missing component.)
    """
    from cxr_fgbg.errors import ConfigError
    from cxr_fgbg.paths_settings import require_paths

    if model is not None:
        return model
    key = "model" if cfg.paths.model is not None else "model.path" if cfg.model.path is not None else None
    if key is None:
        needed = f" {purpose}" if purpose else ""
        raise ConfigError(f"no model folder{needed}: pass --model DIR or set paths.model (or model.path) in the config")
    return Path(require_paths(cfg, key, source=config, flags={key: "--model"})[key])
