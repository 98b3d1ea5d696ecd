"""Batch evaluation of a heat-map folder (against its boxes) and of a mask folder (against ground truth).

Heat maps: rows of `heatmaps.csv` whose split is the training split only build the class-location prior;
every other row (or the rows of `evaluate.eval_splits`) is scored, with both baselines on the same
samples. Reruns recompute everything (seconds); every output is written atomically, so an interrupted
run never leaves a half-written file.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.evaluation.aggregate import summarise
from cxr_fgbg.evaluation.baselines import ClassLocationPrior, centred_gaussian
from cxr_fgbg.evaluation.boxes import as_boxes, box_side, boxes_to_mask, normalise_boxes
from cxr_fgbg.evaluation.images import image_root_from_index, load_display_image, resolve_path
from cxr_fgbg.evaluation.metrics import (
    LOCALISATION_METRICS,
    PreparedMap,
    enclosing_box_iou,
    iou,
    localisation_scores,
)
from cxr_fgbg.evaluation.published import published_table
from cxr_fgbg.evaluation.report import bar_chart, overlay_figure, render_localisation_report, write_report
from cxr_fgbg.evaluation.settings import EvaluateSettings
from cxr_fgbg.io import SkippedLog, read_table, write_csv_atomic, write_json_atomic

__all__ = [
    "HEATMAP_COLUMNS",
    "MAP_ONLY_METRICS",
    "EvaluationResult",
    "evaluate_heatmaps",
    "read_boxes_and_shape",
    "read_heatmap_npz",
    "training_boxes_from_index",
]

log = logging.getLogger(__name__)

HEATMAP_COLUMNS = ("sample_id", "category_name", "split", "npz_path")
MAP_ONLY_METRICS = ("mask_pre_iou", "mask_pre_box_iou")


@dataclass
class EvaluationResult:
    """What an evaluation wrote: the per-sample table, the summary and the paths."""

    out_dir: Path
    per_sample: Any  # pandas.DataFrame
    summary: dict[str, Any]
    report_path: Path
    n_skipped: int


@dataclass
class HeatmapSample:
    heatmap: np.ndarray
    boxes: np.ndarray
    mask_pre: np.ndarray | None


def read_heatmap_npz(path: Path) -> HeatmapSample:
    """Load one `maps/{sample_id}.npz` of the localisation stage; InputDataError names what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("heatmap", "boxes") if k not in data.files]
            if missing:
                raise InputDataError(f"{path}: missing array(s) {', '.join(missing)}")
            heatmap = np.asarray(data["heatmap"], dtype=np.float32)
            boxes = data["boxes"]
            mask_pre = np.asarray(data["mask_pre"]) if "mask_pre" in data.files else None
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: not a readable .npz ({exc})") from exc
    if heatmap.ndim != 2:
        raise InputDataError(f"{path}: heatmap must be 2-D (H, W), got shape {heatmap.shape}")
    try:
        box_arr = as_boxes(boxes)
    except ValueError as exc:
        raise InputDataError(f"{path}: {exc}") from exc
    if box_arr.shape[0] == 0:
        raise InputDataError(f"{path}: no boxes")
    if mask_pre is not None and mask_pre.shape != heatmap.shape:
        mask_pre = None
    return HeatmapSample(heatmap, box_arr, mask_pre)


