"""`cxr-fgbg localize` over a small MS-CXR-shaped index: outputs, skips with reasons, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_fgbg.attention.batch import HEATMAP_COLUMNS
from cxr_fgbg.cli.app import app
from cxr_fgbg.errors import InputDataError


@pytest.fixture()
def index_dir(tmp_path):
    root = tmp_path / "mimic"
    (root / "files").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((80, 64)) * 255).astype(np.uint8)).save(root / "files" / "a.png")
    Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).save(root / "files" / "b.png")
    rows = [
        ("s1", "a", "Pleural Effusion", "Small left pleural effusion.", "files/a.png", [[10, 20, 15, 30]]),
        ("s2", "b", "Pneumothorax", "No acute process.", "files/b.png", [[1, 2, 3, 4]]),
        ("s3", "c", "Edema", "Mild pulmonary edema.", "files/missing.png", [[1, 2, 3, 4]]),
    ]
    index = tmp_path / "index"
    index.mkdir()
    pd.DataFrame([
        {"sample_id": s, "dicom_id": d, "subject_id": "10000001", "study_id": "50000001", "category_name": c,
         "label_text": t, "split": "test", "image_path": p, "image_width": 64, "image_height": 80,
         "boxes": json.dumps(b)} for s, d, c, t, p, b in rows
    ]).to_csv(index / "ms_cxr.csv", index=False)
    pd.DataFrame([
        {"dicom_id": "a", "impression": "Large right pleural effusion with adjacent atelectasis."},
        {"dicom_id": "b", "impression": "Small right apical pneumothorax."},
        {"dicom_id": "c", "impression": "Mild pulmonary edema."},
    ]).to_csv(index / "studies.csv", index=False)
    (index / "index.json").write_text(json.dumps({"mimic_root": str(root)}))
    return index


def _run(model, index, out, *extra):
    args = ["localize", "--model", str(model), "--index", str(index), "--out", str(out), "--no-progress",
            "--set", "localize.timesteps=[251]", "--set", "localize.overlays=1", *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_localize_writes_heatmaps_skips_with_reasons_and_resumes(tiny_model_dir, index_dir, tmp_path):
    out = tmp_path / "out"
    first = _run(tiny_model_dir, index_dir, out, "--nifti")
    assert "1 heat maps written" in first.output
    table = pd.read_csv(out / "heatmaps.csv")
    assert list(table.columns) == list(HEATMAP_COLUMNS)
    assert table["sample_id"].tolist() == ["s1"]
    with np.load(out / "maps" / "s1.npz") as data:
        assert data["heatmap"].shape == (80, 64) and data["heatmap"].dtype == np.float32
        assert np.isnan(data["heatmap"][:8]).all() and np.isfinite(data["heatmap"][8:72]).all()
        assert data["mask_pre"].shape == (80, 64) and data["mask_pre"].dtype == np.uint8
        assert not data["mask_pre"][:8].any()
        np.testing.assert_array_equal(data["boxes"], [[10, 20, 15, 30]])
        tokens, indices = data["tokens"].tolist(), data["token_indices"].tolist()
        assert "".join(tokens[i] for i in indices).replace("</w>", " ").split() == ["pleural", "effusion"]
        assert str(data["prompt"]) == "Small left pleural effusion."
        assert json.loads(str(data["geometry"]))["original_hw"] == [80, 64]
    assert (out / "maps_nifti" / "s1.nii.gz").is_file() and (out / "overlays" / "s1.png").is_file()
    # later stages resolve heatmaps.csv's relative image paths through the recorded root
    from cxr_fgbg.masks.refine import resolve_table_path

    image = resolve_table_path(table["image_path"][0], out / "heatmaps.csv")
    assert image.is_file() and image.parent != out
    skipped = pd.read_csv(out / "skipped.csv")
    reasons = dict(zip(skipped["sample_id"], skipped["reason"], strict=True))
    assert "none of the words" in reasons["s2"] and "unreadable image" in reasons["s3"]
    stamp = (out / "maps" / "s1.npz").stat().st_mtime_ns
    second = _run(tiny_model_dir, index_dir, out)
    assert "0 heat maps written, 1 kept" in second.output
    assert (out / "maps" / "s1.npz").stat().st_mtime_ns == stamp


def test_impression_prompts_come_from_studies(tiny_model_dir, index_dir, tmp_path):
    out = tmp_path / "imp"
    _run(tiny_model_dir, index_dir, out, "--prompt", "impression", "--set", "localize.overlays=0")
    table = pd.read_csv(out / "heatmaps.csv")
    assert dict(zip(table["sample_id"], table["prompt"], strict=True)) == {
        "s1": "Large right pleural effusion with adjacent atelectasis.",
        "s2": "Small right apical pneumothorax.",
    }


@pytest.fixture()
def natural_index(tmp_path):
    """A `cxr-fgbg index-natural`-shaped folder: samples.csv (concept + prompt) and index.json (root)."""
    root = tmp_path / "photos"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("x", "y"):
        Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{name}.png")
    index = tmp_path / "natural-index"
    index.mkdir()
    pd.DataFrame([
        {"sample_id": "x", "image_path": "images/x.png", "concept": "bird", "prompt": "a photo of a bird",
         "mask_path": "", "boxes": json.dumps([[4, 6, 10, 12]]), "split": "test", "width": 40, "height": 48},
        {"sample_id": "y", "image_path": "images/y.png", "concept": "dog", "prompt": "a photo of a cat",
         "mask_path": "", "boxes": "[]", "split": "test", "width": 40, "height": 48},
    ]).to_csv(index / "samples.csv", index=False)
    (index / "index.json").write_text(json.dumps({"root": str(root), "dataset": "folder"}))
    return index


def test_localize_reads_a_natural_image_index(tiny_model_dir, natural_index, tmp_path):
    out = tmp_path / "nat"
    _run(tiny_model_dir, natural_index, out, "--set", "localize.overlays=0")
    table = pd.read_csv(out / "heatmaps.csv", dtype=str, keep_default_na=False)
    assert table[["sample_id", "category_name", "prompt"]].values.tolist() == [["x", "bird", "a photo of a bird"]]
    with np.load(out / "maps" / "x.npz") as data:
        assert data["heatmap"].shape == (48, 40)  # the centre crop (rows 4..43) is mapped, the rest is NaN
        assert np.isnan(data["heatmap"][:4]).all() and np.isfinite(data["heatmap"][4:44]).all()
        assert data["words"].tolist() == ["bird"]
        tokens, indices = data["tokens"].tolist(), data["token_indices"].tolist()
        assert "".join(tokens[i] for i in indices).replace("</w>", "") == "bird"
        np.testing.assert_array_equal(data["boxes"], [[4, 6, 10, 12]])
    skipped = pd.read_csv(out / "skipped.csv")
    assert skipped["sample_id"].tolist() == ["y"] and "none of the words" in skipped["reason"][0]
    samples = pd.read_csv(natural_index / "samples.csv", dtype=str, keep_default_na=False)
    samples.loc[1, "prompt"] = "a photo of a dog"  # the fixed row is localised on resume, and no longer skipped
    samples.to_csv(natural_index / "samples.csv", index=False)
    again = _run(tiny_model_dir, natural_index, out, "--set", "localize.overlays=0")
    assert "1 heat maps written, 1 kept" in again.output
    assert pd.read_csv(out / "skipped.csv").empty
    result = CliRunner().invoke(app, ["localize", "--model", str(tiny_model_dir), "--index", str(natural_index),
                                      "--out", str(tmp_path / "imp"), "--prompt", "impression"])
    assert isinstance(result.exception, InputDataError) and "no report impressions" in str(result.exception)
