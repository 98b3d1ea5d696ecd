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
