"""End to end: `cxr-fgbg index` on a small phantom, checked against the phantom's exact ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_fgbg.cli.app import app
from cxr_fgbg.data.phantom import generate_phantom


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("phantom")
    generate_phantom(out, studies=20, seed=3, size=128, progress=False)
    return out


def _index(args: list[str]) -> str:
    result = CliRunner().invoke(app, ["index", "--workers", "1", "--no-progress", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _box_mask(boxes: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for x, y, w, h in boxes:
        mask[int(y) : int(y + h), int(x) : int(x + w)] = True
    return mask


def test_index_phantom_matches_ground_truth(phantom: Path, tmp_path: Path) -> None:
    root, ms_csv = phantom / "mimic-cxr", phantom / "ms-cxr" / "MS_CXR_Local_Alignment_v1.1.0.csv"
    output = _index(["--mimic", str(root), "--ms-cxr", str(ms_csv), "--out", str(tmp_path / "idx")])
    meta = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv", dtype=str)
    split = pd.read_csv(root / "mimic-cxr-2.0.0-split.csv", dtype=str)
    ms_raw = pd.read_csv(ms_csv, dtype={"dicom_id": str})
    studies = pd.read_csv(tmp_path / "idx" / "studies.csv", dtype=str)
    skipped = pd.read_csv(tmp_path / "idx" / "skipped.csv", dtype=str)
    ms = pd.read_csv(tmp_path / "idx" / "ms_cxr.csv", dtype=str)

    # every image is accounted for exactly once: a row or a skip
    assert len(studies) + len(skipped) == len(meta)
    assert set(studies["dicom_id"]).isdisjoint(Path(p).stem for p in skipped["path"])
    lateral = (meta["ViewPosition"] == "LATERAL").sum()
    assert (skipped["reason"] == "view LATERAL not selected (keeping PA, AP)").sum() == lateral
    # MS-CXR patients never in train/validate rows; their frontal train/validate images are the held-out skips
    subjects = {p.split("/")[2][1:] for p in ms_raw["path"]}
    frontal = meta.merge(split, on=["dicom_id", "subject_id", "study_id"])
    frontal = frontal[frontal["ViewPosition"] != "LATERAL"]
    expected_held = frontal["split"].isin(["train", "validate"]) & frontal["subject_id"].isin(subjects)
    assert 0 < expected_held.sum() < len(frontal)  # the phantom exercises the hold-out
    assert (skipped["reason"] == "MS-CXR patient held out of train/validate").sum() == expected_held.sum()
    assert not (studies["split"].isin(["train", "validate"]) & studies["subject_id"].isin(subjects)).any()
    assert len(studies) == len(frontal) - expected_held.sum()
    assert set(studies["text_source"]) <= {"impression", "findings", "last_paragraph"}
    assert (studies["text"].str.len() > 0).all()

    # one MS-CXR sample per (image, category, phrase); boxes tight around the exact lesion masks
    assert len(ms) == len(ms_raw.drop_duplicates(["dicom_id", "category_name", "label_text"])) > 0
    for row in ms.itertuples():
        boxes = json.loads(row.boxes)
        lesion = np.asarray(Image.open(phantom / "ground-truth" / f"{row.sample_id}.png")) > 0
        assert lesion.shape == (int(row.image_height), int(row.image_width))
        assert not (lesion & ~_box_mask(boxes, lesion.shape)).any()
        for box in boxes:
            inside = lesion & _box_mask([box], lesion.shape)
            ys, xs = np.nonzero(inside)
            assert [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1] == box
    assert f"ms_cxr.csv samples: {len(ms)}" in output

    kept = tmp_path / "kept"
    _index(["--mimic", str(root), "--ms-cxr", str(ms_csv), "--out", str(kept), "--keep-ms-cxr-patients"])
    assert len(pd.read_csv(kept / "studies.csv")) == len(frontal)


def test_index_downsampled_jpg_copy_rescales_boxes(phantom: Path, tmp_path: Path) -> None:
    import pydicom

    source, jpg_root = phantom / "mimic-cxr", tmp_path / "mimic-cxr-jpg"
    for dcm in source.glob("files/*/*/*/*.dcm"):
        pixels = pydicom.dcmread(dcm).pixel_array.astype(np.float64)
        scaled = np.uint8(255 * (pixels - pixels.min()) / max(np.ptp(pixels), 1))
        target = jpg_root / dcm.relative_to(source).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(scaled)
        image.resize((round(image.width / 2), round(image.height / 2))).save(target, quality=90)
    for report in source.glob("files/*/*/*.txt"):
        shutil.copy(report, jpg_root / report.relative_to(source))
    for table in source.glob("mimic-cxr-2.0.0-*.csv"):
        shutil.copy(table, jpg_root / table.name)
    ms_csv = phantom / "ms-cxr" / "MS_CXR_Local_Alignment_v1.1.0.csv"
    _index(["--mimic", str(jpg_root), "--ms-cxr", str(ms_csv), "--out", str(tmp_path / "idx")])

    ms = pd.read_csv(tmp_path / "idx" / "ms_cxr.csv", dtype={"dicom_id": str})
    raw = pd.read_csv(ms_csv, dtype={"dicom_id": str})
    assert len(ms) == len(raw.drop_duplicates(["dicom_id", "category_name", "label_text"]))
    for row in ms.itertuples():
        assert row.image_path.endswith(".jpg")
        assert (row.image_width, row.image_height) == (round(row.original_width / 2), round(row.original_height / 2))
        sx, sy = row.image_width / row.original_width, row.image_height / row.original_height
        originals = raw[(raw["dicom_id"] == row.dicom_id) & (raw["category_name"] == row.category_name)
                        & (raw["label_text"] == row.label_text)]
        expected = [[round(x * sx, 3), round(y * sy, 3), round(w * sx, 3), round(h * sy, 3)]
                    for x, y, w, h in originals[["x", "y", "w", "h"]].itertuples(index=False)]
        assert json.loads(row.boxes) == expected
