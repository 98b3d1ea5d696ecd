"""MS-CXR phrase-grounding annotations: read (CSV v1.0.0 / v1.1.0, COCO JSON), validate, group, resolve.

MS-CXR gives one row per box in pixels of the ORIGINAL MIMIC-CXR DICOM. The evaluation needs one
sample per (image, category, phrase) with all its boxes in pixels of the image that is actually on
disk, which is often a downsampled MIMIC-CXR-JPG copy: hence the resolver rescales the boxes and
refuses images whose aspect ratio does not match (a transposed or cropped copy would move the boxes).
Bad rows are never dropped silently: they are returned with a reason and go to ``skipped.csv``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_fgbg.errors import InputDataError

if TYPE_CHECKING:
    import pandas as pd

    from cxr_fgbg.io import SkippedLog

__all__ = [
    "MS_CXR_CATEGORIES",
    "MS_CXR_COLUMNS",
    "MsCxrSample",
    "category_slug",
    "group_samples",
    "read_ms_cxr",
    "resolve_image",
    "resolve_samples",
    "samples_to_frame",
]

log = logging.getLogger(__name__)

MS_CXR_CATEGORIES: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Lung Opacity",
    "Pleural Effusion",
    "Pneumonia",
    "Pneumothorax",
)
MS_CXR_COLUMNS: tuple[str, ...] = (
    "dicom_id", "category_name", "label_text", "path", "x", "y", "w", "h", "image_width", "image_height",
)
# Columns of the ms_cxr.csv the indexer writes (docs/architecture.md, "Index").
INDEX_COLUMNS: tuple[str, ...] = (
    "sample_id", "dicom_id", "subject_id", "study_id", "category_name", "label_text", "split",
    "image_path", "image_width", "image_height", "boxes", "original_width", "original_height",
)
_CATEGORY_LOOKUP = {name.lower(): name for name in MS_CXR_CATEGORIES}
_IMAGE_SUFFIXES = (".dcm", ".jpg", ".jpeg", ".png")
_IDS_IN_PATH = re.compile(r"p(\d+)/s(\d+)/")

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class MsCxrSample:
    """One (image, category, phrase) with its boxes ``(x, y, w, h)`` in pixels of ``image_width x image_height``."""

    dicom_id: str
    category_name: str
    label_text: str
    boxes: list[Box]
    image_width: int
    image_height: int
    split: str
    path: str
    sample_id: str = ""
    subject_id: str = ""
    study_id: str = ""
    original_width: int = 0
    original_height: int = 0
    rows: list[Any] = field(default_factory=list)


def category_slug(name: str) -> str:
    """``Pleural Effusion`` -> ``pleural_effusion`` (file names, sample ids)."""
    return "_".join(name.lower().split())


def read_ms_cxr(
    csv_or_json_path: str | os.PathLike[str],
    skipped: SkippedLog | None = None,
    tolerance: float = 1.0,
) -> pd.DataFrame:
    """Read MS-CXR (CSV v1.0.0 without ``split``, v1.1.0 with it, or COCO JSON); one row per valid box.

    A missing column is an :class:`InputDataError` naming the column and the file. A row with an unknown
    category, a non-positive box size or a box outside the image (by more than ``tolerance`` pixels;
    within it the box is clipped) is left out: listed in ``df.attrs["invalid"]`` as ``(path, reason)``,
    added to ``skipped`` when given, and counted in a warning.
    """
    import pandas as pd

    file = Path(csv_or_json_path)
    if not file.is_file():
        raise InputDataError(f"MS-CXR annotation file not found: {file}")
    if file.suffix.lower() == ".json":
        frame = _read_coco(file)
    else:
        try:
            frame = pd.read_csv(file, dtype={"dicom_id": str, "path": str, "label_text": str, "split": str})
        except Exception as exc:
            raise InputDataError(f"{file}: cannot read as CSV ({exc})") from exc
        frame["row"] = frame.index + 2  # the line in the file (header is line 1)
    missing = [column for column in MS_CXR_COLUMNS if column not in frame.columns]
    if missing:
        raise InputDataError(
            f"{file}: missing column(s) {', '.join(missing)}; an MS-CXR file needs {', '.join(MS_CXR_COLUMNS)}"
        )
    if "split" not in frame.columns:  # v1.0.0 has no split: every sample is evaluation data
        frame["split"] = ""
    frame["split"] = frame["split"].fillna("").astype(str)
    frame["label_text"] = frame["label_text"].fillna("").astype(str)
    frame["dicom_id"] = frame["dicom_id"].fillna("").astype(str)
    frame["path"] = frame["path"].fillna("").astype(str)

    keep, invalid = [], []
    values: dict[str, list[Any]] = {key: [] for key in ("category_name", "x", "y", "w", "h")}
    for record in frame.to_dict("records"):
        result = _validate_row(record, tolerance)
        if isinstance(result, str):
            where = record.get("path") or record.get("dicom_id") or "?"
            invalid.append((where, f"MS-CXR {file.name} row {record['row']}: {result}"))
            keep.append(False)
            continue
        keep.append(True)
        for key, value in result.items():
            values[key].append(value)
    valid = frame.loc[keep].copy()
    for key, column in values.items():
        valid[key] = column
    valid[["image_width", "image_height"]] = valid[["image_width", "image_height"]].astype(int)
    valid = valid.reset_index(drop=True)
    valid.attrs["invalid"] = invalid
    valid.attrs["source"] = str(file)
    if invalid:
        log.warning("%s: %d of %d MS-CXR rows left out (see skipped.csv)", file.name, len(invalid), len(frame))
    if skipped is not None:
        for where, reason in invalid:
            skipped.add(where, reason)
    return valid


def _validate_row(record: Mapping[str, Any], tolerance: float) -> dict[str, Any] | str:
    """The cleaned values of one row, or the reason it is unusable."""
    category = _CATEGORY_LOOKUP.get(" ".join(str(record.get("category_name", "")).split()).lower())
    if category is None:
        return f"unknown category {record.get('category_name')!r} (expected one of {', '.join(MS_CXR_CATEGORIES)})"
    if not str(record.get("dicom_id", "")).strip():
        return "empty dicom_id"
    if not str(record.get("label_text", "")).strip():
        return "empty label_text"
    try:
        x, y, w, h, width, height = (float(record[k]) for k in ("x", "y", "w", "h", "image_width", "image_height"))
    except (TypeError, ValueError):
        return "box or image size is not a number"
    if not all(math.isfinite(v) for v in (x, y, w, h, width, height)):
        return "box or image size is missing"
    if width <= 0 or height <= 0:
        return f"non-positive image size {width:g}x{height:g}"
    if w <= 0 or h <= 0:
        return f"box with non-positive size (w={w:g}, h={h:g})"
    if x < -tolerance or y < -tolerance or x + w > width + tolerance or y + h > height + tolerance:
        return f"box ({x:g}, {y:g}, {w:g}, {h:g}) outside the {width:g}x{height:g} image"
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, width), min(y + h, height)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        return f"box ({x:g}, {y:g}, {w:g}, {h:g}) outside the {width:g}x{height:g} image"
    return {"category_name": category, "x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0}


def _read_coco(file: Path) -> pd.DataFrame:
    """Flatten the COCO-format MS-CXR JSON into the CSV's columns (one row per annotation)."""
    import pandas as pd

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputDataError(f"{file}: a COCO file must be a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise InputDataError(f"{file}: missing key {key!r} of the COCO format")
    categories = {item.get("id"): item.get("name", "") for item in data["categories"]}
    images = {item.get("id"): item for item in data["images"]}
    rows = []
    for number, ann in enumerate(data["annotations"]):
        image = images.get(ann.get("image_id"), {})
        path = str(image.get("path") or image.get("file_name") or "")
        bbox = list(ann.get("bbox") or [])
        if len(bbox) != 4:
            bbox = [float("nan")] * 4
        rows.append({
            "dicom_id": str(image.get("dicom_id") or (Path(path).stem if path else "")),
            "category_name": categories.get(ann.get("category_id"), str(ann.get("category_id"))),
            "label_text": ann.get("label_text") or image.get("label_text") or ann.get("caption") or "",
            "path": path,
            "x": bbox[0], "y": bbox[1], "w": bbox[2], "h": bbox[3],
            "image_width": image.get("width", float("nan")),
            "image_height": image.get("height", float("nan")),
            "split": str(image.get("split") or ann.get("split") or ""),
            "row": f"annotation {number}",
        })
    columns = [*MS_CXR_COLUMNS, "split", "row"]
    return pd.DataFrame(rows, columns=columns)


def group_samples(df: pd.DataFrame) -> list[MsCxrSample]:
    """One sample per (dicom_id, category_name, label_text), boxes in file order.

    ``sample_id`` is ``{dicom_id}__{category_slug}``, with ``__{crc32 of the phrase}`` appended when
    the image has several phrases of that category, so it is stable and usable as a file name.
    """
    samples: dict[tuple[str, str, str], dict[str, Any]] = {}
    for record in df.to_dict("records"):
        key = (str(record["dicom_id"]), str(record["category_name"]), str(record["label_text"]))
        entry = samples.get(key)
        if entry is None:
            entry = samples[key] = {"record": record, "boxes": [], "rows": []}
        entry["boxes"].append((float(record["x"]), float(record["y"]), float(record["w"]), float(record["h"])))
        entry["rows"].append(record.get("row"))
    per_pair: dict[tuple[str, str], int] = {}
    for dicom_id, category, _ in samples:
        per_pair[(dicom_id, category)] = per_pair.get((dicom_id, category), 0) + 1
    result = []
    for (dicom_id, category, label_text), entry in samples.items():
        record = entry["record"]
        sample_id = f"{dicom_id}__{category_slug(category)}"
        if per_pair[(dicom_id, category)] > 1:
            sample_id += f"__{zlib.crc32(label_text.encode('utf-8')):08x}"
        subject_id, study_id = _ids_from_path(str(record["path"]))
        width, height = int(record["image_width"]), int(record["image_height"])
        result.append(MsCxrSample(
            dicom_id=dicom_id, category_name=category, label_text=label_text, boxes=entry["boxes"],
            image_width=width, image_height=height, split=str(record.get("split", "") or ""),
            path=str(record["path"]), sample_id=sample_id, subject_id=subject_id, study_id=study_id,
            original_width=width, original_height=height, rows=entry["rows"],
        ))
    return result


def _ids_from_path(path: str) -> tuple[str, str]:
    match = _IDS_IN_PATH.search(path.replace("\\", "/"))
    return (match.group(1), match.group(2)) if match else ("", "")


def resolve_image(root: str | os.PathLike[str], path: str) -> Path | None:
    """The file for an MS-CXR ``path`` (``files/...``, may say ``.dcm``) under a MIMIC-CXR(-JPG) root.

    Tries the path as given, then the same stem with each image suffix (``.dcm``, ``.jpg``, ``.png``).
    """
    base = Path(root)
    relative = Path(path.replace("\\", "/").lstrip("/"))
    candidates = [relative] + [relative.with_suffix(suffix) for suffix in _IMAGE_SUFFIXES]
    for candidate in candidates:
        full = base / candidate
        if full.is_file():
            return full
    return None


def resolve_samples(
    samples: Sequence[MsCxrSample],
    mimic_root: str | os.PathLike[str],
    skipped: SkippedLog | None = None,
    image_paths: Mapping[str, str] | None = None,
    image_sizes: Mapping[str, tuple[int, int]] | None = None,
    aspect_tolerance: float = 0.02,
) -> list[MsCxrSample]:
    """Find each sample's image under ``mimic_root`` and express its boxes in that image's pixels.

    ``image_paths`` (dicom_id -> path relative to the root) and ``image_sizes`` (relative path ->
    (width, height)) let the indexer reuse what its scan found; otherwise the file is searched and its
    header read. Samples whose image is missing, unreadable or of another aspect ratio are skipped
    with the reason (in ``skipped`` when given, and in a warning count).
    """
    from cxr_fgbg.data.dicom_header import probe_image

    root = Path(mimic_root)
    resolved, problems = [], []
    for sample in samples:
        relative = (image_paths or {}).get(sample.dicom_id)
        if relative is None:
            found = resolve_image(root, sample.path)
            relative = found.relative_to(root).as_posix() if found is not None else None
        if relative is None:
            problems.append((sample.path, f"MS-CXR sample {sample.sample_id}: image missing under {root}"))
            continue
        size = (image_sizes or {}).get(relative)
        if size is None:
            probe = probe_image(root / relative)
            if not probe.ok:
                problems.append((relative, f"MS-CXR sample {sample.sample_id}: {probe.reason} {probe.detail}".strip()))
                continue
            size = (probe.width, probe.height)
        outcome = rescale_boxes(sample.boxes, (sample.image_width, sample.image_height), size, aspect_tolerance)
        if isinstance(outcome, str):
            problems.append((relative, f"MS-CXR sample {sample.sample_id}: {outcome}"))
            continue
        resolved.append(dataclasses.replace(
            sample, path=relative, boxes=outcome, image_width=int(size[0]), image_height=int(size[1]),
            original_width=sample.original_width or sample.image_width,
            original_height=sample.original_height or sample.image_height,
        ))
    if problems:
        log.warning("%d MS-CXR samples could not be resolved (see skipped.csv)", len(problems))
    if skipped is not None:
        for where, reason in problems:
            skipped.add(where, reason)
    return resolved


def rescale_boxes(
    boxes: Sequence[Box], original: tuple[int, int], on_disk: tuple[int, int], aspect_tolerance: float = 0.02
) -> list[Box] | str:
    """Boxes from ``original`` (w, h) pixels to ``on_disk`` (w, h) pixels, or why that is unsafe."""
    (ow, oh), (dw, dh) = original, on_disk
    sx, sy = dw / ow, dh / oh
    if abs(sx - sy) > aspect_tolerance * max(sx, sy):
        transposed = abs(dw / oh - dh / ow) <= aspect_tolerance * max(dw / oh, dh / ow)
        what = "is transposed (width and height swapped)" if transposed else "has another aspect ratio"
        return f"image on disk ({dw}x{dh}) {what} than MS-CXR's {ow}x{oh}; boxes cannot be mapped"
    return [(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in boxes]


def samples_to_frame(samples: Sequence[MsCxrSample]) -> pd.DataFrame:
    """The ``ms_cxr.csv`` table (columns :data:`INDEX_COLUMNS`; ``boxes`` a JSON list of [x, y, w, h])."""
    import pandas as pd

    rows = [{
        "sample_id": s.sample_id, "dicom_id": s.dicom_id, "subject_id": s.subject_id, "study_id": s.study_id,
        "category_name": s.category_name, "label_text": s.label_text, "split": s.split, "image_path": s.path,
        "image_width": s.image_width, "image_height": s.image_height,
        "boxes": json.dumps([[round(v, 3) for v in box] for box in s.boxes]),
        "original_width": s.original_width, "original_height": s.original_height,
    } for s in samples]
    return pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
