"""`cxr-fgbg localize`: disease heat maps (M-hat) and preliminary masks for every MS-CXR sample."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, resolve_model_folder, set_option

LOCALIZE_HELP = (
    "Read a disease heat map for every MS-CXR sample from the diffusion model's cross-attention.\n\n"
    "For each sample the image is noised at 40 noise levels (the paper's default; --fast uses 5) and the "
    "attention of the finding's words (e.g. 'pleural', 'effusion' for Pleural Effusion) is summed. "
    "The map is written in the original image's pixels, with a preliminary mask (Gaussian mixture "
    "threshold) and the MS-CXR boxes, to OUT/maps/SAMPLE.npz, indexed by OUT/heatmaps.csv. Samples whose "
    "prompt lacks the finding's words, or whose image cannot be read, are listed in OUT/skipped.csv. "
    "Rerunning keeps the maps already written.\n\n"
    "A natural-image index (`cxr-fgbg index-natural`) works the same way: the attention of the concept word "
    "(e.g. 'bird') in each sample's prompt ('a photo of a bird') is read.\n\n"
    "Example: cxr-fgbg localize --model models/roentgen --index index/ --out heatmaps/ --prompt phrase"
)


def localize(
    model: Path | None = typer.Option(
        None, "--model", "-m", help="The diffusion model: a diffusers folder (default: paths.model, else model.path "
        "in the config).", file_okay=False,
    ),
    index: Path = typer.Option(..., "--index", "-i", help="Folder written by `cxr-fgbg index` (ms_cxr.csv) or by "
                               "`cxr-fgbg index-natural` (samples.csv).",
                               file_okay=False),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (maps/, heatmaps.csv, skipped.csv)."),
    prompt: str | None = typer.Option(
        None, "--prompt", help="phrase: the MS-CXR phrase of the box (default); impression: the report's impression.",
    ),
    fast: bool = typer.Option(False, "--fast", help="A handful of noise levels instead of 40: quick, coarser maps."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N samples (a trial run)."),
    nifti: bool | None = typer.Option(None, "--nifti/--no-nifti", help="Also write NIfTI heat maps."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    from cxr_fgbg.attention.batch import localize_index
    from cxr_fgbg.attention.localizer import Localizer
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.errors import ConfigError
    from cxr_fgbg.io import write_text_atomic

    full = load_cli_config(config, overrides)
    model = resolve_model_folder(model, full, config)
    settings = full.localize
    if prompt is not None:
        if prompt not in ("phrase", "impression"):
            raise ConfigError(f"--prompt {prompt!r}: use phrase or impression")
        settings.prompt = prompt
    if fast:
        settings.preset = "fast"
    if nifti is not None:
        settings.nifti = nifti
    localizer = Localizer(model, full)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_config(full))
    summary = localize_index(localizer, index, out, limit=limit, progress=not no_progress)
    typer.echo(
        f"{summary.computed} heat maps written, {summary.kept} kept from an earlier run, "
        f"{summary.skipped} skipped (see {out / 'skipped.csv'}); {summary.empty_masks} empty preliminary masks"
    )
    for reason, count in sorted(summary.skip_reasons.items(), key=lambda kv: -kv[1])[:5]:
        typer.echo(f"  skipped {count}: {reason}")


def register(app: typer.Typer) -> None:
    app.command("localize", help=LOCALIZE_HELP)(localize)
