"""What the U-Net is trained on: crop sampling, several mask tables (M + D'_s), the default loss."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cxr_fgbg.segmentation.data import read_records, train_crop
from cxr_fgbg.segmentation.settings import SegmentSettings
from cxr_fgbg.segmentation.train import train_segmenter

SIZE = 32
CORNER = (30, 31)  # the one foreground pixel, near the bottom-right corner


def _sample() -> dict[str, np.ndarray]:
    image = np.arange(SIZE * SIZE, dtype=np.float32).reshape(1, SIZE, SIZE)  # every pixel distinct
    label = np.zeros((1, SIZE, SIZE), dtype=np.float32)
    label[0, CORNER[0], CORNER[1]] = 1.0
    return {"image": image, "label": label}


def _crops(sampling: str, fraction: float = 0.5, n: int = 200, seed: int = 0) -> list[dict]:
    crop = train_crop(8, sampling, fraction).set_random_state(seed=seed)
    return [crop(_sample()) for _ in range(n)]


def _hits(crops: list[dict]) -> int:
    return sum(int(np.asarray(c["label"]).sum()) for c in crops)


def test_foreground_crops_always_contain_the_lesion_pixel():
    crops = _crops("foreground", 1.0)
    assert _hits(crops) == len(crops)  # moved inward at the border, the pixel stays inside
    for c in crops:  # one window for image and label, never flipped
        patch, label = np.asarray(c["image"])[0], np.asarray(c["label"])[0]
        y, x = divmod(int(patch[0, 0]), SIZE)
        assert patch.shape == (8, 8) and np.array_equal(patch, _sample()["image"][0, y:y + 8, x:x + 8])
        assert label[CORNER[0] - y, CORNER[1] - x] == 1.0


def test_uniform_crops_mostly_miss_a_corner_pixel():
    # a uniform 8-px window of 32 covers (30, 31) only when it starts at row 23/24 and column 24:
    # 2/25 * 1/25 = 0.32 % of crops
    assert _hits(_crops("uniform")) <= 3


def test_foreground_fraction_sets_the_share_of_lesion_crops():
    half = _hits(_crops("foreground", 0.5))
    assert 70 <= half <= 130  # binomial(200, ~0.5 + background crops that still reach the pixel)
    assert _hits(_crops("foreground", 0.0)) < 20  # background-centred: only the few next to the pixel


def test_crop_sampling_is_seeded():
    first = [np.asarray(c["image"]) for c in _crops("foreground", 0.5, n=20, seed=4)]
    again = [np.asarray(c["image"]) for c in _crops("foreground", 0.5, n=20, seed=4)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_foreground_crop_of_an_empty_mask_is_a_background_crop():
    sample = _sample()
    sample["label"][:] = 0.0
    with pytest.warns(UserWarning, match="unable to generate class balanced samples"):
        out = train_crop(8, "foreground", 1.0).set_random_state(seed=0)(sample)
    assert np.asarray(out["image"]).shape == (1, 8, 8) and np.asarray(out["label"]).sum() == 0


def test_unknown_crop_sampling_is_refused():
    with pytest.raises(ValueError, match="uniform or foreground"):
        train_crop(8, "centre")


def _table(folder, name, ids, splits=None):
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, sid in enumerate(ids):
        image = np.full((SIZE, SIZE), 40 + i, dtype=np.uint8)
        mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
        mask[4:12, 4:12] = 255
        image[mask > 0] = 220
        Image.fromarray(image).save(folder / f"{sid}.png")
        Image.fromarray(mask).save(folder / f"{sid}_mask.png")
        row = {"sample_id": sid, "image_path": f"{sid}.png", "mask_path": f"{sid}_mask.png", "mask_kind": "refined"}
        if splits is not None:
            row["split"] = splits[i]
        rows.append(row)
    pd.DataFrame(rows).to_csv(folder / name, index=False)
    return folder / name


def test_several_mask_tables_are_read_in_order_with_each_tables_own_paths(tmp_path):
    real = _table(tmp_path / "real", "masks.csv", ["r0", "r1", "r2"], ["train", "val", "train"])
    synthetic = _table(tmp_path / "synthetic", "masks.csv", ["s0", "s1"])  # no split column: used whole
    records = read_records([real, synthetic], splits=["train"])
    assert [r.sample_id for r in records] == ["r0", "r2", "s0", "s1"]
    assert records[0].image == tmp_path / "real" / "r0.png"
    assert records[-1].mask == tmp_path / "synthetic" / "s1_mask.png"


def test_training_on_two_tables_uses_the_rows_of_both(tmp_path):
    real = _table(tmp_path / "real", "masks.csv", ["r0", "r1", "r2"], ["train", "test", "train"])
    synthetic = _table(tmp_path / "synthetic", "masks.csv", ["s0", "s1"], ["train", "train"])
    settings = SegmentSettings(steps=2, batch_size=2, crop_size=16, channels=(4, 8), strides=(2,), num_res_units=0,
                               intensity_percentiles=None)
    both = train_segmenter([real, synthetic], tmp_path / "both", settings, show_progress=False)
    alone = train_segmenter(real, tmp_path / "alone", settings, show_progress=False)
    assert (both.num_images, alone.num_images) == (4, 2)


def test_default_loss_is_dice_ce_and_bce_stays_reachable():
    from cxr_fgbg.config import load_config

    assert SegmentSettings().loss == "dicece" and SegmentSettings().crop_sampling == "uniform"
    assert load_config(None, ["segment.loss=bce"]).segment.loss == "bce"
