"""`cxr-fgbg index`: build the MIMIC-CXR / MS-CXR index tables that every later stage reads."""

from __future__ import annotations

from pathlib import Path

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, set_option


def index(
    mimic: Path | None = typer.Option(
        None, "--mimic", help="MIMIC-CXR or MIMIC-CXR-JPG folder: the one holding files/ and the metadata CSVs "
        "(default: paths.mimic_root in the config).",
        file_okay=False,
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for studies.csv, ms_cxr.csv, index.json, skipped.csv."),
    ms_cxr: Path | None = typer.Option(
        None, "--ms-cxr", help="MS-CXR annotations (MS_CXR_Local_Alignment_v1.x.0.csv or the COCO .json; "
        "default: paths.ms_cxr_csv in the config, if set).",
        dir_okay=False,
    ),
    reports: Path | None = typer.Option(
        None, "--reports", help="Folder with the report files (files/pXX/pSUBJECT/sSTUDY.txt) if not under --mimic "
        "(default: paths.reports_root, else data.index.reports_root in the config).",
        file_okay=False,
    ),
    views: str | None = typer.Option(
        None, "--views", help="Comma-separated view positions to keep, e.g. PA,AP (default from config: PA,AP)."
    ),
    keep_ms_cxr_patients: bool | None = typer.Option(
        None, "--keep-ms-cxr-patients/--hold-out-ms-cxr-patients",
        help="Keep MS-CXR patients in the train/validate rows (default: held out, so fine-tuning never sees them).",
    ),
    workers: int | None = typer.Option(None, "--workers", "-j", min=1, help="Parallel processes for checking images."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    config: Path | None = config_option(),
    overrides: list[str] = set_option(),
) -> None:
    """Index MIMIC-CXR(-JPG) images with their report text, and MS-CXR boxes (help text: INDEX_HELP)."""
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.data.mimic import build_index
    from cxr_fgbg.io import write_text_atomic
    from cxr_fgbg.paths_settings import require_paths

    full_config = load_cli_config(config, overrides)
    cfg = full_config.data.index
    paths = full_config.paths
    if mimic is None:
        flags = {"mimic_root": "--mimic"}
        mimic = require_paths(full_config, "mimic_root", source=config, flags=flags)["mimic_root"]
    if ms_cxr is None and paths.ms_cxr_csv is not None:
        ms_cxr = require_paths(full_config, "ms_cxr_csv", source=config)["ms_cxr_csv"]
    if reports is None and paths.reports_root is not None:
        reports = require_paths(full_config, "reports_root", source=config)["reports_root"]
    view_list = [v.strip() for v in views.split(",")] if views is not None else list(cfg.views)
    summary = build_index(
        mimic_root=mimic,
        out_dir=out,
        ms_cxr_csv=ms_cxr,
        views=view_list,
        keep_ms_cxr_patients=cfg.keep_ms_cxr_patients if keep_ms_cxr_patients is None else keep_ms_cxr_patients,
        workers=cfg.workers if workers is None else workers,
        progress=not no_progress,
        reports_root=reports if reports is not None else cfg.reports_root,
        box_tolerance=cfg.box_tolerance,
        aspect_tolerance=cfg.aspect_tolerance,
    )
    write_text_atomic(out / "config.yaml", dump_config(full_config))
    typer.echo(summary.format())


INDEX_HELP = (
    "Index MIMIC-CXR or MIMIC-CXR-JPG images with their report text (and MS-CXR boxes) for the later stages.\n\n"
    "Every image file is opened once (DICOM header and pixel-data length, or the JPG header), so damaged "
    "files are found now rather than during training. Everything left out (lateral views, missing reports, "
    "unreadable files, MS-CXR patients held out of fine-tuning, ...) is listed with the reason in "
    "OUT/skipped.csv.\n\n"
    "Example: cxr-fgbg index --mimic /data/mimic-cxr-jpg/2.0.0 --ms-cxr MS_CXR_Local_Alignment_v1.1.0.csv "
    "--out index/\n\n"
    "Or with the folders named once in a config's paths: section: "
    "cxr-fgbg index --config configs/mimic_roentgen.yaml --out index/"
)


def register(app: typer.Typer) -> None:
    app.command("index", help=INDEX_HELP)(index)
