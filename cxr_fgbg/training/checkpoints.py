"""Crash-safe training checkpoints: accelerate state written to a temporary folder, then renamed.

A checkpoint folder `checkpoint-{step}` exists only once every file of it is written (the rename is
the last act, and `training_state.json` inside it is written just before), so a run killed at any
moment leaves either a complete checkpoint or a `.tmp-checkpoint-*` folder that resume ignores and
the next save removes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from cxr_fgbg.io import write_json_atomic

__all__ = ["STATE_FILE", "latest_checkpoint", "list_checkpoints", "load_checkpoint", "save_checkpoint"]

LOG = logging.getLogger(__name__)
STATE_FILE = "training_state.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint-"


def list_checkpoints(root: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """Complete checkpoints under `root` as (step, folder), oldest first; temporary folders ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: str | os.PathLike[str]) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def save_checkpoint(
    accelerator: Any, root: str | os.PathLike[str], step: int, state: dict[str, Any], keep: int
) -> Path:
    """Write the accelerate state of every process to `root/checkpoint-{step}` atomically; keep the newest `keep`.

    Every process must call this (accelerate writes per-process RNG states).
    """
    root = Path(root)
    tmp = root / f"{_TMP_PREFIX}{step}"
    final = root / f"checkpoint-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json_atomic(tmp / STATE_FILE, {**state, "step": step})
        _fsync_tree(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(root, keep)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Restore the accelerate state (models, optimizer, registered objects, RNG) and return the step record."""
    folder = Path(folder)
    accelerator.load_state(str(folder))
    return json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))


def _prune(root: Path, keep: int) -> None:
    for _, folder in list_checkpoints(root)[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)
    for child in root.iterdir():
        if child.name.startswith(_TMP_PREFIX):
            LOG.info("removing an incomplete checkpoint left by an interrupted run: %s", child)
            shutil.rmtree(child, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    """Flush the files to disk before the rename makes the checkpoint visible."""
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
