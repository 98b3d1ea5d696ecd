"""Torch datasets over the index tables: (image, tokens) for fine-tuning, (image, prompt, boxes,
geometry) for localisation and evaluation.

Both read the CSVs the index commands write (``studies.csv``, ``ms_cxr.csv``, natural
``samples.csv``) with ``image_path`` relative to a root folder, and preprocess through
:func:`cxr_fgbg.data.transforms.preprocess_file` (optionally cached). Nothing is flipped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cxr_fgbg.data.cache import PreprocessedCache
from cxr_fgbg.data.transforms import Fit, preprocess_file, read_image
from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import read_table

__all__ = ["ImageTextDataset", "LocalizationDataset", "collate_localization", "read_table", "resolve_root"]

TableLike = str | os.PathLike[str] | pd.DataFrame


def resolve_root(table: TableLike, root: str | os.PathLike[str] | None) -> Path:
    """The folder `image_path` is relative to: `root` if given, else from ``index.json`` beside the CSV
    (``mimic_root`` for MIMIC tables, ``root`` for natural-image tables)."""
    if root is not None:
        return Path(root)
    if not isinstance(table, pd.DataFrame):
        index_json = Path(table).parent / "index.json"
        if index_json.is_file():
            info = json.loads(index_json.read_text(encoding="utf-8"))
            for key in ("mimic_root", "root"):
                if info.get(key):
                    return Path(info[key])
    raise InputDataError(f"{table if not isinstance(table, pd.DataFrame) else 'table'}: no image root given "
                         "and no index.json with 'mimic_root' or 'root' beside it")


def parse_boxes(text: Any, where: str) -> np.ndarray:
    """The ``boxes`` column: a JSON list of [x, y, w, h] -> float32 (n, 4)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return np.zeros((0, 4), np.float32)
    try:
        boxes = np.asarray(json.loads(text) if isinstance(text, str) else text, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise InputDataError(f"{where}: boxes {text!r} is not a JSON list of [x, y, w, h]") from exc
    if boxes.size == 0:
        return np.zeros((0, 4), np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputDataError(f"{where}: boxes {text!r} is not a JSON list of [x, y, w, h]")
    return boxes


class ImageTextDataset(Dataset):
    """Rows of ``studies.csv`` -> {"pixel_values": (C, H, W) in [-1, 1], "input_ids": (L,), "text"}.

    `tokenizer` is any Hugging Face tokenizer; texts are padded/truncated to its ``model_max_length``.
    """

    def __init__(self, index_csv: TableLike, root: str | os.PathLike[str] | None, tokenizer: Any,
                 size: int = 512, cache: PreprocessedCache | None = None, text_column: str = "text",
                 percentiles: tuple[float, float] | None = (0.5, 99.5), channels: int = 3,
                 fit: Fit = "crop") -> None:
        self.frame = read_table(index_csv, ["image_path", text_column])
        self.root = resolve_root(index_csv, root)
        self.tokenizer, self.size, self.cache = tokenizer, int(size), cache
        self.text_column, self.percentiles, self.channels, self.fit = text_column, percentiles, channels, fit

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.frame.iloc[index]
        image, _ = preprocess_file(self.root / row["image_path"], self.size, self.percentiles, self.channels,
                                   self.fit, self.cache)
        text = str(row[self.text_column])
        tokens = self.tokenizer(text, padding="max_length", truncation=True,
                                max_length=self.tokenizer.model_max_length, return_tensors="pt")
        return {"pixel_values": image * 2.0 - 1.0, "input_ids": tokens["input_ids"][0], "text": text}


class LocalizationDataset(Dataset):
    """Rows of ``ms_cxr.csv`` or natural ``samples.csv`` -> one sample for localisation / evaluation.

    Yields ``image`` (C, H, W) in [0, 1], ``pixel_values`` (same in [-1, 1], for the VAE), ``prompt``
    (MS-CXR: ``label_text``; natural: ``prompt``), ``boxes`` (float32 (n, 4) in ORIGINAL pixels),
    ``boxes_model`` (the same in model pixels), ``geometry``, ``sample_id``, ``category_name``
    (natural: the concept), ``image_path``, ``split`` and, when the row has a ``mask_path``,
    ``mask`` (uint8 (H, W) in original pixels). Use `collate_localization` in a DataLoader.
    """

    def __init__(self, samples_csv: TableLike, root: str | os.PathLike[str] | None, size: int = 512,
                 cache: PreprocessedCache | None = None,
                 percentiles: tuple[float, float] | str | None = "auto", channels: int = 3,
                 fit: Fit = "crop") -> None:
        self.frame = read_table(samples_csv, ["sample_id", "image_path", "boxes"])
        if "label_text" not in self.frame.columns and "prompt" not in self.frame.columns:
            raise InputDataError(f"{samples_csv if not isinstance(samples_csv, pd.DataFrame) else 'table'}: "
                                 "missing column label_text (MS-CXR) or prompt (natural images)")
        self.root = resolve_root(samples_csv, root)
        self.size, self.cache, self.channels, self.fit = int(size), cache, channels, fit
        natural = "concept" in self.frame.columns
        # "auto": chest X-ray tables get robust percentiles, natural images their bit depth
        self.percentiles = (None if natural else (0.5, 99.5)) if percentiles == "auto" else percentiles

    def __len__(self) -> int:
        return len(self.frame)

    def __getitem__(self, index: int) -> dict[str, Any]:
        row = self.frame.iloc[index]
        where = f"sample {row['sample_id']}"
        image, geometry = preprocess_file(self.root / row["image_path"], self.size, self.percentiles,
                                          self.channels, self.fit, self.cache)
        boxes = parse_boxes(row["boxes"], where)
        prompt = row["label_text"] if row.get("label_text") else row.get("prompt", "")
        sample: dict[str, Any] = {
            "sample_id": str(row["sample_id"]),
            "image": image,
            "pixel_values": image * 2.0 - 1.0,
            "prompt": str(prompt),
            "label_text": str(row.get("label_text", prompt)),
            "category_name": str(row.get("category_name", row.get("concept", ""))),
            "boxes": boxes,
            "boxes_model": geometry.boxes_to_model(boxes).astype(np.float32),
            "geometry": geometry,
            "image_path": str(row["image_path"]),
            "split": str(row.get("split", "")),
        }
        for key in ("dicom_id", "concept"):
            if key in row:
                sample[key] = str(row[key])
        mask_path = str(row.get("mask_path", "") or "")
        if mask_path:
            mask, full = read_image(self.root / mask_path)
            mask = mask.mean(axis=-1) if mask.ndim == 3 else mask
            if mask.shape != geometry.original_hw:
                raise InputDataError(f"{where}: mask {mask_path} is {mask.shape}, image is {geometry.original_hw}")
            # foreground = at least half of full scale (CUB's soft masks: most annotators agree)
            sample["mask"] = (mask >= (full or 1.0) / 2).astype(np.uint8)
        return sample


def collate_localization(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the image tensors; keep boxes, masks, geometries and strings as lists (sizes differ)."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item.get(key) for item in batch]
        if key in ("image", "pixel_values"):
            out[key] = torch.stack(values)
        else:
            out[key] = values
    return out
