"""Segmentation stage: geometry of the protocol, no flips, seeded resumable training, prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cxr_fgbg.segmentation.data import load_prepared, read_records, shorter_side_geometry, train_crop
from cxr_fgbg.segmentation.predict import predict_image
from cxr_fgbg.segmentation.settings import SegmentSettings
from cxr_fgbg.segmentation.train import load_segmenter, train_segmenter


def test_shorter_side_geometry():
    g = shorter_side_geometry((100, 200), 50, 50)
    assert g.resized_hw == (50, 100) and (g.top, g.left) == (0, 25) and g.model_hw == (50, 50)
    g2 = shorter_side_geometry((300, 150), 64)
    assert g2.resized_hw == (128, 64) and g2.model_hw == (128, 64)


def test_training_crop_is_a_window_never_a_flip():
    image = np.arange(40 * 40, dtype=np.float32).reshape(1, 40, 40)  # every pixel distinct
    crop = train_crop(16)
    crop.set_random_state(seed=3)
    seen = set()
    for _ in range(20):
        out = crop({"image": image, "label": (image > 800).astype(np.float32)})
        patch = np.asarray(out["image"])[0]
        y, x = divmod(int(patch[0, 0]), 40)
        assert np.array_equal(patch, image[0, y:y + 16, x:x + 16])  # unflipped, same offset for the label
        assert np.array_equal(np.asarray(out["label"])[0], (image[0, y:y + 16, x:x + 16] > 800))
        seen.add((y, x))
    assert len(seen) > 5  # crops are random


def _dataset(root, n=6, hw=(40, 40)):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        img = (rng.random(hw) * 80).astype(np.uint8)
        mask = np.zeros(hw, dtype=np.uint8)
        y, x = rng.integers(4, hw[0] - 16), rng.integers(4, hw[1] - 16)
        mask[y:y + 12, x:x + 12] = 255
        img[mask > 0] = 220
        Image.fromarray(img).save(root / f"img{i}.png")
        Image.fromarray(mask).save(root / f"mask{i}.png")
        rows.append({"sample_id": f"s{i}", "image_path": f"img{i}.png", "mask_path": f"mask{i}.png",
                     "mask_kind": "refined", "split": "train" if i < n - 2 else "test"})
    pd.DataFrame(rows).to_csv(root / "masks.csv", index=False)
    return root / "masks.csv"


SMALL = dict(crop_size=32, batch_size=2, channels=(4, 8, 16), strides=(2, 2), num_res_units=1,
             intensity_percentiles=None, log_every=1)


def test_load_prepared_resizes_image_and_mask_together(tmp_path):
    table = _dataset(tmp_path, hw=(40, 80))
    record = read_records(table)[0]
    item = load_prepared(record, 20, None, None)
    assert item["image"].shape == (1, 20, 40) and item["label"].shape == (1, 20, 40)
    assert set(np.unique(item["label"])) <= {0.0, 1.0}
    assert [r.split for r in read_records(table, splits=["test"])] == ["test", "test"]


def test_training_is_seeded_and_resume_replays_exactly(tmp_path):
    table = _dataset(tmp_path)
    full = train_segmenter(table, tmp_path / "full", SegmentSettings(steps=6, **SMALL), seed=1, show_progress=False)
    part = SegmentSettings(steps=6, checkpoint_every=3, **SMALL)
    # an interrupted run: stop after 3 steps by asking for 3, keeping its checkpoint as the resume point
    train_segmenter(table, tmp_path / "resumed", part.model_copy(update={"steps": 3}), seed=1, show_progress=False)
    (tmp_path / "resumed" / "checkpoints").mkdir()
    (tmp_path / "resumed" / "model.pt").rename(tmp_path / "resumed" / "checkpoints" / "step_000003.pt")
    resumed = train_segmenter(table, tmp_path / "resumed", part, seed=1, show_progress=False)
    assert full.steps == resumed.steps == 6 and full.num_images == 4  # the 'train' rows only
    a, _ = load_segmenter(full.model_path)
    b, _ = load_segmenter(resumed.model_path)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), name
    other = train_segmenter(table, tmp_path / "other", SegmentSettings(steps=6, **SMALL), seed=2, show_progress=False)
    c, _ = load_segmenter(other.model_path)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True))
    log = pd.read_csv(tmp_path / "full" / "train_log.csv")
    assert list(log["step"]) == [1, 2, 3, 4, 5, 6]


class _Bright(torch.nn.Module):
    """A stand-in network: logit = 20 * (image - 0.5), so the prediction is `image > 0.5`."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return 20 * (x - 0.5)


@pytest.mark.parametrize("mode", ["center_crop", "sliding_window"])
def test_predict_maps_back_to_original_coordinates(mode):
    image = np.zeros((1, 40, 60), dtype=np.float32)
    image[0, 10:30, 2:12] = 1.0  # left edge: cut away by the centre crop
    image[0, 10:30, 25:35] = 1.0  # middle
    settings = SegmentSettings(crop_size=40, inference=mode)
    mask = predict_image(_Bright(), image, settings)
    assert mask.shape == (40, 60)
    assert np.array_equal(mask[:, 20:40], image[0, :, 20:40] > 0.5)
    assert mask[10:30, 2:12].all() == (mode == "sliding_window")
