"""Batch localisation over an index: one `.npz` heat map per sample, `heatmaps.csv`, `skipped.csv`.

Reads the folder written by `cxr-fgbg index` (`ms_cxr.csv`, `index.json`, `studies.csv` for impression
prompts) or by `cxr-fgbg index-natural` (`samples.csv`), and writes the "Heat maps" format of
docs/architecture.md. Several samples share each U-Net forward pass; a sample whose `.npz` already
exists is kept, so an interrupted run resumes. A sample is skipped, with its reason in `skipped.csv`,
when its image cannot be read, its class has no words, or none of its words is in the (truncated)
prompt: a NaN map is never written.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr_fgbg.attention.localizer import Localizer, token_weights
from cxr_fgbg.attention.tokens import find_word_spans
from cxr_fgbg.attention.vocabulary import build_vocabulary, words_for
from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import (
    SkippedLog,
    atomic_path,
    recorded_image_root,
    save_npz_atomic,
    write_csv_atomic,
    write_json_atomic,
)
from cxr_fgbg.masks.gmm import binarize_gmm
from cxr_fgbg.seeding import derive_seed

__all__ = ["HEATMAP_COLUMNS", "LocalizeSummary", "localize_index", "read_index"]

log = logging.getLogger(__name__)

HEATMAP_COLUMNS = ("sample_id", "dicom_id", "category_name", "label_text", "split", "prompt", "npz_path",
                   "image_path")
_REQUIRED = ("sample_id", "dicom_id", "category_name", "label_text", "image_path", "boxes")


@dataclass
class LocalizeSummary:
    computed: int = 0
    kept: int = 0
    skipped: int = 0
    empty_masks: int = 0
    out_dir: Path | None = None
    skip_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class _Job:
    row: dict[str, Any]
    prompt: str
    token_indices: tuple[int, ...]
    weights: np.ndarray
    words: tuple[str, ...]
    tokens: tuple[str, ...]
    position: int


def read_index(index_dir: str | os.PathLike[str], prompt_source: str = "phrase") -> tuple[list[dict], Path]:
    """Rows to localise, each with a `prompt` column, and the image root from `index.json`.

    An MS-CXR index (`ms_cxr.csv`, from `cxr-fgbg index`) or a natural-image index (`samples.csv`, from
    `cxr-fgbg index-natural`): there the concept word is the word whose attention is read and the
    sample's prompt ("a photo of a bird") the conditioning text.
    """
    folder = Path(index_dir)
    root = recorded_image_root(folder, strict=True) or folder
    if not (folder / "ms_cxr.csv").is_file() and (folder / "samples.csv").is_file():
        return _natural_rows(folder / "samples.csv", prompt_source), root
    return _ms_cxr_rows(folder, prompt_source), root


def _ms_cxr_rows(folder: Path, prompt_source: str) -> list[dict]:
    import pandas as pd

    table = folder / "ms_cxr.csv"
    if not table.is_file():
        raise InputDataError(
            f"{table}: not found (run `cxr-fgbg index` with --ms-cxr, or `cxr-fgbg index-natural` for samples.csv)"
        )
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise InputDataError(f"{table}: missing column(s) {', '.join(missing)}")
    rows = frame.to_dict("records")
    if prompt_source == "phrase":
        for row in rows:
            row["prompt"] = row["label_text"]
    elif prompt_source == "impression":
        studies = folder / "studies.csv"
        if not studies.is_file():
            raise InputDataError(f"{studies}: not found; --prompt impression needs the studies table")
        st = pd.read_csv(studies, dtype=str, keep_default_na=False)
        if "impression" not in st.columns or "dicom_id" not in st.columns:
            raise InputDataError(f"{studies}: needs the columns dicom_id and impression")
        impressions = dict(zip(st["dicom_id"], st["impression"], strict=True))
        for row in rows:
            row["prompt"] = impressions.get(row["dicom_id"], "")
    else:
        raise InputDataError(f"unknown prompt source {prompt_source!r}: use phrase or impression")
    return rows


def _natural_rows(table: Path, prompt_source: str) -> list[dict]:
    """samples.csv rows in the shape of MS-CXR rows: the concept is the class and its words are read."""
    from cxr_fgbg.io import read_table

    if prompt_source != "phrase":
        raise InputDataError(f"{table}: a natural-image index has no report impressions; use --prompt phrase")
    frame = read_table(table, ("sample_id", "image_path", "concept", "prompt", "boxes"))
    rows = []
    for row in frame.to_dict("records"):
        rows.append({**row, "dicom_id": row["sample_id"], "category_name": row["concept"],
                     "label_text": row["prompt"], "words": tuple(str(row["concept"]).split())})
    return rows


def _boxes(row: dict[str, Any]) -> np.ndarray:
    try:
        boxes = np.asarray(json.loads(row["boxes"] or "[]"), dtype=np.float32).reshape(-1, 4)
    except (json.JSONDecodeError, ValueError) as exc:
        raise InputDataError(
            f"ms_cxr.csv sample {row['sample_id']}: boxes are not a JSON list of [x, y, w, h]"
        ) from exc
    return boxes


def localize_index(
    localizer: Localizer,
    index_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    prompt_source: str | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> LocalizeSummary:
    """Heat maps and preliminary masks for every sample of the index (resumable)."""
    from tqdm.auto import tqdm

    settings = localizer.settings
    rows, root = read_index(index_dir, prompt_source or settings.prompt)
    if limit is not None:
        rows = rows[:limit]
    out = Path(out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    skipped = SkippedLog(out / "skipped.csv")
    vocabulary = build_vocabulary(settings.vocabulary, settings.replace_vocabulary)
    summary = LocalizeSummary(out_dir=out)
    records: dict[str, dict[str, Any]] = {}
    pending: list[_Job] = []
    for position, row in enumerate(rows):
        sid = row["sample_id"]
        skipped.forget(sample_id=sid)  # an earlier run's reason is replaced by this run's outcome
        npz = out / "maps" / f"{sid}.npz"
        if npz.is_file():
            try:
                with np.load(npz) as data:
                    prompt = str(data["prompt"])
                records[sid] = _record(row, prompt)
                summary.kept += 1
                continue
            except (OSError, KeyError, ValueError):
                log.warning("%s: unreadable, recomputing", npz)
        job = _plan(localizer, row, vocabulary, position, skipped)
        if job is not None:
            pending.append(job)
    group = max(1, settings.batch_size)
    bar = tqdm(total=len(pending), desc="localize", unit="sample", disable=not progress)
    for start in range(0, len(pending), group):
        for job, result in _run_group(localizer, pending[start:start + group], root, skipped):
            _write_sample(localizer, job, result, out, root, summary)
            records[job.row["sample_id"]] = _record(job.row, job.prompt)
            summary.computed += 1
        bar.update(len(pending[start:start + group]))
        _write_table(out, rows, records)
    bar.close()
    _write_table(out, rows, records)
    # heatmaps.csv's image paths are relative to the image root: record it, so that later stages
    # (refine, segment) resolve them without being told the root again.
    write_json_atomic(out / "index.json", {"mimic_root": str(Path(root).resolve()),
                                           "source_index": str(Path(index_dir).resolve())})
    skipped.write()
    summary.skipped = len(skipped)
    summary.skip_reasons = skipped.reasons()
    return summary


def _record(row: dict[str, Any], prompt: str) -> dict[str, Any]:
    return {
        "sample_id": row["sample_id"], "dicom_id": row["dicom_id"], "category_name": row["category_name"],
        "label_text": row["label_text"], "split": row.get("split", ""), "prompt": prompt,
        "npz_path": f"maps/{row['sample_id']}.npz", "image_path": row["image_path"],
    }


def _write_table(out: Path, rows: list[dict], records: dict[str, dict[str, Any]]) -> None:
    import pandas as pd

    ordered = [records[r["sample_id"]] for r in rows if r["sample_id"] in records]
    write_csv_atomic(out / "heatmaps.csv", pd.DataFrame(ordered, columns=list(HEATMAP_COLUMNS)))


def _plan(localizer: Localizer, row: dict[str, Any], vocabulary: dict, position: int,
          skipped: SkippedLog) -> _Job | None:
    sid, where = row["sample_id"], row["image_path"]
    prompt = (row.get("prompt") or "").strip()
    if not prompt:
        skipped.add(where, "empty prompt (no label_text / impression for this image)", sample_id=sid)
        return None
    try:
        words = row.get("words") or words_for(row["category_name"], vocabulary)
    except KeyError:
        skipped.add(where, f"no words for finding {row['category_name']!r} (localize.vocabulary)", sample_id=sid)
        return None
    tokenized = localizer.tokenize(prompt)
    spans = find_word_spans(tokenized, words)
    if spans.reason is not None:
        skipped.add(where, spans.reason, sample_id=sid)
        return None
    weights = token_weights(spans, tokenized.n_tokens, localizer.settings.subword_reduce)
    return _Job(row, prompt, spans.token_indices, weights, spans.words, tokenized.tokens, position)


def _run_group(localizer: Localizer, jobs: list[_Job], root: Path, skipped: SkippedLog):
    """Load the group's images, then one batched M-hat computation for all of them."""
    from cxr_fgbg.data.transforms import preprocess_file

    settings = localizer.settings
    ready, pixels, geometries = [], [], []
    for job in jobs:
        path = root / job.row["image_path"]
        try:
            tensor, geometry = preprocess_file(
                path, localizer.image_size, settings.intensity_percentiles, localizer.channels, settings.fit
            )
        except InputDataError as exc:
            skipped.add(job.row["image_path"], f"unreadable image: {exc}", sample_id=job.row["sample_id"])
            continue
        ready.append(job)
        pixels.append(tensor)
        geometries.append(geometry)
    if not ready:
        return []
    maps = localizer.latent_token_maps(
        torch.stack(pixels), [j.prompt for j in ready], [j.row["sample_id"] for j in ready]
    )
    results = []
    for job, latent, geometry in zip(ready, maps, geometries, strict=True):
        n = len(job.weights)
        combined = torch.tensordot(torch.as_tensor(job.weights, dtype=torch.float32), latent[:n].cpu(), 1)
        results.append((job, (combined, geometry)))
    return results


