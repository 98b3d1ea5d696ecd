"""`cxr-fgbg synthesize`: background-prompt guidance sweeps and the synthetic training set D'_s."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, resolve_model_folder, set_option


def synthesize(
    prompt: str = typer.Option(
        ..., "--prompt", "-p", help="Foreground prompt y_f, e.g. 'Small left pleural effusion.'"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    model: Path | None = typer.Option(
        None, "--model", "-m", help="Diffusers folder of the fine-tuned model (default: model.path in the config)."
    ),
    background_prompt: str | None = typer.Option(
        None, "--background-prompt", help="y_b (default: masks.refine.background_prompt of the config)."
    ),
    weight: list[float] = typer.Option(
        [], "--weight", "-w", help="Guidance weight w (repeatable; default: masks.guidance.weights). "
        "1 = plain y_f, 0 = plain y_b, -1 = background only."
    ),
    dataset: bool = typer.Option(
        False, "--dataset", help="Write the synthetic training set D'_s (images + samples.csv) instead of a sweep."
    ),
    concept: str | None = typer.Option(None, "--concept", help="With --dataset: the concept word of the prompt."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    """Guidance sweep or synthetic set (see HELP)."""
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.errors import ConfigError
    from cxr_fgbg.io import write_text_atomic
    from cxr_fgbg.masks.inpaint import load_pipeline

    cfg = load_cli_config(config, overrides)
    path = resolve_model_folder(model, cfg, config, keys=("model.path",))
    y_b = background_prompt or cfg.masks.refine.background_prompt
    pipe = load_pipeline(str(path), cfg.masks.refine.device)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    if dataset:
        from cxr_fgbg.masks.synthetic import synthesize_dataset

        if not concept:
            raise ConfigError("--dataset needs --concept (the word of the prompt whose heat map is the object)")
        table = synthesize_dataset(pipe, [(concept, prompt)], y_b, out, cfg.masks.synthetic, seed=cfg.seed)
        typer.echo(f"synthetic set: {table}")
        return
    from cxr_fgbg.masks.guidance import sweep_guidance

    g = cfg.masks.guidance
    sheet = sweep_guidance(pipe, prompt, y_b, weight or g.weights, out, num_images=g.images_per_weight,
                           num_inference_steps=g.num_inference_steps, seed=cfg.seed)
    typer.echo(f"contact sheet: {sheet}")


HELP = (
    "Sample images with background-prompt guidance, eps = w * eps(y_f) - (w - 1) * eps(y_b).\n\n"
    "Without --dataset: OUT/w_<w>/NNN.png for every w (the same noise for every w) and OUT/contact_sheet.png "
    "(one column per w). With --dataset: OUT/images/*.png and OUT/samples.csv, ready for `cxr-fgbg localize` "
    "and `cxr-fgbg refine`, whose masks can be added to the U-Net's training data."
)


def register(app: typer.Typer) -> None:
    app.command("synthesize", help=HELP)(synthesize)
