"""Root of the `cxr-fgbg` command: global options, error handling and command discovery."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from cxr_fgbg import __version__
from cxr_fgbg.logging_setup import configure_logging

# The order commands are listed in `--help`: the pipeline's order. Modules not named here come last.
COMMAND_ORDER = (
    "phantom", "index", "index_natural", "model", "finetune", "localize", "analyze",
    "evaluate", "refine", "synthesize", "segment", "demo",
)

app = typer.Typer(
    name="cxr-fgbg",
    help=(
        "Turn a text-to-image latent diffusion model into a localiser and segmenter without pixel labels.\n\n"
        "Typical chest X-ray workflow: index MIMIC-CXR and MS-CXR (index), fine-tune a diffusion model on "
        "report impressions (finetune), read disease heat maps from its cross-attention (localize), score "
        "them against the MS-CXR boxes (evaluate), then refine masks and train a U-Net (refine, segment). "
        "`cxr-fgbg demo` runs all of it on a built-in phantom dataset."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cxr-fgbg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (-v, -vv)."),
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    configure_logging(verbose)


def _discover_commands() -> None:
    import cxr_fgbg.cli as package

    names = [info.name for info in pkgutil.iter_modules(package.__path__) if info.name not in {"app", "common"}]
    names.sort(key=lambda name: (COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER), name))
    for name in names:
        module = importlib.import_module(f"cxr_fgbg.cli.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(app)


_discover_commands()


def main() -> None:
    """Console-script entry point: library errors become a one-line message and exit status 2."""
    from cxr_fgbg.errors import CxrFgbgError

    try:
        app()
    except CxrFgbgError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
