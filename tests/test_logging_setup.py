"""The CLI's log handler follows sys.stderr, so a swapped-then-closed stream never breaks later log lines."""

from __future__ import annotations

import io
import logging
import os
import sys

from cxr_fgbg.logging_setup import configure_logging


def _restore_library_verbosity(monkeypatch) -> None:
    """configure_logging(0) sets these; monkeypatch puts them back as they were after the test."""
    for variable in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        monkeypatch.delenv(variable, raising=False)


def test_log_lines_follow_the_current_stderr_after_the_old_one_is_closed(monkeypatch) -> None:
    _restore_library_verbosity(monkeypatch)
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging(0)
    logging.getLogger("cxr_fgbg.test").warning("first line")
    assert "first line" in first.getvalue()
    first.close()  # what typer's test runner does with its captured stream

    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("cxr_fgbg.test").warning("second line")
    assert "WARNING" in second.getvalue() and "cxr_fgbg.test: second line" in second.getvalue()


def test_verbosity_levels(monkeypatch) -> None:
    _restore_library_verbosity(monkeypatch)
    configure_logging(0)
    assert logging.getLogger("cxr_fgbg").level == logging.INFO and logging.getLogger().level == logging.WARNING
    configure_logging(2)
    assert logging.getLogger("cxr_fgbg").level == logging.DEBUG and logging.getLogger().level == logging.DEBUG
    configure_logging(0)


def test_library_chatter_is_quiet_by_default_and_a_user_setting_wins(monkeypatch) -> None:
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    monkeypatch.setenv("DIFFUSERS_VERBOSITY", "info")
    configure_logging(0)
    assert os.environ["TRANSFORMERS_VERBOSITY"] == "error" and os.environ["DIFFUSERS_VERBOSITY"] == "info"
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY")
    configure_logging(1)
    assert "TRANSFORMERS_VERBOSITY" not in os.environ
