"""Readers for the public natural-image datasets, each in its own released layout.

Each returns ``(root, records, total)``: the folder the image paths are relative to, an iterator of
:class:`~cxr_fgbg.data.natural.NaturalRecord` / :class:`~cxr_fgbg.data.natural.Skip`, and the count
for the progress bar. Box conventions converted here to x, y, w, h with pixel edges:

* CUB-200-2011 ``bounding_boxes.txt``: ``<image_id> <x> <y> <width> <height>``, taken as given.
* Stanford Dogs ``Annotation/<breed>/<image>`` (PASCAL-VOC XML) and Stanford Cars devkit ``.mat``:
  1-based inclusive corners (MATLAB / VOC), so ``x = xmin - 1``, ``w = xmax - xmin + 1``.
* Human3.6M: ``[x, y, w, h]`` (COCO ``bbox``) or ``x1, y1, x2, y2`` corners (``w = x2 - x1``).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.data.natural import NaturalRecord, Skip
from cxr_fgbg.data.settings import NaturalSettings
from cxr_fgbg.errors import InputDataError

__all__ = ["read_cars", "read_cub", "read_dogs", "read_h36m"]

Result = tuple[Path, Iterator[NaturalRecord | Skip], int]


# --------------------------------------------------------------------------- CUB-200-2011
def read_cub(root: Path, concept: str = "bird") -> Result:
    """``CUB_200_2011/{images.txt, train_test_split.txt, bounding_boxes.txt, images/}`` and the separate
    ``segmentations/<class>/<image>.png`` (beside or inside ``CUB_200_2011``)."""
    base = next((c for c in (root, root / "CUB_200_2011") if (c / "images.txt").is_file()), None)
    if base is None:
        raise InputDataError(f"{root}: no images.txt here or in CUB_200_2011/ (is this CUB-200-2011?)")
    images = _id_table(base / "images.txt", 1)
    splits = _id_table(base / "train_test_split.txt", 1) if (base / "train_test_split.txt").is_file() else {}
    boxes = _id_table(base / "bounding_boxes.txt", 4) if (base / "bounding_boxes.txt").is_file() else {}
    seg_dir = next((c for c in (base / "segmentations", base.parent / "segmentations") if c.is_dir()), None)
    top = base.parent if seg_dir is not None and seg_dir.parent == base.parent else base

    def records() -> Iterator[NaturalRecord | Skip]:
        for image_id, (rel,) in images.items():
            image = base / "images" / rel
            box = boxes.get(image_id)
            mask = seg_dir / Path(rel).with_suffix(".png") if seg_dir is not None else None
            if seg_dir is not None and not mask.is_file():
                yield Skip(str(image), "no segmentation mask in segmentations/")
                continue
            split = {"1": "train", "0": "test"}.get(splits.get(image_id, ("",))[0], "")
            class_folder = Path(rel).parts[0]
            yield NaturalRecord(
                str(image), concept, boxes=[[float(v) for v in box]] if box else [],
                mask_path=str(mask) if mask is not None else "", split=split,
                class_name=class_folder.split(".", 1)[-1].replace("_", " "),
            )

    return top, records(), len(images)


def _id_table(path: Path, width: int) -> dict[str, tuple[str, ...]]:
    """``<id> <value> ...`` lines -> {id: values}; a malformed line is an error naming the line."""
    table: dict[str, tuple[str, ...]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != width + 1:
            raise InputDataError(f"{path} line {number}: expected {width + 1} fields, got {len(parts)}")
        table[parts[0]] = tuple(parts[1:])
    return table


# --------------------------------------------------------------------------- Stanford Dogs
def read_dogs(root: Path, concept: str = "dog") -> Result:
    """``Images/<wnid-breed>/<name>.jpg`` + ``Annotation/<wnid-breed>/<name>`` (XML, every object);
    split from ``lists/{train,test}_list.mat`` (or ``{train,test}_list.mat`` at the root) when present."""
    if not (root / "Annotation").is_dir() or not (root / "Images").is_dir():
        raise InputDataError(f"{root}: expected Annotation/ and Images/ folders (Stanford Dogs layout)")
    split_of: dict[str, str] = {}
    for split in ("train", "test"):
        mat = next((c for c in (root / "lists" / f"{split}_list.mat", root / f"{split}_list.mat") if c.is_file()),
                   None)
        if mat is not None:
            for name in _mat_strings(mat, "file_list"):
                split_of[Path(name).with_suffix("").as_posix()] = split
    files = sorted(p for p in (root / "Annotation").rglob("*") if p.is_file() and not p.name.startswith("."))

    def records() -> Iterator[NaturalRecord | Skip]:
        for path in files:
            key = path.relative_to(root / "Annotation").with_suffix("").as_posix()
            try:
                tree = ET.parse(path).getroot()
                size = tree.find("size")
                annotated = (int(size.findtext("width")), int(size.findtext("height"))) if size is not None else None
                boxes, names = [], []
                for obj in tree.iter("object"):
                    bb = obj.find("bndbox")
                    x1, y1, x2, y2 = (float(bb.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
                    boxes.append([x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1])
                    names.append(obj.findtext("name") or "")
            except (ET.ParseError, AttributeError, TypeError, ValueError) as exc:
                yield Skip(str(path), f"unparsable annotation XML ({type(exc).__name__}: {exc})")
                continue
            if not boxes:
                yield Skip(str(path), "annotation has no object")
                continue
            image = root / "Images" / f"{key}.jpg"
            yield NaturalRecord(str(image), concept, boxes=boxes, split=split_of.get(key, ""),
                                class_name=names[0] or Path(key).parts[0].split("-", 1)[-1],
                                annotated_size=annotated)

    return root, records(), len(files)


# --------------------------------------------------------------------------- Stanford Cars
def read_cars(root: Path, concept: str = "car") -> Result:
    """Devkit ``cars_train_annos.mat`` (images in ``cars_train/``) and ``cars_test_annos_withlabels.mat``
    (images in ``cars_test/``); class names from ``cars_meta.mat``. Looked for in ROOT, ROOT/devkit and
    ROOT/car_devkit/devkit."""
    folders = [root, root / "devkit", root / "car_devkit" / "devkit"]

    def find(name: str) -> Path | None:
        return next((f / name for f in folders if (f / name).is_file()), None)

    sources = [(find("cars_train_annos.mat"), "cars_train", "train"),
               (find("cars_test_annos_withlabels.mat"), "cars_test", "test")]
    sources = [s for s in sources if s[0] is not None]
    if not sources:
        raise InputDataError(f"{root}: no cars_train_annos.mat or cars_test_annos_withlabels.mat "
                             "(looked in ROOT, ROOT/devkit, ROOT/car_devkit/devkit)")
    meta = find("cars_meta.mat")
    class_names = _mat_strings(meta, "class_names") if meta is not None else []
    tables = [(_mat_struct(mat, "annotations"), folder, split, mat) for mat, folder, split in sources]

    def records() -> Iterator[NaturalRecord | Skip]:
        for rows, folder, split, mat in tables:
            for number, ann in enumerate(rows, start=1):
                try:
                    x1, y1, x2, y2 = (float(ann[f"bbox_{k}"]) for k in ("x1", "y1", "x2", "y2"))
                    fname = str(ann["fname"])
                except (KeyError, TypeError, ValueError) as exc:
                    yield Skip(f"{mat.name} entry {number}", f"malformed annotation ({exc})")
                    continue
                label = int(ann["class"]) if "class" in ann else 0
                name = class_names[label - 1] if 0 < label <= len(class_names) else ""
                yield NaturalRecord(str(root / folder / fname), concept,
                                    boxes=[[x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]], split=split, class_name=name)

    return root, records(), sum(len(t[0]) for t in tables)


def _mat_struct(path: Path, key: str) -> list[dict[str, Any]]:
    """A MATLAB struct array -> list of {field: scalar}."""
    from scipy.io import loadmat

    try:
        data = loadmat(path, squeeze_me=True)
    except Exception as exc:
        raise InputDataError(f"{path}: not a readable .mat file ({exc})") from exc
    if key not in data:
        names = ", ".join(k for k in data if not k.startswith("_"))
        raise InputDataError(f"{path}: no variable {key!r} (has: {names})")
    array = np.atleast_1d(data[key])
    fields = array.dtype.names or ()
    return [{f: _scalar(entry[f]) for f in fields} for entry in array]


def _mat_strings(path: Path, key: str) -> list[str]:
    from scipy.io import loadmat

    try:
        data = loadmat(path, squeeze_me=True)
    except Exception as exc:
        raise InputDataError(f"{path}: not a readable .mat file ({exc})") from exc
    if key not in data:
        raise InputDataError(f"{path}: no variable {key!r}")
    return [str(_scalar(v)) for v in np.atleast_1d(data[key]).ravel()]


def _scalar(value: Any) -> Any:
    while isinstance(value, np.ndarray) and value.size == 1:
        value = value.item() if value.dtype != object else value.ravel()[0]
    return value.item() if isinstance(value, np.generic) else value


# --------------------------------------------------------------------------- Human3.6M
_SUBJECT = re.compile(r"(?:^|[/_\\])[sS](?:_?0*)(\d{1,2})(?=[/_\\.]|$)")


def read_h36m(root: Path, concept: str = "person", annotations: str | Path | None = None,
              settings: NaturalSettings | None = None) -> Result:
    """Frames under ROOT with person boxes from `annotations` (default: ROOT/annotations.{json,csv}).

    JSON: COCO style (``images`` with ``id, file_name[, subject]`` + ``annotations`` with ``image_id,
    bbox`` [x, y, w, h]) or a list of ``{"image": path, "bbox": [x, y, w, h][, "subject"]}``. CSV:
    ``image_path`` and ``x, y, w, h`` or ``x1, y1, x2, y2`` (``subject``, ``split`` optional). Split from
    the subject (S1, S5-S8 train; S9, S11 test by default), read from the row or the path (``S9/``,
    ``s_09_act...``).
    """
    settings = settings or NaturalSettings()
    if annotations is None:
        annotations = next((root / n for n in ("annotations.json", "annotations.csv") if (root / n).is_file()), None)
        if annotations is None:
            raise InputDataError(f"{root}: no annotations.json or annotations.csv; pass --annotations FILE")
    path = Path(annotations)
    if not path.is_file():
        raise InputDataError(f"{path}: annotation file not found")
    frames = _h36m_json(path) if path.suffix.lower() == ".json" else _h36m_csv(path)
    train, test = set(settings.h36m_train_subjects), set(settings.h36m_test_subjects)

    def records() -> Iterator[NaturalRecord | Skip]:
        for image, boxes, subject, split in frames:
            if isinstance(boxes, str):  # a reason
                yield Skip(image, boxes)
                continue
            number = _subject_number(subject) if subject else _subject_number(image)
            if not split and number is not None:
                split = "train" if number in train else "test" if number in test else ""
            yield NaturalRecord(image, concept, boxes=boxes, split=split,
                                class_name=f"S{number}" if number is not None else "")

    return root, records(), len(frames)


def _subject_number(text: str) -> int | None:
    match = _SUBJECT.search(str(text))
    return int(match.group(1)) if match else None


def _h36m_json(path: Path) -> list[tuple[str, Any, str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path}: not valid JSON ({exc})") from exc
    grouped: dict[str, tuple[list[list[float]], str, str]] = {}
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        by_id = {img["id"]: img for img in data["images"]}
        for img in data["images"]:
            grouped.setdefault(img["file_name"], ([], str(img.get("subject", "")), str(img.get("split", ""))))
        for ann in data["annotations"]:
            img = by_id.get(ann.get("image_id"))
            if img is None or "bbox" not in ann:
                continue
            grouped[img["file_name"]][0].append([float(v) for v in ann["bbox"]])
    elif isinstance(data, list):
        for item in data:
            name = item.get("image") or item.get("image_path") or item.get("file_name")
            entry = grouped.setdefault(name, ([], str(item.get("subject", "")), str(item.get("split", ""))))
            box = item.get("bbox") or item.get("box")
            if box:
                entry[0].append([float(v) for v in box])
    else:
        raise InputDataError(f"{path}: expected COCO-style {{images, annotations}} or a list of frames")
    return [(name, boxes if boxes else "no person box for this frame", subject, split)
            for name, (boxes, subject, split) in grouped.items()]


def _h36m_csv(path: Path) -> list[tuple[str, Any, str, str]]:
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    corners = all(c in frame.columns for c in ("x1", "y1", "x2", "y2"))
    needed = ["image_path"] + ([] if corners else ["x", "y", "w", "h"])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise InputDataError(f"{path}: missing column(s) {', '.join(missing)} (or give x1, y1, x2, y2)")
    grouped: dict[str, tuple[list[list[float]], str, str]] = {}
    bad: list[tuple[str, Any, str, str]] = []
    for number, row in enumerate(frame.to_dict("records"), start=2):
        try:
            if corners:
                x1, y1, x2, y2 = (float(row[c]) for c in ("x1", "y1", "x2", "y2"))
                box = [x1, y1, x2 - x1, y2 - y1]
            else:
                box = [float(row[c]) for c in "xywh"]
        except ValueError:
            bad.append((row["image_path"] or f"{path.name} line {number}",
                        f"{path.name} line {number}: box values are not numbers", "", ""))
            continue
        entry = grouped.setdefault(row["image_path"], ([], row.get("subject", ""), row.get("split", "")))
        entry[0].append(box)
    return [(name, boxes, subject, split) for name, (boxes, subject, split) in grouped.items()] + bad
