"""One rule for the model folder of every model-loading command: --model, else paths.model, else model.path."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_fgbg.cli.common import resolve_model_folder
from cxr_fgbg.config import load_config
from cxr_fgbg.errors import ConfigError


def test_flag_wins_then_paths_model_then_model_path(tmp_path: Path) -> None:
    a, b, c = (tmp_path / name for name in "abc")
    for folder in (a, b, c):
        folder.mkdir()
    both = load_config(None, [f"paths.model={b}", f"model.path={c}"])
    assert resolve_model_folder(a, both, None) == a
    assert resolve_model_folder(None, both, None) == b
    assert resolve_model_folder(None, load_config(None, [f"model.path={c}"]), None) == c


def test_missing_model_folder_errors_name_the_way_out(tmp_path: Path) -> None:
    expected = r"no model folder: pass --model DIR or set paths\.model or model\.path in the config"
    with pytest.raises(ConfigError, match=expected):
        resolve_model_folder(None, load_config(None, []), None)
    gone = tmp_path / "gone"
    with pytest.raises(ConfigError, match=r"paths.model = .*gone.*no such file or folder; pass --model"):
        resolve_model_folder(None, load_config(None, [f"paths.model={gone}"]), None)


def test_refine_and_synthesize_never_fall_back_to_the_base_model(tmp_path: Path) -> None:
    base, tuned = tmp_path / "sd", tmp_path / "fgbg"
    base.mkdir()
    tuned.mkdir()
    fine_tuned_only = ("model.path",)
    with pytest.raises(ConfigError, match=r"no model folder for --method inpaint: pass --model DIR or set model\.path"):
        resolve_model_folder(None, load_config(None, [f"paths.model={base}"]), None, purpose="for --method inpaint",
                             keys=fine_tuned_only)
    both = load_config(None, [f"paths.model={base}", f"model.path={tuned}"])
    assert resolve_model_folder(None, both, None, keys=fine_tuned_only) == tuned