def _write_sample(localizer: Localizer, job: _Job, result: tuple, out: Path, root: Path,
                  summary: LocalizeSummary) -> None:
    import torch.nn.functional as F

    combined, geometry = result
    settings = localizer.settings
    sid = job.row["sample_id"]
    heatmap = localizer.to_image(combined, geometry)
    # M_pre on the model grid (where the paper's 3x3 filter is defined), valid pixels only, then mapped back.
    model_map = F.interpolate(combined[None, None].float(), size=tuple(geometry.model_hw), mode="bilinear",
                              align_corners=False)[0, 0].numpy()
    gmm = binarize_gmm(model_map, geometry.valid_model_mask(), seed=derive_seed(localizer.seed, "gmm", sid),
                       majority_filter=settings.majority_filter)
    if gmm.reason is not None:
        summary.empty_masks += 1
        log.debug("sample %s: empty preliminary mask (%s)", sid, gmm.reason)
    mask = geometry.map_to_original(gmm.mask.astype(np.float32), "nearest")
    mask_pre = (np.nan_to_num(mask, nan=0.0) > 0.5).astype(np.uint8)
    boxes = _boxes(job.row)
    save_npz_atomic(
        out / "maps" / f"{sid}.npz",
        heatmap=heatmap.astype(np.float32),
        mask_pre=mask_pre,
        boxes=boxes.astype(np.float32),
        prompt=np.array(job.prompt),
        tokens=np.array(job.tokens),
        token_indices=np.array(job.token_indices, dtype=np.int64),
        words=np.array(job.words),
        category_name=np.array(job.row["category_name"]),
        geometry=np.array(geometry.to_json()),
    )
    if settings.nifti:
        _write_nifti(out / "maps_nifti" / f"{sid}.nii.gz", heatmap)
    if job.position < settings.overlays:
        _write_overlay(out / "overlays" / f"{sid}.png", root / job.row["image_path"], job, heatmap, mask_pre,
                       boxes, localizer)


