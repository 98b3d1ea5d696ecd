"""Batch evaluation of predicted masks (masks.csv + PNGs) against ground-truth masks or boxes.

Per image: accuracy, foreground IoU, Dice, (IoU_fg + IoU_bg) / 2 and the enclosing-box IoU; per class the
mean with a bootstrap interval, and the paper's pooled scores (pixel counts summed over the split first).
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

__all__ = ["MASK_COLUMNS", "evaluate_masks"]

MASK_COLUMNS = ("sample_id", "mask_path")


def evaluate_masks(
    masks_dir: Path,
    ground_truth: Path,
    out_dir: Path,
    settings: EvaluateSettings | None = None,
    seed: int = 0,
    index_dir: Path | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Score every mask of `masks_dir/masks.csv`; write per_sample.csv, summary.json, report.md/html."""
    import pandas as pd
    from tqdm import tqdm

    settings = settings or EvaluateSettings()
    masks_dir, out_dir = Path(masks_dir), Path(out_dir)
    frame = read_table(masks_dir / "masks.csv", MASK_COLUMNS)
    truth = GroundTruth(Path(ground_truth), index_dir)
    skipped = SkippedLog(out_dir / "skipped.csv", resume=False)
    records = []
    for row in tqdm(frame.to_dict("records"), desc="evaluate masks", unit="mask", disable=not progress):
        path = resolve_path(row["mask_path"], masks_dir)
        if path is None:
            skipped.add(row["mask_path"], "mask file not found")
            continue
        try:
            entry = truth.entry_for(row)
            split = str(row.get("split") or entry.split)
            if settings.eval_splits and split not in settings.eval_splits:
                continue
            pred = read_mask_png(path)
            gt = truth.truth_mask(entry, pred.shape)
        except InputDataError as exc:
            skipped.add(row["mask_path"], str(exc))
            continue
        counts = confusion(pred, gt)
        category = str(row.get("category_name") or entry.category or "all")
        records.append({
            "sample_id": row["sample_id"], "category_name": category, "split": split,
            "height": pred.shape[0], "width": pred.shape[1],
            "truth_kind": "mask" if entry.mask_path is not None else "boxes",
            **segmentation_scores(counts), "enclosing_box_iou": enclosing_box_iou(pred, gt),
            "tp": counts.tp, "fp": counts.fp, "fn": counts.fn, "tn": counts.tn,
        })
    if not records:
        skipped.write()
        raise InputDataError(f"{masks_dir}: no mask could be evaluated; see {skipped.path}")
    per_sample = pd.DataFrame.from_records(records)
    summary = _summary(per_sample, settings, seed)
    summary.update({
        "source": str(masks_dir), "ground_truth": f"{ground_truth} ({truth.kind})", "n_skipped": len(skipped),
    })
    figures: dict[str, str] = {}
    if settings.figures:
        bar_chart(summary, list(SEGMENTATION_METRICS), out_dir / "figures" / "per_class_bars.png")
        figures["Per-class per-image means with 95% intervals"] = "figures/per_class_bars.png"
    write_csv_atomic(out_dir / "per_sample.csv", per_sample)
    write_json_atomic(out_dir / "summary.json", summary)
    report = write_report(out_dir, render_segmentation_report(summary, figures))
    skipped.write()
    return EvaluationResult(out_dir, per_sample, summary, report, len(skipped))


def _counts(frame: Any) -> list[Confusion]:
    return [Confusion(int(r.tp), int(r.fp), int(r.fn), int(r.tn)) for r in frame.itertuples(index=False)]


def _summary(per_sample: Any, settings: EvaluateSettings, seed: int) -> dict[str, Any]:
    metrics = list(SEGMENTATION_METRICS)
    summary: dict[str, Any] = {"kind": "segmentation", "metrics": metrics}
    summary.update(summarise(per_sample, metrics, settings.bootstrap_samples, seed))
    summary["n_samples"] = len(per_sample)
    summary["pooled"] = {
        "all": pooled_scores(_counts(per_sample)),
        "classes": {str(c): pooled_scores(_counts(g)) for c, g in per_sample.groupby("category_name", sort=True)},
    }
    summary["baselines"] = {}
    summary["notes"] = ["No text-free baseline is computed for masks."]
    summary.update({
        "bootstrap_samples": settings.bootstrap_samples, "seed": seed,
        "settings": settings.model_dump(mode="json"),
    })
    for value in summary["pooled"]["classes"].values():
        for key, number in value.items():
            value[key] = None if np.isnan(number) else number
    return summary
