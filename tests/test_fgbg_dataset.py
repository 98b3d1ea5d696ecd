"""The fg/bg concept dataset: prompt choice, loss masks on the latent grid, reproducible draws."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import SkippedLog
from cxr_fgbg.training.fgbg import ConceptMaskDataset, load_concept_rows
from cxr_fgbg.training.settings import FgbgSettings, RectangleSettings

SMALL_GRID = RectangleSettings(min_side=2, min_area=16, max_side=8, max_area=64)


def write_concepts(folder, n=3):
    """n 80x64 (H x W) images, each with the foreground at rows 0-39, columns 0-31."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        image = (np.random.default_rng(i).random((80, 64)) * 255).astype(np.uint8)
        mask = np.zeros((80, 64), np.uint8)
        mask[:40, :32] = 255
        Image.fromarray(image).save(folder / "img" / f"{i}.png")
        Image.fromarray(mask).save(folder / "img" / f"{i}_mask.png")
        rows.append({"image_path": f"img/{i}.png", "mask_path": f"img/{i}_mask.png", "concept": "bird",
                     "prompt": "a bird on a branch" if i == 0 else ""})
    pd.DataFrame(rows).to_csv(folder / "concepts.csv", index=False)
    return folder / "concepts.csv"


def make_dataset(tmp_path, tiny_tokenizer, p):
    csv = write_concepts(tmp_path)
    rows = load_concept_rows(csv, tmp_path, tmp_path)
    settings = FgbgSettings(p_foreground=p, rectangle=SMALL_GRID)
    return ConceptMaskDataset(rows, tmp_path, tmp_path, tiny_tokenizer, 64, 1, (16, 16), settings, seed=7)


def test_background_latent_matches_the_mask(tmp_path, tiny_tokenizer):
    dataset = make_dataset(tmp_path, tiny_tokenizer, 0.0)
    # 80x64 -> shorter side 64: 80x64 resized to 80x64, centre crop rows 8..71; the foreground rows 0..39
    # become model rows 0..31 (latent rows 0..7), columns 0..31 (latent columns 0..7)
    background = dataset.background_latent(0)
    expected = np.ones((16, 16), bool)
    expected[:8, :8] = False
    assert np.array_equal(background, expected)


def test_foreground_samples_use_the_concept_prompt_and_the_whole_image(tmp_path, tiny_tokenizer):
    dataset = make_dataset(tmp_path, tiny_tokenizer, 1.0)
    first, second = dataset[0], dataset[1]
    assert first["text"] == "a bird on a branch"  # the row's own prompt wins
    assert second["text"] == "a photo of a bird"
    assert second["kind"] == "foreground" and second["loss_mask"].sum().item() == 256
    assert first["pixel_values"].shape == (1, 64, 64)
    assert first["pixel_values"].min() >= -1.0 and first["pixel_values"].max() <= 1.0


def test_background_samples_mask_only_background(tmp_path, tiny_tokenizer):
    dataset = make_dataset(tmp_path, tiny_tokenizer, 0.0)
    background = dataset.background_latent(0)
    for key in range(6):
        item = dataset.text_item(key)
        mask = item["loss_mask"][0].numpy() > 0
        assert item["text"] == "a photo of a background"
        assert item["kind"] == "rectangle"
        assert 1 <= mask.sum() <= 64 and not (mask & ~background).any()


def test_draws_are_reproducible_per_key_and_differ_between_epochs(tmp_path, tiny_tokenizer):
    dataset = make_dataset(tmp_path, tiny_tokenizer, 0.5)
    again = make_dataset(tmp_path, tiny_tokenizer, 0.5)
    masks = [dataset.text_item(key)["loss_mask"] for key in range(0, 30, 3)]  # row 0 in 10 epochs
    assert all((m == again.text_item(k)["loss_mask"]).all() for m, k in zip(masks, range(0, 30, 3), strict=True))
    assert len({m.numpy().tobytes() for m in masks}) > 2
    kinds = [dataset.text_item(k)["kind"] for k in range(200)]
    assert 70 < kinds.count("foreground") < 130  # p = 0.5


def test_bad_rows_are_skipped_with_a_reason(tmp_path):
    csv = write_concepts(tmp_path)
    frame = pd.read_csv(csv, keep_default_na=False)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "img" / "small.png")
    frame.loc[1, "mask_path"] = "img/small.png"
    frame.loc[2, "image_path"] = "img/missing.png"
    frame.to_csv(csv, index=False)
    skipped = SkippedLog(tmp_path / "skipped.csv")
    rows = load_concept_rows(csv, tmp_path, tmp_path, skipped)
    assert [r["image_path"] for r in rows] == ["img/0.png"]
    reasons = sorted(row["reason"] for row in skipped)
    assert reasons[0] == "image file not found" and reasons[1].startswith("mask size (10, 10) differs")
    with pytest.raises(InputDataError, match="line 3"):
        load_concept_rows(csv, tmp_path, tmp_path)


def test_refine_masks_csv_works_as_concept_csv_through_category_name(tmp_path, tiny_tokenizer):
    csv = write_concepts(tmp_path)
    frame = pd.read_csv(csv, keep_default_na=False).drop(columns=["concept", "prompt"])
    frame["category_name"] = "dog"  # what `cxr-fgbg refine` writes for a natural index's concept
    frame.to_csv(csv, index=False)
    rows = load_concept_rows(csv, tmp_path, tmp_path)
    dataset = ConceptMaskDataset(rows, tmp_path, tmp_path, tiny_tokenizer, 64, 1, (16, 16),
                                 FgbgSettings(p_foreground=1.0, rectangle=SMALL_GRID), seed=7)
    assert [r["concept"] for r in rows] == ["dog"] * 3 and dataset[0]["text"] == "a photo of a dog"
    frame.drop(columns=["category_name"]).to_csv(csv, index=False)
    with pytest.raises(InputDataError, match="prompt or concept"):
        load_concept_rows(csv, tmp_path, tmp_path)
