"""The root of the `cxr-fgbg` command: help, version, and how errors reach the user."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from cxr_fgbg import __version__
from cxr_fgbg.cli.app import app

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"cxr-fgbg {__version__}"


def test_help_lists_the_pipeline_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("phantom", "demo"):
        assert command in result.stdout


def test_config_error_is_one_line_and_exit_status_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("phantom:\n  studeis: 3\n")
    completed = subprocess.run(
        [sys.executable, "-m", "cxr_fgbg.cli.app", "demo", "--out", str(tmp_path / "o"), "--config", str(bad)],
        capture_output=True, text=True,
    )
    assert completed.returncode == 2
    assert "phantom.studeis: unknown key" in completed.stderr
    assert str(bad) in completed.stderr
    assert "Traceback" not in completed.stderr
