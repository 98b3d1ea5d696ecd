"""docs/cli.md and docs/config-reference.md are generated from the code; they must match it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _generator(name: str = "gen_cli_docs"):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_current():
    expected = _generator().render()
    actual = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/cli.md is stale: run .venv/bin/python tools/gen_cli_docs.py"


def test_every_command_is_documented():
    import typer

    from cxr_fgbg.cli.app import app

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name in typer.main.get_command(app).commands:
        assert f"## `cxr-fgbg {name}`" in text


def test_config_reference_is_current():
    expected = _generator("gen_config_docs").render()
    actual = (ROOT / "docs" / "config-reference.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/config-reference.md is stale: run .venv/bin/python tools/gen_config_docs.py"
    assert "`finetune.learning_rate`" in actual and "`segment.steps`" in actual
