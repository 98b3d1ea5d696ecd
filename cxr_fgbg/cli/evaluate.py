"""`cxr-fgbg evaluate`: score heat maps against boxes, or masks against ground truth, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cxr_fgbg.cli.common import config_option, load_cli_config, set_option

if TYPE_CHECKING:
    from cxr_fgbg.config import PipelineConfig
    from cxr_fgbg.evaluation.run import EvaluationResult

HELP = (
    "Score heat maps against their boxes (--heatmaps) or predicted masks against ground truth "
    "(--masks with --ground-truth). Writes per_sample.csv (one row per image), summary.json (per class, "
    "macro, 95% intervals), report.md / report.html with figures, and skipped.csv.\n\n"
    "Heat maps are put beside two baselines that never read the report (a centred Gaussian and the "
    "mean box position of each class in the training split), so you can see whether a map follows the "
    "text or only the anatomy. Rows of the training split only build that prior and are never scored."
)

TRUTH_ROOT_HELP = (
    "One more folder that the relative mask paths of a ground-truth CSV may be relative to "
    "(besides the CSV's folder, its parent and the root of an index.json beside it)."
)


def register(app: typer.Typer) -> None:
    @app.command("evaluate", help=HELP)
    def evaluate(
        out: Path = typer.Option(..., "--out", "-o", help="Folder for the results (created if missing)."),
        heatmaps: Path | None = typer.Option(
            None, "--heatmaps", help="Output folder of `cxr-fgbg localize` (holds heatmaps.csv and maps/).",
            file_okay=False,
        ),
        masks: Path | None = typer.Option(
            None, "--masks", help="masks.csv, or its folder, of the masks to score (e.g. from `cxr-fgbg refine` or "
            "`cxr-fgbg segment predict`).",
        ),
        ground_truth: Path | None = typer.Option(
            None, "--ground-truth",
            help="With --masks: ground-truth masks or boxes: the phantom's ground-truth/ folder, an index "
            "folder (samples.csv or ms_cxr.csv), a CSV with sample_id and mask_path or boxes, or a folder "
            "of {sample_id}.png. See docs/metrics.md.",
        ),
        prior_index: Path | None = typer.Option(
            None, "--prior-index",
            help="Index folder of `cxr-fgbg index` whose training rows build the class-location prior when "
            "heatmaps.csv has no training rows.",
        ),
        index: Path | None = typer.Option(
            None, "--index",
            help="Index folder: image paths for the overlay figures are resolved against its recorded root; "
            "with --masks it also maps sample_id to (dicom_id, category_name).",
        ),
        image_root: Path | None = typer.Option(
            None, "--image-root", help="Folder the image_path column is relative to (overrides --index)."
        ),
        truth_root: Path | None = typer.Option(None, "--truth-root", help=TRUTH_ROOT_HELP),
        no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
        config: Path | None = config_option(),
        overrides: list[str] = set_option(),
    ) -> None:
        from cxr_fgbg.config import dump_config
        from cxr_fgbg.errors import InputDataError
        from cxr_fgbg.io import write_text_atomic

        cfg = load_cli_config(config, overrides)
        if (heatmaps is None) == (masks is None):
            raise InputDataError("give exactly one of --heatmaps DIR or --masks DIR")
        if masks is not None and ground_truth is None:
            raise InputDataError("--masks needs --ground-truth (a mask folder or a CSV/index with boxes)")
        if heatmaps is None:
            assert masks is not None and ground_truth is not None
            score_masks(masks, ground_truth, out, cfg, index, truth_root, progress=not no_progress)
            return
        from cxr_fgbg.evaluation.run import evaluate_heatmaps, image_root_for

        result = evaluate_heatmaps(
            heatmaps, out, cfg.evaluate, cfg.seed, prior_index=prior_index,
            image_root=image_root_for(index, image_root), progress=not no_progress,
        )
        write_text_atomic(out / "config.yaml", dump_config(cfg))
        _echo_result(result)


def score_masks(
    masks: Path, ground_truth: Path, out: Path, cfg: PipelineConfig, index: Path | None = None,
    truth_root: Path | None = None, progress: bool = True,
) -> None:
    """Both `evaluate --masks` and `segment evaluate`: one implementation (`evaluation.run_masks`)."""
    from cxr_fgbg.config import dump_config
    from cxr_fgbg.evaluation.run_masks import BASELINE, evaluate_masks
    from cxr_fgbg.io import write_text_atomic

    result = evaluate_masks(masks, ground_truth, out, cfg.evaluate, cfg.seed, index_dir=index, progress=progress,
                            truth_root=truth_root)
    write_text_atomic(out / "config.yaml", dump_config(cfg))
    pooled, empty = result.summary["pooled"], result.summary["baselines"][BASELINE]["pooled"]
    for group, scores in [("all", pooled["all"]), *pooled["splits"].items()]:
        floor = empty["all"] if group == "all" else empty["splits"][group]
        typer.echo(f"pooled {group}: {_scores_line(scores)} (all-background: iou {_number(floor['iou'])}, "
                   f"miou_fg_bg {_number(floor['miou_fg_bg'])})")
    _echo_result(result)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _scores_line(scores: dict[str, float | None]) -> str:
    return ", ".join(f"{key} {_number(value)}" for key, value in scores.items())


def _echo_result(result: EvaluationResult) -> None:
    typer.echo(f"evaluated {len(result.per_sample)} samples, skipped {result.n_skipped}; report: {result.report_path}")
