"""Config section `paths`: where the local data sets and the model folder live on this machine.

Kept apart from the stage settings so one file can name the data once and every command (`index`,
`index-natural`, `finetune`, `localize`) falls back to it when its flag is not given. Values may use
`${ENV_VAR}` and `~`, so a shipped config can point at `${MIMIC_CXR_ROOT}` and each site exports its own
location. This module stays light (no heavy imports): the CLI imports it for `--help`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from cxr_fgbg.errors import ConfigError
from cxr_fgbg.settings_base import StrictModel

__all__ = ["PathsSettings", "expand_path", "require_paths"]

_UNSET_VAR = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


class PathsSettings(StrictModel):
    """Local folders and files; `${ENV_VAR}` and `~` are expanded. A command's own flag always wins."""

    mimic_root: str | None = Field(
        None,
        description="MIMIC-CXR or MIMIC-CXR-JPG folder holding files/ and the mimic-cxr-2.0.0-*.csv tables "
        "(`cxr-fgbg index --mimic`).",
    )
    reports_root: str | None = Field(
        None,
        description="Folder holding files/pXX/pSUBJECT/sSTUDY.txt when the reports are not under mimic_root, "
        "e.g. MIMIC-CXR's reports beside MIMIC-CXR-JPG (`cxr-fgbg index --reports`).",
    )
    ms_cxr_csv: str | None = Field(
        None,
        description="MS-CXR annotations, MS_CXR_Local_Alignment_v1.x.0.csv (`cxr-fgbg index --ms-cxr`).",
    )
    natural_root: str | None = Field(
        None, description="A natural-image data set's folder as downloaded (`cxr-fgbg index-natural --root`)."
    )
    natural_dataset: str | None = Field(
        None,
        description="Its layout: folder, cub, dogs, cars or h36m (`cxr-fgbg index-natural --dataset`).",
    )
    model: str | None = Field(
        None,
        description="Local diffusers folder to fine-tune or localise with: Stable Diffusion, RoentGen or a "
        "fine-tuned model/ (`--model` of finetune and localize; wins over model.path).",
    )
    work_dir: str | None = Field(
        None,
        description="Folder for this project's outputs (index, runs, heat maps). Recorded for scripts, "
        "notebooks and docs/real-data.md; the commands still take an explicit --out.",
    )


def expand_path(value: str) -> Path:
    """`~` and `${ENV_VAR}` expanded; raises ValueError naming a variable that is not set."""
    expanded = os.path.expanduser(os.path.expandvars(value))
    leftover = _UNSET_VAR.search(expanded)
    if leftover:
        raise ValueError(f"environment variable {leftover.group(1)} is not set")
    return Path(expanded)


def _lookup(config: Any, name: str) -> tuple[str, Any]:
    """(dotted key, raw value): a bare name is a key of `paths`; a dotted one is walked from the top."""
    key = name if "." in name else f"paths.{name}"
    node: Any = config
    for part in key.split("."):
        node = node.get(part) if isinstance(node, Mapping) else getattr(node, part, None)
    return key, node


def require_paths(
    config: Any,
    *names: str,
    source: str | os.PathLike[str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """The named paths of `config`, expanded; each must be set and exist.

    A name is a key of the `paths` section (`mimic_root`) or a dotted key (`model.path`). `source` is the
    config file named in the error; `flags` maps a name to the command-line flag that could give it
    instead (`{"mimic_root": "--mimic"}`), so the message tells both ways out.
    """
    where = f"config {source}" if source is not None else "the configuration (no --config file)"
    found: dict[str, Path] = {}
    for name in names:
        key, raw = _lookup(config, name)
        flag = (flags or {}).get(name)
        remedy = (f"pass {flag} or " if flag else "") + f"set {key} in the config (or --set {key}=PATH)"
        if raw is None or str(raw).strip() == "":
            raise ConfigError(f"{key} is not set in {where}: {remedy}")
        try:
            path = expand_path(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{key} = {raw!r} in {where}: {exc}; export it or {remedy}") from None
        if not path.exists():
            shown = repr(str(raw)) + (f" (= {path})" if str(path) != str(raw) else "")
            raise ConfigError(f"{key} = {shown} in {where}: no such file or folder; {remedy}")
        found[name] = path
    return found
