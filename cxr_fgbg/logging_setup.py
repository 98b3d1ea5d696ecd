"""One place that configures logging for the command line; the library only calls `getLogger`."""

from __future__ import annotations

import logging
import os
import sys

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time.

    A handler that kept the stream it was created with would write to a closed stream once that stream is swapped
    back (a notebook cell, typer's test runner), and every later log line would fail with "I/O operation on closed
    file".
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(verbosity: int = 0) -> None:
    """0: warnings and our INFO lines; 1 (-v): debug for cxr_fgbg; 2 (-vv): debug for everything."""
    root_level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    handler = _CurrentStderrHandler()
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    logging.basicConfig(level=root_level, handlers=[handler], force=True)
    logging.getLogger("cxr_fgbg").setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
    if verbosity == 0:
        # transformers and diffusers warn on every model load about optional back-ends (torchvision) and
        # dtype hints that say nothing about the user's data; -v shows them. Read when they are first imported,
        # which the commands do lazily, after this; a value the user exported wins.
        for variable in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
            os.environ.setdefault(variable, "error")
