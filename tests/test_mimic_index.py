"""MIMIC-CXR indexing on small DICOM and JPG trees that the tests write, bad files included."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from test_mimic_fixtures import image_rel, write_dicom, write_jpg, write_metadata, write_report

from cxr_fgbg.data.mimic import build_index
from cxr_fgbg.errors import InputDataError

# (subject, study, dicom_id, split, view); the dicom_id says what is special about the file.
CASES = [
    (10000001, 50000001, "good_pa", "train", "PA"),
    (10000002, 50000002, "good_ap", "validate", "AP"),
    (10000003, 50000003, "lateral", "train", "LL"),
    (10000004, 50000004, "truncated", "train", "PA"),
    (10000005, 50000005, "nopixels", "train", "PA"),
    (10000006, 50000006, "palette", "train", "PA"),
    (10000007, 50000007, "noreport", "train", "PA"),
    (10000008, 50000008, "emptyimp", "train", "PA"),
    (10000009, 50000009, "notondisk", "test", "PA"),
    (10000010, 50000010, "good_test", "test", "PA"),
]


def _metadata_rows(cases=CASES) -> list[dict]:
    return [
        {"dicom_id": d, "subject_id": s, "study_id": t, "split": sp, "ViewPosition": v, "Rows": 40, "Columns": 32}
        for s, t, d, sp, v in cases
    ]


def make_dicom_tree(root: Path, gz: bool = False) -> Path:
    for subject, study, dicom_id, _split, view in CASES:
        rel = image_rel(subject, study, dicom_id, "dcm")
        if dicom_id == "notondisk":
            pass
        elif dicom_id == "truncated":
            full = write_dicom(root / rel, view=view)
            full.write_bytes(full.read_bytes()[:-300])
        elif dicom_id == "nopixels":
            write_dicom(root / rel, with_pixels=False)
        elif dicom_id == "palette":
            write_dicom(root / rel, photometric="PALETTE COLOR")
        else:
            write_dicom(root / rel, view=view)
        if dicom_id == "emptyimp":
            (root / rel).parent.parent.joinpath(f"s{study}.txt").write_text(
                "INDICATION: ___ with cough.\n\nIMPRESSION:\n\n", encoding="utf-8"
            )
        elif dicom_id != "noreport":
            write_report(root, subject, study, f"1. Finding of {dicom_id}.")
    # A file on disk that the metadata does not list.
    write_dicom(root / image_rel(10000001, 50000001, "stray", "dcm"))
    write_metadata(root, _metadata_rows(), gz=gz)
    return root


def _skipped(out: Path) -> dict[str, str]:
    frame = pd.read_csv(out / "skipped.csv", dtype=str, keep_default_na=False)
    return dict(zip(frame["path"], frame["reason"], strict=True))


def test_dicom_tree_rows_and_skip_reasons(tmp_path: Path) -> None:
    root = make_dicom_tree(tmp_path / "mimic")
    summary = build_index(root, tmp_path / "out", workers=1, progress=False)
    studies = pd.read_csv(tmp_path / "out" / "studies.csv", dtype=str)
    assert list(studies["dicom_id"]) == ["good_pa", "good_ap", "good_test"]
    first = studies.iloc[0]
    assert first["image_path"] == "files/p10/p10000001/s50000001/good_pa.dcm"
    assert (first["subject_id"], first["study_id"], first["view_position"], first["split"]) == (
        "10000001", "50000001", "PA", "train",
    )
    assert (first["text"], first["text_source"]) == ("Finding of good_pa.", "impression")
    assert first["findings"] == "Heart size is normal."
    assert (first["image_width"], first["image_height"]) == ("32", "40")

    skipped = _skipped(tmp_path / "out")
    prefix = "files/p10/p1000000{}/s5000000{}/{}.dcm"
    assert skipped == {
        prefix.format(3, 3, "lateral"): "view LL not selected (keeping PA, AP)",
        prefix.format(4, 4, "truncated"): "truncated DICOM (pixel data runs past the end of the file)",
        prefix.format(5, 5, "nopixels"): "DICOM has no pixel data",
        prefix.format(6, 6, "palette"): "unsupported PhotometricInterpretation",
        prefix.format(7, 7, "noreport"): "report missing",
        prefix.format(8, 8, "emptyimp"): "report has no usable text (impression and findings empty)",
        prefix.format(9, 9, "notondisk"): "image file missing (listed in metadata)",
        prefix.format(1, 1, "stray"): "image not in the MIMIC-CXR split/metadata files",
    }
    assert summary.studies_rows == 3
    assert summary.by_split == {"train": 1, "validate": 1, "test": 1}
    assert summary.by_view == {"PA": 2, "AP": 1}
    assert sum(summary.skipped.values()) == 8
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["mimic_root"] == str(root.resolve())
    assert "studies.csv rows: 3" in summary.format()


def test_views_option_and_gz_metadata(tmp_path: Path) -> None:
    root = make_dicom_tree(tmp_path / "mimic", gz=True)
    assert not (root / "mimic-cxr-2.0.0-split.csv").exists()
    build_index(root, tmp_path / "out", views=("LL",), workers=1, progress=False)
    studies = pd.read_csv(tmp_path / "out" / "studies.csv", dtype=str)
    assert list(studies["dicom_id"]) == ["lateral"]


def test_parallel_scan_matches_serial_and_rerun_uses_cache(tmp_path: Path) -> None:
    root = make_dicom_tree(tmp_path / "mimic")
    build_index(root, tmp_path / "serial", workers=1, progress=False)
    summary = build_index(root, tmp_path / "parallel", workers=2, progress=False)
    for name in ("studies.csv", "skipped.csv"):
        assert (tmp_path / "serial" / name).read_text() == (tmp_path / "parallel" / name).read_text()
    assert summary.images_probed == 6  # 3 good + truncated + nopixels + palette
    again = build_index(root, tmp_path / "parallel", workers=2, progress=False)
    assert again.images_probed == 0  # every check reused from probe_cache.csv
    assert (tmp_path / "serial" / "studies.csv").read_text() == (tmp_path / "parallel" / "studies.csv").read_text()


def test_jpg_tree_with_truncated_jpg(tmp_path: Path) -> None:
    root = tmp_path / "jpg"
    cases = [(10000001, 50000001, "a", "train", "PA"), (10000002, 50000002, "b", "train", "AP")]
    for subject, study, dicom_id, _split, _view in cases:
        write_jpg(root / image_rel(subject, study, dicom_id, "jpg"), width=30, height=50)
        write_report(root, subject, study, "Cardiomegaly.")
    broken = root / image_rel(10000002, 50000002, "b", "jpg")
    broken.write_bytes(broken.read_bytes()[:-100])  # header intact, scan data cut
    write_metadata(root, _metadata_rows(cases), gz=True)
    build_index(root, tmp_path / "out", workers=1, progress=False)
    studies = pd.read_csv(tmp_path / "out" / "studies.csv", dtype=str)
    assert list(studies["image_path"]) == [image_rel(10000001, 50000001, "a", "jpg")]
    assert (studies["image_width"].item(), studies["image_height"].item()) == ("30", "50")
    reason = _skipped(tmp_path / "out")[image_rel(10000002, 50000002, "b", "jpg")]
    assert reason == "truncated JPEG (no end-of-image marker)"


def test_metadata_missing_column_names_column_and_file(tmp_path: Path) -> None:
    root = make_dicom_tree(tmp_path / "mimic")
    split = root / "mimic-cxr-2.0.0-split.csv"
    pd.read_csv(split).drop(columns=["study_id"]).to_csv(split, index=False)
    with pytest.raises(InputDataError, match=r"mimic-cxr-2\.0\.0-split\.csv: missing column\(s\) study_id"):
        build_index(root, tmp_path / "out", workers=1, progress=False)
    assert not (tmp_path / "out").exists()  # nothing written for bad input


def test_missing_metadata_and_files_folder_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="no files/ folder"):
        build_index(tmp_path / "empty", tmp_path / "out", workers=1, progress=False)
    (tmp_path / "empty" / "files").mkdir()
    with pytest.raises(InputDataError, match=r"no mimic-cxr-2\.0\.0-split\.csv"):
        build_index(tmp_path / "empty", tmp_path / "out", workers=1, progress=False)


def _write_ms_cxr(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_ms_cxr_patients_held_out_of_train_unless_kept(tmp_path: Path) -> None:
    root = tmp_path / "mimic"
    cases = [
        (10000001, 50000001, "train_img", "train", "PA"),
        (10000001, 50000011, "ms_img", "test", "PA"),  # the same patient, annotated in MS-CXR
        (10000002, 50000002, "other", "train", "PA"),
    ]
    for subject, study, dicom_id, _split, _view in cases:
        write_jpg(root / image_rel(subject, study, dicom_id, "jpg"), width=50, height=60)
        write_report(root, subject, study, "Left effusion.")
    write_metadata(root, _metadata_rows(cases))
    ms = _write_ms_cxr(tmp_path / "MS_CXR_Local_Alignment_v1.1.0.csv", [{
        "dicom_id": "ms_img", "category_name": "Pleural Effusion", "label_text": "left effusion",
        "path": image_rel(10000001, 50000011, "ms_img", "dcm"), "x": 100, "y": 200, "w": 300, "h": 400,
        "image_width": 500, "image_height": 600, "split": "test",
    }])
    summary = build_index(root, tmp_path / "out", ms_cxr_csv=ms, workers=1, progress=False)
    studies = pd.read_csv(tmp_path / "out" / "studies.csv", dtype=str)
    assert list(studies["dicom_id"]) == ["ms_img", "other"]
    skipped = _skipped(tmp_path / "out")
    assert skipped == {image_rel(10000001, 50000001, "train_img", "jpg"): "MS-CXR patient held out of train/validate"}
    assert summary.ms_cxr_samples == 1 and summary.ms_cxr_patients == 1

    ms_rows = pd.read_csv(tmp_path / "out" / "ms_cxr.csv", dtype=str)
    row = ms_rows.iloc[0]
    assert row["sample_id"] == "ms_img__pleural_effusion"
    assert (row["subject_id"], row["study_id"]) == ("10000001", "50000011")
    assert row["image_path"] == image_rel(10000001, 50000011, "ms_img", "jpg")
    assert (row["image_width"], row["image_height"]) == ("50", "60")
    assert json.loads(row["boxes"]) == [[10.0, 20.0, 30.0, 40.0]]  # 500x600 -> 50x60: a tenth

    build_index(root, tmp_path / "kept", ms_cxr_csv=ms, keep_ms_cxr_patients=True, workers=1, progress=False)
    kept = pd.read_csv(tmp_path / "kept" / "studies.csv", dtype=str)
    assert list(kept["dicom_id"]) == ["train_img", "ms_img", "other"]


def test_cli_index_prints_summary(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cxr_fgbg.cli.app import app

    root = make_dicom_tree(tmp_path / "mimic")
    result = CliRunner().invoke(
        app, ["index", "--mimic", str(root), "--out", str(tmp_path / "out"), "--views", "PA", "--workers", "1",
              "--no-progress", "--set", "data.index.keep_ms_cxr_patients=true"],
    )
    assert result.exit_code == 0, result.output
    assert "studies.csv rows: 2" in result.output  # AP row left out by --views PA
    assert "view AP not selected (keeping PA)" in result.output
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["views"] == ["PA"] and index["keep_ms_cxr_patients"] is True
    assert "keep_ms_cxr_patients: true" in (tmp_path / "out" / "config.yaml").read_text()
