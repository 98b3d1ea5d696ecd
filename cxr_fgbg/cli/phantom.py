"""`cxr-fgbg phantom`: write the built-in MIMIC-CXR / MS-CXR-shaped phantom dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, set_option


def register(app: typer.Typer) -> None:
    @app.command("phantom")
    def phantom(
        out: Path = typer.Argument(..., help="Output folder (created if missing)."),
        studies: int | None = typer.Option(
            None, "--studies", "-n", help="Number of studies (default: config phantom.studies)."
        ),
        seed: int | None = typer.Option(
            None, "--seed", help="Seed; the same seed gives identical files (default: config phantom.seed)."
        ),
        size: int | None = typer.Option(None, "--size", help="Longer image side, pixels (config phantom.size)."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
        config: Path | None = config_option(),
        overrides: list[str] = set_option(),
    ) -> None:
        """Generate a synthetic chest X-ray dataset laid out like MIMIC-CXR and MS-CXR.

        It writes DICOM images and free-text reports (OUT/mimic-cxr), MS-CXR-style boxes for every
        finding (OUT/ms-cxr) and the exact lesion mask of every finding (OUT/ground-truth), so the
        whole pipeline can be tried and scored without access to patient data. See docs/phantom.md.
        """
        from cxr_fgbg.data.phantom import generate_phantom

        cfg = load_cli_config(config, overrides)
        settings = cfg.phantom
        run_seed = seed if seed is not None else (settings.seed if settings.seed is not None else cfg.seed)
        summary = generate_phantom(
            out, studies=studies if studies is not None else settings.studies, seed=run_seed,
            size=size if size is not None else settings.size, progress=progress, settings=settings,
        )
        typer.echo(summary.format())
