"""One place that configures logging for the command line; the library only calls `getLogger`."""

from __future__ import annotations

import logging

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(verbosity: int = 0) -> None:
    """0: warnings and our INFO lines; 1 (-v): debug for cxr_fgbg; 2 (-vv): debug for everything."""
    root_level = logging.DEBUG if verbosity >= 2 else logging.WARNING
    logging.basicConfig(level=root_level, format=_FORMAT, datefmt="%H:%M:%S", force=True)
    logging.getLogger("cxr_fgbg").setLevel(logging.DEBUG if verbosity >= 1 else logging.INFO)
