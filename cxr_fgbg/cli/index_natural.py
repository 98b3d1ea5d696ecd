"""`cxr-fgbg index-natural`: one table (samples.csv) for a natural-image dataset."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, set_option

DATASET_HELP = (
    "Which layout ROOT has: folder (ROOT/<concept>/images, or a CSV via --csv), cub (CUB-200-2011), "
    "dogs (Stanford Dogs), cars (Stanford Cars devkit), h36m (Human3.6M frames + a box file)."
)

INDEX_NATURAL_HELP = (
    "Index a natural-image dataset for localisation and segmentation: writes OUT/samples.csv (one row per "
    "image: path, concept word, prompt, mask, boxes, split, size), OUT/index.json and OUT/skipped.csv "
    "(every image or annotation left out, with the reason).\n\n"
    "Examples:\n\n"
    "  cxr-fgbg index-natural --dataset cub --root data/CUB_200_2011 --out runs/cub-index\n\n"
    "  cxr-fgbg index-natural --dataset folder --root my_photos --csv my_photos/labels.csv --out runs/mine"
)


def index_natural(
    dataset: str | None = typer.Option(
        None, "--dataset", "-d", help=DATASET_HELP + " Default: paths.natural_dataset in the config."
    ),
    root: Path | None = typer.Option(
        None, "--root", help="The dataset's folder as downloaded (or a CSV for folder; default: paths.natural_root "
        "in the config)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for samples.csv, index.json and skipped.csv."),
    csv: Path | None = typer.Option(
        None, "--csv", dir_okay=False,
        help="folder only: a CSV with image_path and concept (or prompt); optional mask_path, boxes, split.",
    ),
    annotations: Path | None = typer.Option(
        None, "--annotations", dir_okay=False,
        help="h36m only: JSON (COCO-style) or CSV with the person boxes (default ROOT/annotations.json|csv).",
    ),
    concept: str | None = typer.Option(
        None, "--concept", help="Object word for the prompt, e.g. bird (default: per dataset, from config)."
    ),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    from cxr_fgbg.data.natural import DATASETS
    from cxr_fgbg.data.natural import index_natural as run
    from cxr_fgbg.errors import ConfigError, InputDataError
    from cxr_fgbg.paths_settings import require_paths

    cfg = load_cli_config(config, overrides)
    if dataset is None:
        dataset = cfg.paths.natural_dataset
        if dataset is None:
            where = f"config {config}" if config is not None else "the configuration (no --config file)"
            raise ConfigError(f"paths.natural_dataset is not set in {where}: pass --dataset "
                              f"({', '.join(DATASETS)}) or set paths.natural_dataset in the config")
        if dataset not in DATASETS:
            raise ConfigError(f"paths.natural_dataset = {dataset!r} in config {config}: choose one of "
                              f"{', '.join(DATASETS)}")
    if dataset not in DATASETS:
        raise InputDataError(f"--dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if root is None:
        root = require_paths(cfg, "natural_root", source=config, flags={"natural_root": "--root"})["natural_root"]
    settings = cfg.data.natural
    summary = run(dataset, root, out, settings, csv=csv, annotations=annotations, concept=concept,
                  progress=not no_progress)
    typer.echo(f"{summary['samples']} samples indexed, {summary['skipped']} skipped -> {out}")
    for reason, count in sorted(summary["skipped_reasons"].items(), key=lambda kv: -kv[1])[:10]:
        typer.echo(f"  skipped {count}: {reason}")


def register(app: typer.Typer) -> None:
    app.command("index-natural", help=INDEX_NATURAL_HELP)(index_natural)
