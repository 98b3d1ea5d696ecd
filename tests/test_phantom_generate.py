"""The phantom: DICOM round trip, boxes = tight boxes of the exact masks, reports, ids, splits, determinism, CLI."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from cxr_fgbg.data.phantom import generate_phantom
from cxr_fgbg.data.phantom.dicom import DicomHeader, derived_uid, dicom_bytes, read_display
from cxr_fgbg.data.phantom.reports import KEYWORDS, NEGATION

STUDIES, SEED, SIZE = 24, 7, 128


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("phantom")
    return out, generate_phantom(out, studies=STUDIES, seed=SEED, size=SIZE, progress=False)


def _tree_digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_dicom_round_trip_and_monochrome1_inversion(tmp_path: Path) -> None:
    pixels = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 200).astype(np.uint16)
    for mono1 in (False, True):
        header = DicomHeader("10000001", derived_uid("a"), derived_uid("b"), derived_uid("c", mono1), "PA", 0.8,
                             "21800101", "101010.000", "F", mono1, "50000001", "00000001")
        path = tmp_path / f"x{mono1}.dcm"
        path.write_bytes(dicom_bytes(pixels, header))
        ds = pydicom.dcmread(path)
        assert ds.BitsStored == 12 and ds.BitsAllocated == 16
        assert ds.PhotometricInterpretation == ("MONOCHROME1" if mono1 else "MONOCHROME2")
        stored = ds.pixel_array
        expected_stored = 4095 - pixels if mono1 else pixels
        np.testing.assert_array_equal(stored, expected_stored)
        np.testing.assert_array_equal(read_display(str(path)), pixels.astype(np.float32))


def test_dicom_headers_match_csvs_and_monai_reads_them(phantom: tuple[Path, object]) -> None:
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    out, _ = phantom
    meta = pd.read_csv(out / "mimic-cxr" / "mimic-cxr-2.0.0-metadata.csv")
    photometric = set()
    for row in meta.itertuples():
        subject = f"p{row.subject_id}"
        path = out / "mimic-cxr" / "files" / subject[:3] / subject / f"s{row.study_id}" / f"{row.dicom_id}.dcm"
        ds = pydicom.dcmread(path)
        assert (ds.Rows, ds.Columns) == (row.Rows, row.Columns)
        assert ds.PatientID == str(row.subject_id) and ds.ViewPosition == row.ViewPosition
        assert float(ds.PixelSpacing[0]) * max(ds.Rows, ds.Columns) == pytest.approx(390, abs=41)
        photometric.add(ds.PhotometricInterpretation)
    assert (meta.Rows != meta.Columns).all()  # never square
    assert photometric == {"MONOCHROME1", "MONOCHROME2"} or photometric == {"MONOCHROME2"}
    # swap_ij=False alone gives numpy (row, column) order; MONAI ignores MONOCHROME1, so compare stored values
    image = LoadImage(reader=PydicomReader(swap_ij=False), image_only=True)(str(path))
    assert tuple(image.shape) == (row.Rows, row.Columns)
    np.testing.assert_array_equal(np.asarray(image), pydicom.dcmread(path).pixel_array.astype(np.float32))


def test_boxes_are_tight_boxes_of_ground_truth_components(phantom: tuple[Path, object]) -> None:
    out, summary = phantom
    boxes = pd.read_csv(summary.ms_cxr_csv)
    truth = pd.read_csv(out / "ground-truth" / "ground_truth.csv")
    assert len(truth) > 5 and set(truth.category_name) <= set(KEYWORDS)
    assert len(boxes) == summary.n_boxes
    for row in truth.itertuples():
        mask = np.asarray(Image.open(out / "ground-truth" / row.mask_path)) > 0
        slug = row.category_name.lower().replace(" ", "_")
        assert row.mask_path == f"{row.dicom_id}__{slug}.png"
        labels, n = ndimage.label(mask, structure=np.ones((3, 3)))
        expected = set()
        for index in range(1, n + 1):
            ys, xs = np.nonzero(labels == index)
            expected.add((xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
        rows = boxes[(boxes.dicom_id == row.dicom_id) & (boxes.category_name == row.category_name)]
        if not row.in_ms_cxr:  # a training patient outside the MS-CXR subset: no box rows
            assert row.split == "train" and rows.empty
            continue
        assert {(r.x, r.y, r.w, r.h) for r in rows.itertuples()} == expected
        assert n == (2 if row.side == "bilateral" else 1)
        assert (rows.image_width == mask.shape[1]).all() and (rows.image_height == mask.shape[0]).all()
        assert rows.path.str.startswith("files/").all()


def _sentences(text: str) -> list[str]:
    text = re.sub(r"\s+", " ", re.sub(r"(^|\s)\d+\.\s", " ", text))
    return [s.strip() for s in re.split(r"(?<=\.)\s", text) if s.strip()]


def _conclusion(report: str) -> str:
    body = report.split("_" * 78)
    body = max(body, key=len)  # drop the addendum
    for header in ("IMPRESSION:", "IMPRESSON:", "CONCLUSION:", "FINDINGS AND IMPRESSION:", "FINDINGS:"):
        if header in body:
            return body.split(header)[-1]
    raise AssertionError("no section")


def test_reports_state_exactly_the_present_findings(phantom: tuple[Path, object]) -> None:
    out, summary = phantom
    truth = pd.read_csv(out / "ground-truth" / "ground_truth.csv")
    boxes = pd.read_csv(summary.ms_cxr_csv)
    meta = pd.read_csv(out / "mimic-cxr" / "mimic-cxr-2.0.0-metadata.csv")
    chexpert = pd.read_csv(out / "mimic-cxr" / "mimic-cxr-2.0.0-chexpert.csv")
    frontal = meta[meta.ViewPosition != "LATERAL"]
    assert len(frontal) == STUDIES
    styles = set()
    for row in frontal.itertuples():
        subject = f"p{row.subject_id}"
        report = (out / "mimic-cxr" / "files" / subject[:3] / subject / f"s{row.study_id}.txt").read_text()
        present = set(truth[truth.dicom_id == row.dicom_id].category_name)
        section = _conclusion(report)
        styles.add("numbered" if re.search(r"^ 1\. ", section, re.M) else "plain")
        positive = {cat for cat, key in KEYWORDS.items() for s in _sentences(section)
                    if re.search(key, s, re.I) and not NEGATION.match(s)}
        assert positive == present, report
        for r in boxes[boxes.dicom_id == row.dicom_id].itertuples():
            assert r.label_text in section and r.label_text in report
            assert re.search(KEYWORDS[r.category_name], r.label_text, re.I)
        labels = chexpert[chexpert.study_id == row.study_id].iloc[0]
        assert {c for c in KEYWORDS if labels[c] == 1.0} == present
        assert (labels["No Finding"] == 1.0) == (not present)


def test_mimic_ids_and_patient_disjoint_splits(phantom: tuple[Path, object]) -> None:
    out, summary = phantom
    split = pd.read_csv(out / "mimic-cxr" / "mimic-cxr-2.0.0-split.csv", dtype={"subject_id": str, "study_id": str})
    assert split.subject_id.str.fullmatch(r"1\d{7}").all() and split.study_id.str.fullmatch(r"5\d{7}").all()
    assert split.dicom_id.str.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{8}){4}").all()
    assert split.groupby("subject_id").split.nunique().max() == 1
    assert set(split.split) == {"train", "validate", "test"}
    assert split.groupby("subject_id").study_id.nunique().max() > 1  # several studies per patient
    assert summary.n_studies == STUDIES == split.study_id.nunique()
    truth = pd.read_csv(out / "ground-truth" / "ground_truth.csv")
    mimic_split = dict(zip(split.dicom_id, split.split, strict=True))
    assert all({"train": "train", "validate": "val", "test": "test"}[mimic_split[d]] == s
               for d, s in zip(truth.dicom_id, truth.split, strict=True))


def test_cli_matches_library_byte_for_byte(phantom: tuple[Path, object], tmp_path: Path) -> None:
    from cxr_fgbg.cli.app import app

    out, _ = phantom
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "cli"), "--studies", str(STUDIES), "--seed",
                                      str(SEED), "--size", str(SIZE), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Pleural Effusion" in result.output and f"studies {STUDIES}" in result.output
    assert _tree_digest(tmp_path / "cli") == _tree_digest(out)
    other = generate_phantom(tmp_path / "other", studies=3, seed=SEED + 1, size=SIZE, progress=False)
    assert other.n_studies == 3
