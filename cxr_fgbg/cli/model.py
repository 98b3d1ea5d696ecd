"""`cxr-fgbg model`: build the tiny phantom model bundle, and inspect any local model folder."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, set_option

model_app = typer.Typer(
    help=(
        "The latent diffusion model: build the small bundle used with the phantom (build), or check a local "
        "model folder such as Stable Diffusion, RoentGen or one of ours (info)."
    ),
    no_args_is_help=True,
)


@model_app.command("build")
def build(
    index: Path = typer.Option(
        ..., "--index", "-i", file_okay=False,
        help="Index folder written by `cxr-fgbg index` (studies.csv, index.json).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Model folder to create (diffusers layout)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle in --out."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bars."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    """Build the small model bundle from the TRAINING studies of an index.

    Trains a tokenizer on the training impressions, pre-trains a small text encoder on them (text only)
    and freezes it, trains a small image autoencoder on the training images and measures its
    reconstruction error on the validation images; the diffusion U-Net starts random (`cxr-fgbg finetune`
    trains it). Sizes and steps come from the `model` section of the config.

    Example: cxr-fgbg model build --index index/ --out models/tiny --set model.vae_training.steps=100
    """
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.io import write_text_atomic
    from cxr_fgbg.models.bundle import build_bundle

    full = load_cli_config(config, overrides)
    report = build_bundle(
        index, out, full.model, seed=full.seed, progress=not no_progress,
        percentiles=full.data.preprocess.intensity_percentiles, overwrite=overwrite,
    )
    if not report.reused:
        write_text_atomic(out / "config.yaml", dump_config(full))
    vae = report.vae["after"]
    text = report.text_pretraining
    lines = [
        f"model bundle {'kept (already built)' if report.reused else 'written'}: {out}",
        f"  training studies: {report.train_texts} texts, {report.train_images} images",
        f"  tokenizer: {report.vocab_size} tokens; disease words split into sub-words: "
        + ", ".join(f"{w} ({len(p)})" for w, p in report.disease_word_pieces.items()),
        f"  text encoder pre-training: {text['mode']}"
        + (f", masked-word loss {text['loss_before']:.2f} -> {text['loss_after']:.2f}" if text["loss_after"] else ""),
        f"  autoencoder reconstruction on {report.validation_images} {report.validation_source} images: "
        f"MSE {vae['mse']:.5f}, PSNR {vae['psnr']:.1f} dB (untrained: {report.vae['before']['psnr']:.1f} dB)",
        f"  skipped images: {report.skipped_images} (see skipped.csv)",
    ]
    typer.echo("\n".join(lines))


@model_app.command("info")
def info(
    folder: Path = typer.Argument(..., help="A local model folder (diffusers layout).", file_okay=False),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
) -> None:
    """Check a local model folder (Stable Diffusion 1.x/2.x, RoentGen, or ours) without loading weights.

    Reports the image channels and size, the text encoder width and the tokenizer, and stops with a clear
    message naming the component when one is missing or does not fit the others. Nothing is downloaded.
    """
    from cxr_fgbg.models.loading import inspect_model_folder

    described = inspect_model_folder(folder)
    data = described.as_dict()
    if described.bundle:
        data["bundle"] = {k: described.bundle.get(k) for k in ("seed", "text_encoder", "vae", "disease_word_pieces")}
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        typer.echo(f"{key}: {json.dumps(value) if isinstance(value, dict | list) else value}")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
