"""MS-CXR reading (CSV v1.0.0 / v1.1.0, COCO JSON), validation, grouping, resolution and box rescaling."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_mimic_fixtures import image_rel, write_dicom, write_jpg

from cxr_fgbg.data.mscxr import (
    MS_CXR_CATEGORIES,
    group_samples,
    read_ms_cxr,
    rescale_boxes,
    resolve_image,
    resolve_samples,
    samples_to_frame,
)
from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import SkippedLog

PATH_A = "files/p10/p10000001/s50000001/img_a.dcm"
PATH_B = "files/p10/p10000002/s50000002/img_b.dcm"
ROWS = [
    # img_a: two boxes for one phrase, and a second phrase of the same category
    {"dicom_id": "img_a", "category_name": "Pneumonia", "label_text": "bilateral pneumonia", "path": PATH_A,
     "x": 10, "y": 20, "w": 30, "h": 40, "image_width": 200, "image_height": 250},
    {"dicom_id": "img_a", "category_name": "Pneumonia", "label_text": "bilateral pneumonia", "path": PATH_A,
     "x": 100, "y": 20, "w": 30, "h": 40, "image_width": 200, "image_height": 250},
    {"dicom_id": "img_a", "category_name": "Pneumonia", "label_text": "right basal pneumonia", "path": PATH_A,
     "x": 100, "y": 150, "w": 50, "h": 60, "image_width": 200, "image_height": 250},
    {"dicom_id": "img_b", "category_name": "Cardiomegaly", "label_text": "enlarged heart", "path": PATH_B,
     "x": 50, "y": 60, "w": 100, "h": 80, "image_width": 200, "image_height": 250},
]


def _csv(tmp_path: Path, rows: list[dict], name: str = "MS_CXR_Local_Alignment_v1.0.0.csv") -> Path:
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_eight_categories() -> None:
    assert len(MS_CXR_CATEGORIES) == 8
    assert "Lung Opacity" in MS_CXR_CATEGORIES and "Pleural Effusion" in MS_CXR_CATEGORIES


def test_v100_without_split_groups_boxes(tmp_path: Path) -> None:
    frame = read_ms_cxr(_csv(tmp_path, ROWS))
    assert len(frame) == 4 and set(frame["split"]) == {""}
    samples = group_samples(frame)
    assert [(s.dicom_id, s.label_text, len(s.boxes)) for s in samples] == [
        ("img_a", "bilateral pneumonia", 2), ("img_a", "right basal pneumonia", 1), ("img_b", "enlarged heart", 1),
    ]
    assert samples[0].boxes == [(10.0, 20.0, 30.0, 40.0), (100.0, 20.0, 30.0, 40.0)]
    assert samples[0].rows == [2, 3]  # file lines
    # two phrases of one category on one image: ids disambiguated by the phrase; unique pairs stay plain
    assert samples[0].sample_id.startswith("img_a__pneumonia__") and samples[0].sample_id != samples[1].sample_id
    assert samples[2].sample_id == "img_b__cardiomegaly"
    assert (samples[2].subject_id, samples[2].study_id) == ("10000002", "50000002")
    assert (samples[2].image_width, samples[2].image_height) == (200, 250)


def test_v110_split_and_coco_json_agree(tmp_path: Path) -> None:
    rows = [{**row, "split": "test" if row["dicom_id"] == "img_a" else "val"} for row in ROWS]
    from_csv = group_samples(read_ms_cxr(_csv(tmp_path, rows, "MS_CXR_Local_Alignment_v1.1.0.csv")))
    assert [s.split for s in from_csv] == ["test", "test", "val"]

    categories = [{"id": k + 1, "name": name} for k, name in enumerate(MS_CXR_CATEGORIES)]
    cat_id = {c["name"]: c["id"] for c in categories}
    images = [
        {"id": 1, "file_name": PATH_A, "path": PATH_A, "width": 200, "height": 250, "split": "test"},
        {"id": 2, "file_name": PATH_B, "path": PATH_B, "width": 200, "height": 250, "split": "val"},
    ]
    annotations = [
        {"id": k, "image_id": 1 if row["dicom_id"] == "img_a" else 2, "category_id": cat_id[row["category_name"]],
         "bbox": [row["x"], row["y"], row["w"], row["h"]], "label_text": row["label_text"]}
        for k, row in enumerate(ROWS)
    ]
    coco = tmp_path / "MS_CXR_Local_Alignment_v1.0.0.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    from_json = group_samples(read_ms_cxr(coco))
    strip = [(s.dicom_id, s.category_name, s.label_text, s.boxes, s.split, s.path, s.sample_id) for s in from_json]
    assert strip == [(s.dicom_id, s.category_name, s.label_text, s.boxes, s.split, s.path, s.sample_id)
                     for s in from_csv]


def test_missing_column_names_column_and_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, [{k: v for k, v in row.items() if k != "image_height"} for row in ROWS])
    with pytest.raises(InputDataError, match=r"MS_CXR_Local_Alignment_v1\.0\.0\.csv: missing column\(s\) image_height"):
        read_ms_cxr(path)
    coco = tmp_path / "bad.json"
    coco.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(InputDataError, match=r"bad\.json: missing key 'categories'"):
        read_ms_cxr(coco)


def test_bad_rows_go_to_skipped_with_reasons(tmp_path: Path) -> None:
    base = ROWS[3]
    rows = [
        base,
        {**base, "label_text": "out", "x": 150, "w": 100},  # x + w = 250 > 200
        {**base, "label_text": "zero", "w": 0},
        {**base, "label_text": "unknown", "category_name": "Fracture"},
        {**base, "label_text": "overhang", "x": 101, "w": 100},  # 1 px over: clipped, kept
        {**base, "label_text": "lower case", "category_name": "pleural effusion"},
    ]
    skipped = SkippedLog(tmp_path / "skipped.csv")
    frame = read_ms_cxr(_csv(tmp_path, rows), skipped=skipped)
    assert list(frame["label_text"]) == ["enlarged heart", "overhang", "lower case"]
    assert frame.loc[1, "w"] == 99.0  # clipped to the image
    assert frame.loc[2, "category_name"] == "Pleural Effusion"
    reasons = sorted(row["reason"] for row in skipped)
    assert reasons == [
        "MS-CXR MS_CXR_Local_Alignment_v1.0.0.csv row 3: box (150, 60, 100, 80) outside the 200x250 image",
        "MS-CXR MS_CXR_Local_Alignment_v1.0.0.csv row 4: box with non-positive size (w=0, h=80)",
        "MS-CXR MS_CXR_Local_Alignment_v1.0.0.csv row 5: unknown category 'Fracture' (expected one of "
        + ", ".join(MS_CXR_CATEGORIES) + ")",
    ]
    assert {row["path"] for row in skipped} == {PATH_B}
    assert len(frame.attrs["invalid"]) == 3


def test_rescale_boxes_by_hand() -> None:
    # 2000x2500 original, a 400x500 JPG copy: a fifth in both directions.
    assert rescale_boxes([(100, 200, 400, 500)], (2000, 2500), (400, 500)) == [(20.0, 40.0, 80.0, 100.0)]
    transposed = rescale_boxes([(0, 0, 1, 1)], (2000, 2500), (500, 400))
    assert isinstance(transposed, str) and "transposed" in transposed
    other = rescale_boxes([(0, 0, 1, 1)], (2000, 2500), (400, 400))
    assert isinstance(other, str) and "aspect ratio" in other


def test_resolve_dcm_path_to_downsampled_jpg_and_skip_missing(tmp_path: Path) -> None:
    root = tmp_path / "mimic-cxr-jpg"
    write_jpg(root / image_rel(10000001, 50000001, "img_a", "jpg"), width=100, height=125)  # half size
    assert resolve_image(root, PATH_A) == root / image_rel(10000001, 50000001, "img_a", "jpg")
    assert resolve_image(root, PATH_B) is None
    skipped = SkippedLog(tmp_path / "skipped.csv")
    samples = group_samples(read_ms_cxr(_csv(tmp_path, ROWS)))
    resolved = resolve_samples(samples, root, skipped=skipped)
    assert [s.label_text for s in resolved] == ["bilateral pneumonia", "right basal pneumonia"]
    first = resolved[0]
    assert first.boxes == [(5.0, 10.0, 15.0, 20.0), (50.0, 10.0, 15.0, 20.0)]
    assert (first.image_width, first.image_height, first.original_width, first.original_height) == (100, 125, 200, 250)
    assert first.path == image_rel(10000001, 50000001, "img_a", "jpg")
    assert [(row["path"], row["reason"]) for row in skipped] == [
        (PATH_B, f"MS-CXR sample img_b__cardiomegaly: image missing under {root}")
    ]
    table = samples_to_frame(resolved)
    assert json.loads(table.loc[0, "boxes"]) == [[5.0, 10.0, 15.0, 20.0], [50.0, 10.0, 15.0, 20.0]]
    assert list(table.columns[:11]) == [
        "sample_id", "dicom_id", "subject_id", "study_id", "category_name", "label_text", "split",
        "image_path", "image_width", "image_height", "boxes",
    ]


def test_resolve_same_size_dicom_and_unreadable_dicom(tmp_path: Path) -> None:
    root = tmp_path / "mimic-cxr"
    write_dicom(root / PATH_A, rows=250, columns=200)
    broken = write_dicom(root / PATH_B, rows=250, columns=200)
    full_size = broken.stat().st_size
    broken.write_bytes(broken.read_bytes()[:-1000])
    skipped = SkippedLog(tmp_path / "skipped.csv")
    resolved = resolve_samples(group_samples(read_ms_cxr(_csv(tmp_path, ROWS))), root, skipped=skipped)
    assert resolved[0].boxes == [(10.0, 20.0, 30.0, 40.0), (100.0, 20.0, 30.0, 40.0)]
    assert len(resolved) == 2
    assert [row["reason"] for row in skipped] == [
        "MS-CXR sample img_b__cardiomegaly: truncated DICOM (pixel data runs past the end of the file) "
        f"needs {full_size} bytes, file has {full_size - 1000}"
    ]