def read_boxes_and_shape(path: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """Boxes and heat-map shape of one .npz without decompressing the map (the header holds the shape)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if "heatmap" not in data.files or "boxes" not in data.files:
                raise InputDataError(f"{path}: missing array heatmap or boxes")
            box_arr = as_boxes(data["boxes"])
            with data.zip.open("heatmap.npy") as member:
                version = np.lib.format.read_magic(member)
                reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else (
                    np.lib.format.read_array_header_2_0
                )
                shape = reader(member)[0]
    except (OSError, ValueError, KeyError) as exc:
        raise InputDataError(f"{path}: not a readable heat-map .npz ({exc})") from exc
    if len(shape) != 2 or box_arr.shape[0] == 0:
        raise InputDataError(f"{path}: needs a 2-D heatmap and at least one box")
    return box_arr, (int(shape[0]), int(shape[1]))


def training_boxes_from_index(index_dir: Path, train_split: str = "train") -> list[tuple[str, np.ndarray]]:
    """(class, boxes in fractions of the image size) of the training rows of an index's ms_cxr.csv."""
    path = index_dir / "ms_cxr.csv" if index_dir.is_dir() else index_dir
    frame = read_table(path, ("category_name", "split", "image_width", "image_height", "boxes"))
    samples = []
    for number, row in enumerate(frame.itertuples(index=False), start=2):
        if row.split != train_split:
            continue
        try:
            boxes = as_boxes(json.loads(row.boxes))
            samples.append(
                (row.category_name, normalise_boxes(boxes, float(row.image_width), float(row.image_height)))
            )
        except (ValueError, TypeError) as exc:
            raise InputDataError(f"{path}, line {number}: unusable boxes or image size ({exc})") from exc
    return samples


def _masked(prior: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    return prior if valid is None else np.where(valid, prior, np.nan)


def _score_sample(
    sample: HeatmapSample, category: str, settings: EvaluateSettings,
    prior: ClassLocationPrior | None, cache: dict[tuple[str, str, tuple[int, int]], PreparedMap | None],
) -> dict[str, Any]:
    heatmap, boxes = sample.heatmap, sample.boxes
    shape = heatmap.shape
    valid = np.isfinite(heatmap)
    valid_or_none = None if valid.all() else valid
    gt = boxes_to_mask(boxes, shape)
    record: dict[str, Any] = {
        "height": shape[0], "width": shape[1], "n_boxes": boxes.shape[0],
        "box_side": box_side(boxes, shape[1]) or "both",
        "box_fraction": float(gt[valid].mean()) if valid.any() else float("nan"),
        "valid_fraction": float(valid.mean()),
    }
    thresholds = settings.miou_thresholds
    record.update(localisation_scores(heatmap, boxes, thresholds))
    if sample.mask_pre is not None:
        pre = (sample.mask_pre > 0) & valid
        record["mask_pre_iou"] = iou(pre, gt & valid)
        record["mask_pre_box_iou"] = enclosing_box_iou(pre, gt)
    else:
        record.update({m: float("nan") for m in MAP_ONLY_METRICS})
    for name in ("centred_gaussian", "class_location"):
        if name == "class_location" and prior is None:
            continue
        key = (name, category if name == "class_location" else "", shape)
        prepared = cache.get(key)
        if prepared is None:
            base_map = (
                centred_gaussian(shape, settings.gaussian_sigma) if name == "centred_gaussian"
                else prior.predict(category, shape) if prior is not None else None
            )
            # A class the training split never showed has no prior: its scores are undefined.
            prepared = cache[key] = None if base_map is None else PreparedMap(base_map, presort=True)
        if prepared is None:
            scores = {m: float("nan") for m in LOCALISATION_METRICS}
        elif valid_or_none is None:
            scores = localisation_scores(prepared, boxes, thresholds)
        else:  # scored on the same valid area as the map
            scores = localisation_scores(_masked(prepared.arr, valid_or_none), boxes, thresholds)
        record.update({f"{name}__{m}": v for m, v in scores.items()})
    return record


def _select_rows(frame: Any, settings: EvaluateSettings) -> tuple[Any, Any, list[str]]:
    train = frame[frame["split"] == settings.train_split]
    if settings.eval_splits:
        chosen = frame[frame["split"].isin(settings.eval_splits) & (frame["split"] != settings.train_split)]
    else:
        chosen = frame[frame["split"] != settings.train_split]
    return train, chosen, sorted(set(chosen["split"]))


def _fit_prior(
    train: Any, base: Path, settings: EvaluateSettings, prior_index: Path | None, skipped: SkippedLog,
) -> tuple[ClassLocationPrior | None, str]:
    """The class-location prior and a sentence saying where its boxes came from (or why it is missing)."""
    samples: list[tuple[str, np.ndarray]] = []
    for row in train.itertuples(index=False):
        path = resolve_path(row.npz_path, base)
        if path is None:
            skipped.add(row.npz_path, "training row for the class prior: npz file not found")
            continue
        try:
            boxes, (height, width) = read_boxes_and_shape(path)
        except InputDataError as exc:
            skipped.add(row.npz_path, f"training row for the class prior: {exc}")
            continue
        samples.append((row.category_name, normalise_boxes(boxes, width, height)))
    source = f"{len(samples)} training rows (split '{settings.train_split}') of heatmaps.csv"
    if not samples and prior_index is not None:
        samples = training_boxes_from_index(prior_index, settings.train_split)
        source = f"{len(samples)} training rows (split '{settings.train_split}') of {prior_index}"
    if not samples:
        return None, (
            "The class-location prior is omitted: heatmaps.csv has no training rows and no --prior-index "
            "was given (pass the index folder of `cxr-fgbg index` to add it)."
        )
    prior = ClassLocationPrior(settings.prior_resolution).fit(samples)
    counts = ", ".join(f"{c} {n}" for c, n in sorted(prior.counts_.items()))
    return prior, f"mean box mask of each class over {source} ({counts})"


def evaluate_heatmaps(
    heatmaps_dir: Path,
    out_dir: Path,
    settings: EvaluateSettings | None = None,
    seed: int = 0,
    prior_index: Path | None = None,
    image_root: Path | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Score every evaluated heat map and both baselines; write per_sample.csv, summary.json, report."""
    import pandas as pd
    from tqdm import tqdm

    settings = settings or EvaluateSettings()
    heatmaps_dir, out_dir = Path(heatmaps_dir), Path(out_dir)
    frame = read_table(heatmaps_dir / "heatmaps.csv", HEATMAP_COLUMNS)
    skipped = SkippedLog(out_dir / "skipped.csv", resume=False)
    train, chosen, splits = _select_rows(frame, settings)
    if chosen.empty:
        raise InputDataError(
            f"{heatmaps_dir / 'heatmaps.csv'}: no rows to evaluate (splits present: "
            f"{', '.join(sorted(set(frame['split'])))}; training split '{settings.train_split}' is never scored)"
        )
    prior, prior_note = _fit_prior(train, heatmaps_dir, settings, prior_index, skipped)
    cache: dict[tuple[str, str, tuple[int, int]], PreparedMap | None] = {}
    def work(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | str]:
        path = resolve_path(row["npz_path"], heatmaps_dir)
        if path is None:
            return row, "npz file not found"
        try:
            sample = read_heatmap_npz(path)
            return row, _score_sample(sample, row["category_name"], settings, prior, cache)
        except (InputDataError, ValueError) as exc:
            return row, str(exc)

    records = []
    # Threads, not processes: zlib decompression and NumPy sorting release the GIL, and the shared
    # caches (Gaussian per shape, class prior per shape) need no copying.
    with ThreadPoolExecutor(max_workers=settings.workers) as pool:
        results = pool.map(work, chosen.to_dict("records"))
        for row, outcome in tqdm(results, total=len(chosen), desc="evaluate", unit="map", disable=not progress):
            if isinstance(outcome, str):
                skipped.add(row["npz_path"], outcome)
                continue
            keep = {k: row.get(k, "") for k in ("sample_id", "dicom_id", "category_name", "split")}
            records.append({**keep, **outcome, "npz_path": row["npz_path"], "image_path": row.get("image_path", "")})
    if not records:
        skipped.write()
        raise InputDataError(f"{heatmaps_dir}: every evaluated row was skipped; see {skipped.path}")
    per_sample = pd.DataFrame.from_records(records)

    summary = _localisation_summary(per_sample, settings, seed, prior is not None, prior_note)
    summary.update({"source": str(heatmaps_dir), "splits": splits, "n_skipped": len(skipped)})
    figures = {}
    if settings.figures:
        figures = _draw_figures(per_sample, summary, heatmaps_dir, out_dir, settings, image_root)
    write_csv_atomic(out_dir / "per_sample.csv", per_sample.drop(columns=["npz_path", "image_path"]))
    write_json_atomic(out_dir / "summary.json", summary)
    report = write_report(out_dir, render_localisation_report(summary, figures))
    skipped.write()
    return EvaluationResult(out_dir, per_sample, summary, report, len(skipped))


def _localisation_summary(
    per_sample: Any, settings: EvaluateSettings, seed: int, has_prior: bool, prior_note: str
) -> dict[str, Any]:
    n_boot = settings.bootstrap_samples
    metrics = list(LOCALISATION_METRICS)
    map_only = [m for m in MAP_ONLY_METRICS if per_sample[m].notna().any()]
    summary: dict[str, Any] = {"kind": "localisation", "metrics": metrics, "map_only_metrics": map_only}
    summary.update(summarise(per_sample, [*metrics, *map_only], n_boot, seed))
    summary["n_samples"] = len(per_sample)
    baselines = {
        "centred_gaussian": {
            "description": f"a Gaussian centred on the image, sigma = {settings.gaussian_sigma} of each side; "
            "knows neither the class nor the text."
        }
    }
    if has_prior:
        baselines["class_location"] = {"description": prior_note + "; knows the class, not the text."}
    for name, entry in baselines.items():
        entry.update(summarise(per_sample, metrics, n_boot, seed, prefix=f"{name}__"))
    summary["baselines"] = baselines
    summary["notes"] = [] if has_prior else [prior_note]
    if has_prior:
        uncovered = sorted(
            str(c) for c, g in per_sample.groupby("category_name") if g["class_location__pixel_auroc"].isna().all()
        )
        if uncovered:
            summary["notes"].append(
                f"No training boxes for {', '.join(uncovered)}: the class-location prior is undefined there."
            )
    summary.update({"bootstrap_samples": n_boot, "seed": seed, "settings": settings.model_dump(mode="json")})
    summary["published"] = published_table()
    return summary


def _draw_figures(
    per_sample: Any, summary: dict[str, Any], heatmaps_dir: Path, out_dir: Path,
    settings: EvaluateSettings, image_root: Path | None,
) -> dict[str, str]:
    figures_dir = out_dir / "figures"
    figures = {}
    bar_chart(summary, list(LOCALISATION_METRICS), figures_dir / "per_class_bars.png")
    figures["Per-class means with 95% intervals: maps beside the baselines"] = "figures/per_class_bars.png"
    metric = settings.overlay_metric if settings.overlay_metric in per_sample else "pixel_auroc"
    panels: dict[str, list[dict[str, Any]]] = {}
    for category, group in per_sample.groupby("category_name", sort=True):
        ranked = group[group[metric].notna()].sort_values(metric, ascending=False)
        if ranked.empty:
            continue
        picks = {"best": 0, "median": len(ranked) // 2, "worst": len(ranked) - 1}
        seen: set[int] = set()
        for label, pos in picks.items():
            if pos in seen:
                continue
            seen.add(pos)
            row = ranked.iloc[pos]
            path = resolve_path(row["npz_path"], heatmaps_dir)
            if path is None:
                continue
            sample = read_heatmap_npz(path)
            image_path = resolve_path(str(row.get("image_path", "")), image_root, heatmaps_dir)
            image = load_display_image(image_path, sample.heatmap.shape) if image_path else None
            panels.setdefault(str(category), []).append({
                "label": f"{label}: {metric} {row[metric]:.3f}", "heatmap": sample.heatmap,
                "boxes": sample.boxes, "image": image,
            })
    if panels:
        overlay_figure(panels, figures_dir / "overlays.png", settings.overlay_max_side)
        figures[f"Best / median / worst sample of each class by {metric} (boxes in white)"] = "figures/overlays.png"
    return figures


def image_root_for(index_dir: Path | None, image_root: Path | None) -> Path | None:
    """The folder image paths are relative to: --image-root, else the index's recorded root."""
    if image_root is not None:
        return image_root
    return image_root_from_index(index_dir) if index_dir is not None else None
