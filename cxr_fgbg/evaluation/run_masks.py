"""Batch evaluation of predicted masks (masks.csv + PNGs) against ground-truth masks or boxes.

The one implementation behind `cxr-fgbg evaluate --masks` and `cxr-fgbg segment evaluate`. Per image:
accuracy, foreground IoU, Dice, (IoU_fg + IoU_bg) / 2 and the enclosing-box IoU; per class the mean with a
bootstrap interval; and the paper's pooled scores (pixel counts summed first) overall, per class and per
split. The all-background prediction is scored on the same samples as a floor: a mask that does not beat
it has learnt nothing about the object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.evaluation.aggregate import summarise
from cxr_fgbg.evaluation.ground_truth import GroundTruth, read_mask_png
from cxr_fgbg.evaluation.images import resolve_path
from cxr_fgbg.evaluation.metrics import (
    SEGMENTATION_METRICS,
    Confusion,
    confusion,
    enclosing_box_iou,
    pooled_scores,
    segmentation_scores,
)
from cxr_fgbg.evaluation.report import bar_chart, render_segmentation_report, write_report
from cxr_fgbg.evaluation.run import EvaluationResult
from cxr_fgbg.evaluation.settings import EvaluateSettings
from cxr_fgbg.io import SkippedLog, read_table, write_csv_atomic, write_json_atomic

__all__ = ["BASELINE", "MASK_COLUMNS", "evaluate_masks", "masks_table"]

MASK_COLUMNS = ("sample_id", "mask_path")
BASELINE = "all_background"
NO_SPLIT = "unsplit"  # summary label of rows whose split neither table gives


def masks_table(masks: Path) -> Path:
    """masks.csv itself, or the masks.csv inside a folder (both commands accept either)."""
    masks = Path(masks)
    return masks if masks.is_file() or masks.suffix.lower() == ".csv" else masks / "masks.csv"


def evaluate_masks(
    masks: Path,
    ground_truth: Path,
    out_dir: Path,
    settings: EvaluateSettings | None = None,
    seed: int = 0,
    index_dir: Path | None = None,
    progress: bool = True,
    truth_root: Path | None = None,
) -> EvaluationResult:
    """Score every mask of `masks` (a masks.csv or its folder; mask paths relative to the table's folder).

    Writes per_sample.csv, summary.json, report.md/html and skipped.csv into `out_dir`. `truth_root` is one
    more folder that relative ground-truth mask paths may be relative to.
    """
    import pandas as pd
    from tqdm import tqdm

    settings = settings or EvaluateSettings()
    table, out_dir = masks_table(masks), Path(out_dir)
    frame = read_table(table, MASK_COLUMNS)
    truth = GroundTruth(Path(ground_truth), index_dir, truth_root)
    skipped = SkippedLog(out_dir / "skipped.csv", resume=False)
    records, other_splits = [], 0
    for row in tqdm(frame.to_dict("records"), desc="evaluate masks", unit="mask", disable=not progress):
        try:
            record = _score_row(row, table.parent, truth, settings)
        except InputDataError as exc:
            skipped.add(row["mask_path"], str(exc))
            continue
        if record is None:
            other_splits += 1
        else:
            records.append(record)
    if not records:
        skipped.write()
        outside = (f"{other_splits} mask(s) lie outside evaluate.eval_splits {settings.eval_splits}, "
                   if other_splits else "")
        raise InputDataError(
            f"{table}: no mask could be evaluated; {outside}{len(skipped)} skipped (see {skipped.path})"
        )
    per_sample = pd.DataFrame.from_records(records)
    summary = _summary(per_sample, settings, seed)
    summary.update({
        "source": str(table), "ground_truth": f"{ground_truth} ({truth.kind})", "n_skipped": len(skipped),
    })
    figures: dict[str, str] = {}
    if settings.figures:
        bar_chart(summary, list(SEGMENTATION_METRICS), out_dir / "figures" / "per_class_bars.png")
        figures["Per-class per-image means with 95% intervals, beside the all-background prediction"] = (
            "figures/per_class_bars.png"
        )
    write_csv_atomic(out_dir / "per_sample.csv", per_sample)
    write_json_atomic(out_dir / "summary.json", summary)
    report = write_report(out_dir, render_segmentation_report(summary, figures))
    skipped.write()
    return EvaluationResult(out_dir, per_sample, summary, report, len(skipped))


def _score_row(
    row: dict[str, Any], masks_dir: Path, truth: GroundTruth, settings: EvaluateSettings
) -> dict[str, Any] | None:
    """One per_sample.csv row; None when its split is not evaluated, InputDataError when it is skipped."""
    path = resolve_path(row["mask_path"], masks_dir)
    if path is None:
        raise InputDataError("mask file not found")
    entry = truth.entry_for(row)
    split = str(row.get("split") or entry.split or "")
    if settings.eval_splits and split not in settings.eval_splits:
        return None
    pred = read_mask_png(path)
    gt = truth.truth_mask(entry, pred.shape)
    counts = confusion(pred, gt)
    return {
        "sample_id": row["sample_id"], "category_name": str(row.get("category_name") or entry.category or "all"),
        "split": split, "height": pred.shape[0], "width": pred.shape[1],
        "truth_kind": "mask" if entry.mask_path is not None else "boxes",
        **segmentation_scores(counts), "enclosing_box_iou": enclosing_box_iou(pred, gt),
        "tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn,
        **_baseline_scores(counts),
    }


def _background_only(c: Confusion) -> Confusion:
    """The counts an all-background prediction would get on the same truth: every object pixel missed."""
    return Confusion(0, 0, c.tp + c.fn, c.fp + c.tn)


def _baseline_scores(counts: Confusion) -> dict[str, float]:
    """Per-image scores of the all-background prediction (enclosing box: 1 only when the truth is empty)."""
    empty = _background_only(counts)
    scores = {**segmentation_scores(empty), "enclosing_box_iou": 1.0 if empty.fn == 0 else 0.0}
    return {f"{BASELINE}__{k}": v for k, v in scores.items()}


def _counts(frame: Any, baseline: bool = False) -> list[Confusion]:
    counts = [Confusion(int(r.tp), int(r.fp), int(r.fn), int(r.tn)) for r in frame.itertuples(index=False)]
    return [_background_only(c) for c in counts] if baseline else counts


def _clean(scores: dict[str, float]) -> dict[str, float | None]:
    return {k: None if np.isnan(v) else v for k, v in scores.items()}


def _groupings(per_sample: Any) -> dict[str, Any]:
    """The per-class and per-split groups that pooled scores and counts are reported for."""
    splits = per_sample["split"].replace("", NO_SPLIT)
    return {"classes": per_sample.groupby("category_name", sort=True), "splits": per_sample.groupby(splits, sort=True)}


def _pooled(per_sample: Any, baseline: bool = False) -> dict[str, Any]:
    """Scores with the pixel counts summed over all images, over each class and over each split."""
    pooled: dict[str, Any] = {"all": _clean(pooled_scores(_counts(per_sample, baseline)))}
    for name, groups in _groupings(per_sample).items():
        pooled[name] = {str(key): _clean(pooled_scores(_counts(group, baseline))) for key, group in groups}
    return pooled


def _summary(per_sample: Any, settings: EvaluateSettings, seed: int) -> dict[str, Any]:
    metrics = list(SEGMENTATION_METRICS)
    n_boot = settings.bootstrap_samples
    summary: dict[str, Any] = {"kind": "segmentation", "metrics": metrics}
    summary.update(summarise(per_sample, metrics, n_boot, seed))
    summary["n_samples"] = len(per_sample)
    summary["counts"] = {"all": len(per_sample)}
    for name, groups in _groupings(per_sample).items():
        summary["counts"][name] = {str(key): len(group) for key, group in groups}
    summary["pooled"] = _pooled(per_sample)
    baseline = {"description": "predicts background everywhere; knows neither the image nor the text."}
    baseline.update(summarise(per_sample, metrics, n_boot, seed, prefix=f"{BASELINE}__"))
    baseline["pooled"] = _pooled(per_sample, baseline=True)
    summary["baselines"] = {BASELINE: baseline}
    summary["notes"] = []
    summary.update({"bootstrap_samples": n_boot, "seed": seed, "settings": settings.model_dump(mode="json")})
    return summary
