"""Torch datasets over the index tables: fine-tuning pairs and localisation samples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from test_transforms import write_dicom

from cxr_fgbg.data import transforms
from cxr_fgbg.data.cache import PreprocessedCache
from cxr_fgbg.data.datasets import ImageTextDataset, LocalizationDataset, collate_localization
from cxr_fgbg.data.geometry import Geometry
from cxr_fgbg.errors import InputDataError
from cxr_fgbg.evaluation.boxes import boxes_to_mask


def make_mimic(tmp_path):
    """Two images (one DICOM 60x90 with a bright block, one JPG) and a studies.csv + index.json."""
    root = tmp_path / "mimic"
    study = root / "files" / "p10" / "p10000001" / "s50000001"
    study.mkdir(parents=True)
    pixels = np.full((60, 90), 100, np.uint16)
    pixels[20:40, 10:30] = 3000  # a bright block on the image's left
    write_dicom(study / "d1.dcm", pixels)
    Image.fromarray(np.full((50, 40), 200, np.uint8)).save(study / "d2.jpg")
    out = tmp_path / "index"
    out.mkdir()
    pd.DataFrame({
        "dicom_id": ["d1", "d2"],
        "image_path": ["files/p10/p10000001/s50000001/d1.dcm", "files/p10/p10000001/s50000001/d2.jpg"],
        "text": ["Small left pleural effusion.", "No pneumothorax."],
    }).to_csv(out / "studies.csv", index=False)
    (out / "index.json").write_text(json.dumps({"mimic_root": str(root)}))
    pd.DataFrame({
        "sample_id": ["s1"], "dicom_id": ["d1"], "category_name": ["Pleural Effusion"],
        "label_text": ["left pleural effusion"], "split": ["test"],
        "image_path": ["files/p10/p10000001/s50000001/d1.dcm"], "image_width": ["90"], "image_height": ["60"],
        "boxes": [json.dumps([[10, 20, 20, 20]])],
    }).to_csv(out / "ms_cxr.csv", index=False)
    return root, out


def test_image_text_dataset(tmp_path, tiny_tokenizer):
    _, out = make_mimic(tmp_path)
    dataset = ImageTextDataset(out / "studies.csv", None, tiny_tokenizer, size=32)  # root from index.json
    assert len(dataset) == 2
    item = dataset[0]
    assert tuple(item["pixel_values"].shape) == (3, 32, 32)
    assert float(item["pixel_values"].min()) == pytest.approx(-1.0) and float(item["pixel_values"].max()) <= 1.0
    assert tuple(item["input_ids"].shape) == (tiny_tokenizer.model_max_length,)
    assert item["text"] == "Small left pleural effusion."
    decoded = tiny_tokenizer.decode(item["input_ids"], skip_special_tokens=True)
    assert "pleural" in decoded and "effusion" in decoded
    jpg = dataset[1]["pixel_values"]  # a flat image scales to 0 -> -1 everywhere
    assert tuple(jpg.shape) == (3, 32, 32) and bool((jpg == -1).all())


def test_image_text_dataset_missing_column_names_it(tmp_path, tiny_tokenizer):
    pd.DataFrame({"image_path": ["x.dcm"], "impression": ["a"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(InputDataError, match=r"t\.csv: missing column\(s\) text"):
        ImageTextDataset(tmp_path / "t.csv", tmp_path, tiny_tokenizer, size=32)
    with pytest.raises(InputDataError, match="no image root"):
        ImageTextDataset(tmp_path / "t.csv", None, tiny_tokenizer, size=32, text_column="impression")


def test_localization_dataset_ms_cxr_rows(tmp_path, monkeypatch):
    root, out = make_mimic(tmp_path)
    calls = []
    original = transforms._decode_dicom
    monkeypatch.setattr(transforms, "_decode_dicom", lambda p: calls.append(p) or original(p))
    cache = PreprocessedCache(tmp_path / "cache")
    dataset = LocalizationDataset(out / "ms_cxr.csv", root, size=30, cache=cache)
    sample = dataset[0]
    geometry = sample["geometry"]
    assert geometry == Geometry.resize_shorter_and_center_crop((60, 90), 30)
    np.testing.assert_array_equal(sample["boxes"], [[10, 20, 20, 20]])  # original pixels
    # model: scale 0.5, 45 columns centre-cropped to 30 -> left offset 7
    np.testing.assert_allclose(sample["boxes_model"], [[5 - 7, 10, 10, 10]])
    assert sample["prompt"] == "left pleural effusion" and sample["category_name"] == "Pleural Effusion"
    inside = torch.from_numpy(boxes_to_mask(sample["boxes_model"], (30, 30)))
    assert sample["image"][0][inside].mean() > 0.9 and sample["image"][0][~inside].mean() < 0.1
    dataset[0]
    assert len(calls) == 1  # the second read came from the cache
    batch = collate_localization([sample, dataset[0]])
    assert tuple(batch["pixel_values"].shape) == (2, 3, 30, 30) and len(batch["geometry"]) == 2


def test_localization_dataset_natural_rows_with_mask(tmp_path):
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[5:15, 10:20] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "bird_rgb.png")
    mask = np.zeros((20, 40), np.uint8)
    mask[5:15, 10:20] = 255
    mask[0, 0] = 100  # below half of full scale: background
    Image.fromarray(mask).save(tmp_path / "bird.png")
    frame = pd.DataFrame({
        "sample_id": ["b1"], "image_path": ["bird_rgb.png"], "concept": ["bird"], "prompt": ["a photo of a bird"],
        "mask_path": ["bird.png"], "boxes": ["[[10, 5, 10, 10]]"], "split": ["test"], "width": ["40"],
        "height": ["20"],
    })
    sample = LocalizationDataset(frame, tmp_path, size=16)[0]
    assert sample["prompt"] == "a photo of a bird" and sample["category_name"] == "bird"
    np.testing.assert_array_equal(sample["mask"], (mask == 255).astype(np.uint8))
    # natural images keep their colours: scaled by bit depth, not stretched by percentiles
    assert tuple(sample["image"].shape) == (3, 16, 16)
    assert float(sample["image"][0].max()) > 0.9 and float(sample["image"][1].max()) < 0.1
    frame.loc[0, "boxes"] = "[1, 2"
    with pytest.raises(InputDataError, match="sample b1: boxes"):
        LocalizationDataset(frame, tmp_path, size=16)[0]
