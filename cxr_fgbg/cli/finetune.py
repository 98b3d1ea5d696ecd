"""`cxr-fgbg finetune`: fine-tune a local diffusion model folder on report impressions or with the fg/bg objective."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, resolve_model_folder, set_option

FINETUNE_HELP = (
    "Fine-tune a latent diffusion model (a local Stable-Diffusion-layout folder) on image/text pairs.\n\n"
    "Default (finetune.objective=impression): RoentGen-style training on the 'train' rows of an index "
    "folder (cxr-fgbg index), conditioned on each study's report text. With finetune.objective=fgbg: the "
    "foreground/background objective on a concept CSV (--concepts) of images with preliminary masks.\n\n"
    "Writes OUT/checkpoints/checkpoint-STEP/ every finetune.checkpoint_every steps, OUT/loss.csv, "
    "OUT/config.yaml, OUT/run.json and, at the end, the fine-tuned model OUT/model/ (a diffusers folder). "
    "If the run stops, the same command with --resume continues from the last checkpoint. "
    "On several GPUs or nodes, start it with `accelerate launch -m cxr_fgbg.cli.app finetune ...` "
    "(see docs/finetuning.md)."
)


def finetune(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (checkpoints, loss.csv, model/).", file_okay=False
    ),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="The model folder to start from (default: paths.model, else model.path in the "
        "config).",
        file_okay=False,
    ),
    index: Path | None = typer.Option(
        None, "--index", help="Index folder with studies.csv and index.json (objective impression).", file_okay=False
    ),
    concepts: Path | None = typer.Option(
        None, "--concepts", help="Concept CSV: image_path, mask_path and prompt or concept (objective fgbg).",
        dir_okay=False,
    ),
    image_root: Path | None = typer.Option(
        None, "--image-root", help="Folder the concept CSV's image paths are relative to (default: from "
        "index.json beside the CSV, else the CSV's folder).", file_okay=False,
    ),
    mask_root: Path | None = typer.Option(
        None, "--mask-root", help="Folder the concept CSV's mask paths are relative to (default: the CSV's folder).",
        file_okay=False,
    ),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Optimiser steps (overrides finetune.steps)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in OUT."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.errors import ConfigError
    from cxr_fgbg.io import SkippedLog
    from cxr_fgbg.training.loop import finetune as run_finetune
    from cxr_fgbg.training.loop import load_model_folder
    from cxr_fgbg.training.sources import concept_dataset, impression_dataset, latent_grid

    cfg = load_cli_config(config, [*overrides, *([f"finetune.steps={steps}"] if steps else [])])
    settings = cfg.finetune
    model_dir = resolve_model_folder(model, cfg, config)
    pipeline = load_model_folder(model_dir)
    size = settings.resolution or int(pipeline.vae.config.sample_size)
    channels = int(pipeline.vae.config.in_channels)
    seed = settings.seed if settings.seed is not None else cfg.seed
    skipped = SkippedLog(out / "skipped.csv")
    if settings.objective == "impression":
        if index is None:
            raise ConfigError("finetune.objective=impression needs --index DIR (the output of cxr-fgbg index)")
        dataset = impression_dataset(
            index, pipeline.tokenizer, size, channels, cfg.data.preprocess.intensity_percentiles,
            cfg.data.preprocess.cache_dir, skipped=skipped,
        )
    else:
        if concepts is None:
            raise ConfigError("finetune.objective=fgbg needs --concepts CSV (image_path, mask_path, prompt/concept)")
        dataset = concept_dataset(
            concepts, pipeline.tokenizer, size, channels, latent_grid(pipeline, size), settings, seed,
            str(image_root) if image_root else None, str(mask_root) if mask_root else None, skipped,
        )
    del pipeline
    skipped.write()  # identical on every process; written atomically
    if len(skipped):
        typer.echo(f"skipped {len(skipped)} row(s), see {skipped.path}")
    result = run_finetune(
        settings, model_dir, out, dataset, seed=seed, resume=resume, config_text=dump_config(cfg),
    )
    typer.echo(f"fine-tuned model: {result.model_dir}\nloss log: {result.loss_csv}")


def register(app: typer.Typer) -> None:
    app.command("finetune", help=FINETUNE_HELP)(finetune)
