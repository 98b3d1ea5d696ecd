"""`cxr-fgbg segment train|predict|evaluate`: the MONAI U-Net distilled from the masks."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, set_option
from cxr_fgbg.cli.evaluate import TRUTH_ROOT_HELP, score_masks

segment_app = typer.Typer(
    help="Train a U-Net on (image, mask) pairs, predict masks with it, and score masks against ground truth.",
    no_args_is_help=True,
)


@segment_app.command("train")
def train(
    masks: list[Path] = typer.Option(
        ..., "--masks", help="masks.csv from `cxr-fgbg refine` (repeatable, e.g. M plus the synthetic set D'_s)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: model.pt, checkpoints/, train_log.csv."),
    image_root: Path | None = typer.Option(None, "--image-root", help="Folder the image paths are relative to."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore checkpoints in OUT and start from step 0."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    """Train the U-Net (paper: 12,000 steps, batch 32, Adam 1e-3, random 128x128 crops, no flips).

    Rerunning the same command continues from the last checkpoint.
    """
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.io import write_text_atomic
    from cxr_fgbg.segmentation.train import train_segmenter

    cfg = load_cli_config(config, overrides)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    result = train_segmenter(masks, out, cfg.segment, seed=cfg.seed, image_root=image_root, resume=not fresh)
    typer.echo(f"trained {result.steps} steps on {result.num_images} image(s) "
               f"({result.skipped} skipped); final loss {result.final_loss:.4f}; model: {result.model_path}")


@segment_app.command("predict")
def predict(
    model: Path = typer.Option(..., "--model", "-m", help="model.pt (or its folder) from `segment train`."),
    images: Path = typer.Option(
        ..., "--images", help="A CSV with sample_id and image_path (samples.csv, masks.csv...)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: masks/*.png, masks.csv, skipped.csv."),
    split: list[str] = typer.Option([], "--split", help="Only rows of this split (repeatable; default all)."),
    image_root: Path | None = typer.Option(None, "--image-root", help="Folder the image paths are relative to."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    """Predict masks (in each image's original size) with a trained U-Net."""
    from cxr_fgbg.segmentation.predict import run_predict

    cfg = load_cli_config(config, overrides)
    given = {k for arg in overrides for k in [arg.partition("=")[0]]}
    updates = {key: getattr(cfg.segment, key) for key in ("threshold", "inference") if f"segment.{key}" in given}
    run = run_predict(model, images, out, splits=split or None, image_root=image_root, overrides=updates,
                      device=cfg.segment.device)
    typer.echo(f"{run.written} mask(s) written, {run.kept} kept, {run.skipped} skipped; index: {run.masks_csv}")


@segment_app.command("evaluate")
def evaluate(
    predictions: Path = typer.Option(
        ..., "--predictions", "--masks",
        help="masks.csv of the masks to score, or its folder (`segment predict` or `refine` output).",
    ),
    truth: Path = typer.Option(
        ..., "--truth", "--ground-truth",
        help="Ground-truth masks or boxes: the phantom's ground-truth/ folder or its ground_truth.csv, an index "
        "folder (samples.csv or ms_cxr.csv), a CSV with sample_id and mask_path or boxes, or a folder of "
        "{sample_id}.png. See docs/metrics.md.",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder: per_sample.csv, summary.json, report.md/html, skipped.csv."
    ),
    index: Path | None = typer.Option(
        None, "--index", help="Index folder whose ms_cxr.csv maps sample_id to (dicom_id, category_name)."
    ),
    truth_root: Path | None = typer.Option(None, "--truth-root", help=TRUTH_ROOT_HELP),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    """Score masks against ground truth: the same scoring as `cxr-fgbg evaluate --masks`.

    Accuracy, IoU, Dice and mIoU = (IoU_fg + IoU_bg) / 2 per image (per-class means with 95% intervals) and
    with the pixels pooled over all images, each class and each split (the paper's convention), beside the
    all-background prediction.
    """
    cfg = load_cli_config(config, overrides)
    score_masks(predictions, truth, out, cfg, index, truth_root, progress=not no_progress)


def register(app: typer.Typer) -> None:
    app.add_typer(segment_app, name="segment")
