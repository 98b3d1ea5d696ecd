"""Scores of predicted masks against ground-truth masks, pooled over all pixels of a split (paper)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError

__all__ = ["evaluate_masks"]


def _join_keys(pred_cols, truth_cols, pred_ids, truth_ids) -> list[str]:
    if "sample_id" in pred_cols and "sample_id" in truth_cols and set(pred_ids) & set(truth_ids):
        return ["sample_id"]
    if {"dicom_id", "category_name"} <= set(pred_cols) & set(truth_cols):
        return ["dicom_id", "category_name"]
    raise InputDataError(
        "cannot match predictions to ground truth: need common sample_id values, or dicom_id and "
        "category_name columns in both tables"
    )


def evaluate_masks(
    predictions_csv: str | os.PathLike[str],
    truth_csv: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    truth_root: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Accuracy, IoU, Dice and (IoU_fg + IoU_bg) / 2 pooled over all pixels, overall and per split,
    plus the all-background prediction as a baseline. Writes per_sample.csv, summary.json and
    skipped.csv when `out_dir` is given. Masks must be in the same (original) coordinates."""
    import pandas as pd

    from cxr_fgbg.evaluation.metrics import Confusion, confusion, pooled_scores, segmentation_scores
    from cxr_fgbg.io import SkippedLog, read_table, write_csv_atomic, write_json_atomic
    from cxr_fgbg.masks.refine import read_mask_png, resolve_table_path

    pred_table, truth_table = Path(predictions_csv), Path(truth_csv)
    pred = read_table(pred_table, ("mask_path",))
    truth = read_table(truth_table, ("mask_path",))
    keys = _join_keys(pred.columns, truth.columns, pred.get("sample_id", []), truth.get("sample_id", []))
    truth = truth[truth["mask_path"] != ""]
    keep = keys + ["mask_path"] + (["split"] if "split" in truth.columns else [])
    merged = pred.merge(truth[keep], on=keys, how="inner", suffixes=("_pred", "_truth"))
    if "split_truth" in merged.columns:  # both tables have a split: the ground truth's wins
        merged = merged.drop(columns=["split_pred"]).rename(columns={"split_truth": "split"})
    if merged.empty:
        raise InputDataError(f"{pred_table}: no prediction matches a ground-truth mask in {truth_table}")
    skipped = SkippedLog(Path(out_dir) / "skipped.csv", resume=False) if out_dir else None
    rows, pooled, empty_pooled = [], {}, {}
    roots = [truth_root, truth_table.parent.parent]
    for row in merged.to_dict("records"):
        try:
            p = read_mask_png(resolve_table_path(row["mask_path_pred"], pred_table))
            t = read_mask_png(resolve_table_path(row["mask_path_truth"], truth_table, roots))
            if p.shape != t.shape:
                raise InputDataError(f"prediction {p.shape} and ground truth {t.shape} differ in size")
        except InputDataError as exc:
            if skipped is not None:
                skipped.add(row["mask_path_pred"], str(exc))
            continue
        c, c_empty = confusion(p, t), confusion(np.zeros_like(t), t)
        split = row.get("split", "") or "all"
        for group in {"all", split}:
            pooled[group] = pooled.get(group, Confusion()) + c
            empty_pooled[group] = empty_pooled.get(group, Confusion()) + c_empty
        rows.append({**{k: row[k] for k in keys}, "split": split, **segmentation_scores(c)})
    if not rows:
        raise InputDataError(f"{pred_table}: none of the matched masks could be read")
    summary = {
        "pooled": {g: pooled_scores([c]) for g, c in sorted(pooled.items())},
        "baselines": {"all_background": {g: pooled_scores([c]) for g, c in sorted(empty_pooled.items())}},
        "counts": {g: sum(1 for r in rows if g in ("all", r["split"])) for g in sorted(pooled)},
        "convention": "pixels pooled over all images of a group; miou_fg_bg = (IoU_fg + IoU_bg) / 2",
    }
    if out_dir is not None:
        out = Path(out_dir)
        write_csv_atomic(out / "per_sample.csv", pd.DataFrame(rows))
        write_json_atomic(out / "summary.json", summary)
        skipped.write()
    return summary
