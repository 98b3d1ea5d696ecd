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


def resolve_model_folder(
    model: Path | None, cfg: PipelineConfig, config: Path | None, purpose: str = "",
    keys: tuple[str, ...] = ("model", "model.path"),
) -> Path:
    """--model when given, else the first of `keys` that the config sets: one rule for the stage commands.

    `model` is paths.model (the folder to fine-tune or localise with), `model.path` the model section's folder.
    Commands that need a fine-tuned model (refine, synthesize) pass `keys=("model.path",)`: paths.model names
    the base model in the shipped configs, and inpainting with it would quietly give wrong masks. A folder from
    the config must exist; the error names the key, the config file and the flag. (A --model folder is checked
    by the model loader, which names the missing component.)
    """
    from cxr_fgbg.errors import ConfigError
    from cxr_fgbg.paths_settings import require_paths

    if model is not None:
        return model
    values = {"model": cfg.paths.model, "model.path": cfg.model.path}
    key = next((k for k in keys if values[k] is not None), None)
    if key is None:
        needed = f" {purpose}" if purpose else ""
        named = " or ".join("paths.model" if k == "model" else k for k in keys)
        raise ConfigError(f"no model folder{needed}: pass --model DIR or set {named} in the config")
    return Path(require_paths(cfg, key, source=config, flags={key: "--model"})[key])
