"""`cxr-fgbg demo`: the whole chain on the built-in phantom."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, set_option


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(Path("demo-output"), "--out", "-o", help="Folder for every stage's outputs."),
        quick: bool = typer.Option(False, "--quick", help="A small, fast run (about 3 minutes on 2 CPU cores)."),
        config: Path | None = config_option(),
        overrides: list[str] = set_option(),
    ) -> None:
        """Run the whole pipeline on the built-in phantom dataset and write a report.

        Generates a MIMIC-CXR-shaped phantom with exact ground truth, then runs every stage on it.
        Rerunning with the same --out resumes: finished stages are skipped.
        """
        from cxr_fgbg.demo import run_demo

        run_demo(out, load_cli_config(config, overrides), quick=quick, echo=typer.echo)