def _write_nifti(path: Path, heatmap: np.ndarray) -> None:
    """NIfTI stores (x, y): the (H, W) map is written transposed, as a single slice, unit spacing."""
    import nibabel as nib

    image = nib.Nifti1Image(np.ascontiguousarray(heatmap.T[:, :, None]), affine=np.eye(4))
    with atomic_path(path, suffix=".nii.gz") as tmp:
        nib.save(image, tmp)


def _write_overlay(path: Path, image_path: Path, job: _Job, heatmap: np.ndarray, mask: np.ndarray,
                   boxes: np.ndarray, localizer: Localizer) -> None:
    """Image, heat map (jet, 40 %), preliminary mask (white contour) and boxes (green), for a quick look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from cxr_fgbg.data.transforms import load_image, scale_intensity

    image = scale_intensity(load_image(image_path), localizer.settings.intensity_percentiles)
    if image.ndim == 3:
        image = image.mean(axis=-1)
    fig, ax = plt.subplots(figsize=(5, 5 * image.shape[0] / image.shape[1]))
    ax.imshow(image, cmap="gray")
    ax.imshow(np.ma.masked_invalid(heatmap), cmap="jet", alpha=0.4)
    if mask.any():
        ax.contour(mask, levels=[0.5], colors="white", linewidths=1)
    for x, y, w, h in boxes:
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="lime", linewidth=1.5))
    ax.set_title(f"{job.row['category_name']}: {', '.join(job.words)}", fontsize=9)
    ax.axis("off")
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight")
    plt.close(fig)

