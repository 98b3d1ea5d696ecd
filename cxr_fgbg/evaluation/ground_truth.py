"""Finding the ground truth of a predicted mask: a mask file or boxes, matched by a documented rule.

`--ground-truth` may be (first match wins):
1. a CSV file with `sample_id` (or `dicom_id` + `category_name`) and `mask_path` (relative to the CSV's
   folder, the `root` given, the root of an index.json beside the CSV, or the CSV's parent) or `boxes`
   (JSON list of [x, y, w, h]; with `image_width`/`image_height` or `width`/`height` the boxes are rescaled
   to the predicted mask's size);
2. a folder holding `ground_truth.csv` (the phantom's `ground-truth/` folder), read as in 1;
3. a folder holding `samples.csv` (natural-image index): `mask_path` relative to the root in its
   index.json when given, else its `boxes`;
4. a folder holding `ms_cxr.csv` (MS-CXR index): its `boxes`;
5. any other folder: `{sample_id}.png`.
Rows are matched on `sample_id` when both tables have it, else on (`dicom_id`, `category_name`) taken from
masks.csv or from the `--index` folder's ms_cxr.csv, else on the ground-truth file name
(`{sample_id}.png`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.evaluation.boxes import as_boxes, boxes_to_mask, scale_boxes
from cxr_fgbg.evaluation.images import image_root_from_index

__all__ = ["GroundTruth", "binarise", "read_mask_png"]


def binarise(mask: np.ndarray) -> np.ndarray:
    """Foreground of a stored mask: >= 128 for 0..255 masks (soft CUB masks at one half), > 0 for 0/1 masks."""
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr >= 128 if arr.max(initial=0) > 1 else arr > 0


def read_mask_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return binarise(np.asarray(img))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{path}: not a readable mask image ({exc})") from exc


@dataclass
class _Entry:
    category: str
    split: str
    mask_path: Path | None
    boxes: np.ndarray | None
    size: tuple[float, float] | None  # (width, height) the boxes refer to


def _resolve_mask(base: Path, value: str, roots: tuple[Path, ...] = ()) -> Path:
    """`value` relative to `base`, to one of `roots`, to `base`'s parent, else its file name in `base`
    (tables differ in this)."""
    path = Path(value)
    if path.is_absolute():
        return path
    for candidate in (base / path, *(root / path for root in roots), base.parent / path, base / path.name):
        if candidate.is_file():
            return candidate
    return base / path


class GroundTruth:
    """Ground truth indexed by sample key; `truth_for(row, shape)` gives the boolean mask at `shape`."""

    def __init__(self, source: Path, index_dir: Path | None = None, root: Path | None = None) -> None:
        self.source = Path(source)
        self.kind, table, base = self._locate(self.source)
        self.roots = self._roots(self.source, root)
        self.by_sample: dict[str, _Entry] = {}
        self.by_pair: dict[tuple[str, str], _Entry] = {}
        self.folder = base if table is None else None
        if table is not None:
            self._index(table, base)
        self.sample_info: dict[str, tuple[str, str]] = {}
        if index_dir is not None and (Path(index_dir) / "ms_cxr.csv").is_file():
            import pandas as pd

            idx = pd.read_csv(Path(index_dir) / "ms_cxr.csv", dtype=str, keep_default_na=False)
            if {"sample_id", "dicom_id", "category_name"} <= set(idx.columns):
                self.sample_info = {r.sample_id: (r.dicom_id, r.category_name) for r in idx.itertuples()}

    @staticmethod
    def _locate(source: Path) -> tuple[str, Any, Path]:
        import pandas as pd

        def read(path: Path) -> Any:
            return pd.read_csv(path, dtype=str, keep_default_na=False)

        if source.is_file():
            return "csv", read(source), source.parent
        if not source.is_dir():
            raise InputDataError(f"{source}: ground truth not found (a folder or a CSV file is expected)")
        if (source / "ground_truth.csv").is_file():
            return "phantom", read(source / "ground_truth.csv"), source
        if (source / "samples.csv").is_file():
            return "natural-index", read(source / "samples.csv"), image_root_from_index(source) or source
        if (source / "ms_cxr.csv").is_file():
            return "ms-cxr-index", read(source / "ms_cxr.csv"), source
        return "folder", None, source

    @staticmethod
    def _roots(source: Path, root: Path | None) -> tuple[Path, ...]:
        """More folders relative mask paths may start from: `root`, and the root an index.json beside a
        CSV records (a natural-image samples.csv given as a file)."""
        roots = [Path(root)] if root is not None else []
        if source.is_file() and (source.parent / "index.json").is_file():
            roots.append(image_root_from_index(source.parent) or source.parent)
        return tuple(roots)

    def _index(self, table: Any, base: Path) -> None:
        columns = set(table.columns)
        if "mask_path" not in columns and "boxes" not in columns:
            raise InputDataError(f"{self.source}: ground truth needs a mask_path or a boxes column")
        if "sample_id" not in columns and not {"dicom_id", "category_name"} <= columns:
            raise InputDataError(f"{self.source}: ground truth needs sample_id or dicom_id + category_name")
        for number, row in enumerate(table.to_dict("records"), start=2):
            mask_path = _resolve_mask(base, row["mask_path"], self.roots) if row.get("mask_path") else None
            boxes, size = None, None
            if mask_path is None and row.get("boxes"):
                try:
                    boxes = as_boxes(json.loads(row["boxes"]))
                except (ValueError, TypeError) as exc:
                    raise InputDataError(f"{self.source}, line {number}: unusable boxes ({exc})") from exc
                for wk, hk in (("image_width", "image_height"), ("width", "height")):
                    if row.get(wk) and row.get(hk):
                        size = (float(row[wk]), float(row[hk]))
                        break
            if mask_path is None and boxes is None:
                continue  # no ground truth in this row: its predictions are skipped as "no ground truth"
            entry = _Entry(
                str(row.get("category_name") or row.get("concept") or "all"), str(row.get("split", "")),
                mask_path, boxes, size,
            )
            if row.get("sample_id"):
                self.by_sample[row["sample_id"]] = entry
            if row.get("dicom_id") and row.get("category_name"):
                self.by_pair[(row["dicom_id"], row["category_name"])] = entry
            if mask_path is not None:
                self.by_sample.setdefault(mask_path.stem, entry)

    def entry_for(self, row: dict[str, Any]) -> _Entry:
        """The ground truth of one masks.csv row; InputDataError (the row is skipped) when none matches."""
        sample_id = str(row.get("sample_id", ""))
        if sample_id in self.by_sample:
            return self.by_sample[sample_id]
        pair = (str(row.get("dicom_id", "")), str(row.get("category_name", "")))
        if not all(pair):
            pair = self.sample_info.get(sample_id, ("", ""))
        if pair in self.by_pair:
            return self.by_pair[pair]
        if self.folder is not None and (self.folder / f"{sample_id}.png").is_file():
            return _Entry(str(row.get("category_name") or "all"), "", self.folder / f"{sample_id}.png", None, None)
        raise InputDataError(f"no ground truth for sample {sample_id!r} in {self.source}")

    @staticmethod
    def truth_mask(entry: _Entry, shape: tuple[int, int]) -> np.ndarray:
        """The boolean ground truth at the predicted mask's `shape` (boxes rescaled, masks must match)."""
        if entry.mask_path is not None:
            if not entry.mask_path.is_file():
                raise InputDataError(f"{entry.mask_path}: ground-truth mask not found")
            truth = read_mask_png(entry.mask_path)
            if truth.shape != tuple(shape):
                raise InputDataError(
                    f"{entry.mask_path}: ground truth is {truth.shape}, the prediction {tuple(shape)}"
                )
            return truth
        boxes = entry.boxes
        if boxes is None:  # _index never registers such an entry; a hand-made one gets a clear error
            raise InputDataError("the ground truth has neither a mask nor boxes")
        if entry.size is not None and entry.size != (shape[1], shape[0]):
            boxes = scale_boxes(boxes, entry.size, (shape[1], shape[0]))
        return boxes_to_mask(boxes, shape)
