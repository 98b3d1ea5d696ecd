"""Natural-image datasets as one table: ``samples.csv`` + ``index.json`` + ``skipped.csv``.

A reader (generic folder / CSV here, CUB, Stanford Dogs, Stanford Cars, Human3.6M in
``natural_readers``) yields :class:`NaturalRecord` rows or :class:`Skip` reasons; `write_natural_index`
checks every record against the image on disk (readable, size, mask size, boxes inside) and writes:

``samples.csv``: ``sample_id, image_path, concept, prompt, mask_path, boxes, split, width, height,
class_name`` — paths relative to the index root (``index.json``: ``root``), ``boxes`` a JSON list of
``[x, y, w, h]`` in pixels of the image on disk (x, y the top-left corner, pixel edges: a box covering
pixels 0..9 has x = 0, w = 10).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_fgbg.data.settings import NaturalSettings
from cxr_fgbg.errors import InputDataError

__all__ = [
    "DATASETS",
    "IMAGE_SUFFIXES",
    "NaturalRecord",
    "Skip",
    "index_natural",
    "read_csv_table",
    "read_folder",
    "write_natural_index",
]

_LOG = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
SAMPLE_COLUMNS = ["sample_id", "image_path", "concept", "prompt", "mask_path", "boxes", "split", "width",
                  "height", "class_name"]
DATASETS = ("folder", "cub", "dogs", "cars", "h36m")
_SPLIT_NAMES = {"train": "train", "training": "train", "val": "validate", "valid": "validate",
                "validation": "validate", "validate": "validate", "test": "test", "testing": "test"}


@dataclass
class NaturalRecord:
    """One image with its concept and optional ground truth; paths are absolute or relative to the root."""

    image_path: str
    concept: str
    boxes: list[list[float]] = field(default_factory=list)
    mask_path: str = ""
    split: str = ""
    class_name: str = ""
    prompt: str | None = None
    sample_id: str | None = None
    annotated_size: tuple[int, int] | None = None  # (width, height) the boxes refer to, if not the image's


@dataclass
class Skip:
    """An item a reader could not turn into a record (unparsable annotation, unknown image...)."""

    path: str
    reason: str


# --------------------------------------------------------------------------- generic readers
def read_folder(root: Path, concept: str | None = None) -> Iterator[NaturalRecord | Skip]:
    """``ROOT/<concept>/**/image`` (or ``ROOT/<split>/<concept>/**``); masks, when present, in
    ``ROOT/masks/<same relative path>.png``. Folder names become concepts (``_`` -> space)."""
    if not root.is_dir():
        raise InputDataError(f"{root}: folder not found")
    masks = root / "masks"
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0] == "masks" or path.name.startswith("."):
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if path.suffix.lower() not in {".csv", ".json", ".txt", ".md"}:
                yield Skip(str(rel), f"not an image file type ({path.suffix or 'no suffix'})")
            continue
        parts = list(rel.parts[:-1])
        split = _SPLIT_NAMES.get(parts[0].lower(), "") if parts else ""
        if split:
            parts = parts[1:]
        word = concept or (parts[0].replace("_", " ").strip() if parts else "")
        if not word:
            yield Skip(str(rel), "no concept: put images in ROOT/<concept>/ or pass --concept")
            continue
        mask = masks / rel.with_suffix(".png")
        yield NaturalRecord(str(rel), word, mask_path=str(mask.relative_to(root)) if mask.is_file() else "",
                            split=split, class_name=parts[0] if parts else "")


def read_csv_table(csv_path: Path, concept: str | None = None) -> Iterator[NaturalRecord | Skip]:
    """A CSV with ``image_path`` and ``concept`` and/or ``prompt``; optional ``mask_path``, ``boxes``
    (JSON list of [x, y, w, h]) or ``x, y, w, h`` columns, ``split``, ``sample_id``, ``class_name``."""
    import pandas as pd

    if not csv_path.is_file():
        raise InputDataError(f"{csv_path}: file not found")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if "image_path" not in frame.columns:
        raise InputDataError(f"{csv_path}: missing column image_path (has: {', '.join(frame.columns)})")
    if concept is None and "concept" not in frame.columns and "prompt" not in frame.columns:
        raise InputDataError(f"{csv_path}: missing column concept (or prompt); or pass --concept")
    has_xywh = all(c in frame.columns for c in "xywh")
    for number, row in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        where = f"{csv_path.name} line {number}"
        try:
            if row.get("boxes", "").strip():
                boxes = json.loads(row["boxes"])
                if boxes and not isinstance(boxes[0], list):
                    boxes = [boxes]
            elif has_xywh and any(str(row[c]).strip() for c in "xywh"):
                boxes = [[float(row[c]) for c in "xywh"]]
            else:
                boxes = []
        except (ValueError, TypeError, IndexError):
            yield Skip(row["image_path"] or where, f"{where}: boxes not a JSON list of [x, y, w, h] nor numbers")
            continue
        word = row.get("concept", "") or concept or ""
        prompt = row.get("prompt", "") or None
        if not row["image_path"].strip():
            yield Skip(where, "empty image_path")
            continue
        if not word and not prompt:
            yield Skip(row["image_path"], f"{where}: empty concept and prompt")
            continue
        yield NaturalRecord(
            row["image_path"], word or prompt or "", boxes=boxes, mask_path=row.get("mask_path", ""),
            split=_SPLIT_NAMES.get(row.get("split", "").strip().lower(), row.get("split", "").strip()),
            class_name=row.get("class_name", ""), prompt=prompt, sample_id=row.get("sample_id") or None,
        )


# --------------------------------------------------------------------------- validation and output
def write_natural_index(records: Iterable[NaturalRecord | Skip], root: Path, out: Path, dataset: str,
                        settings: NaturalSettings | None = None, total: int | None = None,
                        progress: bool = True) -> dict[str, Any]:
    """Check each record against its files and write samples.csv, index.json and skipped.csv to `out`.

    Returns the summary stored in index.json. A bad record goes to skipped.csv with its reason.
    """
    import pandas as pd
    from tqdm import tqdm

    from cxr_fgbg.io import SkippedLog, write_csv_atomic, write_json_atomic

    settings = settings or NaturalSettings()
    root = root.resolve()
    skipped = SkippedLog(out / "skipped.csv", resume=False)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for item in tqdm(records, total=total, desc=f"index {dataset}", unit="img", disable=not progress):
        if isinstance(item, Skip):
            skipped.add(item.path, item.reason)
            continue
        row, reason = _check_record(item, root, settings)
        if reason:
            skipped.add(item.image_path, reason)
            continue
        sample_id = item.sample_id or _slug(f"{dataset}_{Path(row['image_path']).with_suffix('')}")
        if sample_id in seen:
            skipped.add(item.image_path, f"duplicate sample_id {sample_id}")
            continue
        seen.add(sample_id)
        rows.append({"sample_id": sample_id, **row})
    frame = pd.DataFrame(rows, columns=SAMPLE_COLUMNS)
    out.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(out / "samples.csv", frame)
    skipped.write()
    summary = {
        "dataset": dataset,
        "root": str(root),
        "samples": len(frame),
        "skipped": len(skipped),
        "skipped_reasons": skipped.reasons(),
        "splits": {str(k): int(v) for k, v in frame["split"].value_counts().items()} if len(frame) else {},
        "prompt_template": settings.prompt_template,
        "box_format": "x, y, w, h in pixels of the image on disk (x, y top-left corner)",
    }
    write_json_atomic(out / "index.json", summary)
    _LOG.info("%s: %d samples; %s", dataset, len(frame), skipped.summary())
    return summary


def _check_record(record: NaturalRecord, root: Path, settings: NaturalSettings) -> tuple[dict[str, Any], str]:
    from PIL import Image

    image = _resolve(record.image_path, root)
    if not image.is_file():
        return {}, "image file not found"
    try:
        with Image.open(image) as img:
            width, height = img.size
            img.verify()  # structure check without a full decode
    except Exception as exc:
        return {}, f"unreadable image ({type(exc).__name__}: {exc})"
    mask_rel = ""
    if record.mask_path:
        mask = _resolve(record.mask_path, root)
        if not mask.is_file():
            return {}, f"mask file not found: {record.mask_path}"
        try:
            with Image.open(mask) as img:
                mask_size = img.size
        except Exception as exc:
            return {}, f"unreadable mask {record.mask_path} ({type(exc).__name__})"
        if mask_size != (width, height):
            return {}, f"mask is {mask_size[0]}x{mask_size[1]}, image is {width}x{height}"
        mask_rel = _relative(mask, root)
    boxes, reason = _check_boxes(record, width, height, settings.box_tolerance)
    if reason:
        return {}, reason
    prompt = record.prompt or settings.prompt_template.format(concept=record.concept)
    return {
        "image_path": _relative(image, root),
        "concept": record.concept,
        "prompt": prompt,
        "mask_path": mask_rel,
        "boxes": json.dumps(boxes),
        "split": record.split,
        "width": width,
        "height": height,
        "class_name": record.class_name,
    }, ""


def _check_boxes(record: NaturalRecord, width: int, height: int,
                 tolerance: float) -> tuple[list[list[float]], str]:
    """Rescale to the image on disk if annotated at another size, clip small overshoots, refuse the rest."""
    sx = sy = 1.0
    if record.annotated_size and tuple(record.annotated_size) != (width, height):
        sx, sy = width / record.annotated_size[0], height / record.annotated_size[1]
    checked = []
    for number, box in enumerate(record.boxes, start=1):
        try:
            x, y, w, h = (float(v) for v in box)
        except (TypeError, ValueError):
            return [], f"box {number} {box!r} is not [x, y, w, h]"
        x, y, w, h = x * sx, y * sy, w * sx, h * sy
        if not (w > 0 and h > 0):
            return [], f"box {number} has non-positive size (w={w:g}, h={h:g})"
        if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
            return [], f"box {number} [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} image"
        x0, y0 = max(x, 0.0), max(y, 0.0)
        x1, y1 = min(x + w, float(width)), min(y + h, float(height))
        checked.append([round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)])
    return checked, ""


def _resolve(path: str, root: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else root / candidate


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.resolve(), root)).as_posix()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text).replace(os.sep, "__").replace("/", "__")).strip("_")


# --------------------------------------------------------------------------- dispatch
def index_natural(dataset: str, root: str | os.PathLike[str], out: str | os.PathLike[str],
                  settings: NaturalSettings | None = None, csv: str | os.PathLike[str] | None = None,
                  annotations: str | os.PathLike[str] | None = None,
                  concept: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Index one dataset (`dataset` in DATASETS) found at `root`; returns the index.json summary."""
    from cxr_fgbg.data import natural_readers as readers

    settings = settings or NaturalSettings()
    root_path, out_path = Path(root), Path(out)
    if dataset not in DATASETS:
        raise InputDataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if not root_path.exists():
        raise InputDataError(f"{root_path}: dataset root not found")
    word = concept or settings.concepts.get(dataset)
    if dataset == "folder":
        if csv is not None or root_path.is_file():
            table = Path(csv) if csv is not None else root_path
            base = root_path if root_path.is_dir() else root_path.parent
            records = read_csv_table(table, concept)
        else:
            base, records = root_path, read_folder(root_path, concept)
        return write_natural_index(records, base, out_path, dataset, settings, progress=progress)
    if dataset == "cub":
        base, records, total = readers.read_cub(root_path, word)
    elif dataset == "dogs":
        base, records, total = readers.read_dogs(root_path, word)
    elif dataset == "cars":
        base, records, total = readers.read_cars(root_path, word)
    else:
        base, records, total = readers.read_h36m(root_path, word, annotations, settings)
    return write_natural_index(records, base, out_path, dataset, settings, total=total, progress=progress)
