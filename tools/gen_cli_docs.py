"""Write docs/cli.md from the command definitions, so the reference never drifts from the code.

Run: `.venv/bin/python tools/gen_cli_docs.py` (tests/test_cli_docs.py checks the file is current).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import typer

HEADER = """# Command reference

Generated from the code by `tools/gen_cli_docs.py`; do not edit by hand.
The typical order on MIMIC-CXR: `index` -> `finetune` -> `localize` -> `evaluate` -> `refine` -> `segment`.

Every command takes `--config FILE` (YAML, see [configuration.md](configuration.md)) and
`--set KEY.SUB=VALUE` overrides where it reads configuration; `cxr-fgbg -v ...` logs more.
Errors in input files or configuration print one line naming the file, row or key, and exit with status 2.
"""


def _option_rows(command: Any) -> list[str]:
    rows = []
    for param in command.params:
        if param.name == "help":
            continue
        if param.param_type_name == "argument":
            name = f"`{(param.metavar or param.name).upper()}`"
            help_text = getattr(param, "help", None) or "(argument)"
        else:
            name = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
            help_text = param.help or ""
        default = param.default
        shown = "" if default in (None, (), [], False) or callable(default) else f" (default: `{default}`)"
        rows.append(f"| {name} | {' '.join(help_text.split())}{shown} |")
    return rows


def _render(command: Any, path: list[str], lines: list[str]) -> None:
    title = " ".join(path)
    lines.append(f"\n## `{title}`\n" if len(path) == 2 else f"\n### `{title}`\n")
    lines.append(inspect.cleandoc(command.help or command.short_help or "").strip() + "\n")
    if hasattr(command, "commands"):  # a group (typer vendors its own click classes)
        for name, sub in sorted(command.commands.items()):
            _render(sub, [*path, name], lines)
        return
    rows = _option_rows(command)
    if rows:
        lines.extend(["| option | meaning |", "|---|---|", *rows])


def render() -> str:
    from cxr_fgbg.cli.app import app

    root = typer.main.get_command(app)
    lines = [HEADER]
    for name, command in root.commands.items():
        _render(command, ["cxr-fgbg", name], lines)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    target = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
