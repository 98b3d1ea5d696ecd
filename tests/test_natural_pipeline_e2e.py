"""End to end on a generated natural-image set: samples.csv -> heat maps -> M_pre -> M -> U-Net -> scores.

Objects (bright discs and squares) on striped, noisy colour backgrounds, with exact masks. The heat maps
stand in for the attention stage (the blurred object mask plus noise, in the "Heat maps" format); the
diffusion model is a random tiny 3-channel pipeline, so the refined masks only have to be well formed,
while the U-Net trained on the ground-truth-like M_pre must beat an empty prediction on held-out images.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from cxr_fgbg.data.geometry import Geometry
from cxr_fgbg.evaluation.run_masks import evaluate_masks
from cxr_fgbg.evaluation.settings import EvaluateSettings
from cxr_fgbg.masks.gmm import binarize_gmm
from cxr_fgbg.masks.refine import run_refine
from cxr_fgbg.masks.settings import RefineSettings
from cxr_fgbg.segmentation.predict import run_predict
from cxr_fgbg.segmentation.settings import SegmentSettings
from cxr_fgbg.segmentation.train import train_segmenter

SIZE = 48
N_TRAIN, N_TEST = 10, 4


def make_natural_set(root):
    """Images, masks, samples.csv (+ index.json) in the "Natural images" format."""
    rng = np.random.default_rng(7)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rows = []
    for i in range(N_TRAIN + N_TEST):
        angle, tint = rng.uniform(0, np.pi), rng.uniform(0.2, 0.5, size=3)
        stripes = 0.5 + 0.5 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) / rng.uniform(1.5, 3.0))
        image = tint[:, None, None] * (0.6 + 0.4 * stripes)[None] + rng.normal(0, 0.04, (3, SIZE, SIZE))
        cy, cx, r = rng.integers(14, SIZE - 14), rng.integers(14, SIZE - 14), rng.integers(6, 11)
        concept = "disc" if i % 2 == 0 else "square"
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) if concept == "disc" \
            else (np.abs(yy - cy) <= r - 1) & (np.abs(xx - cx) <= r - 1)
        image[:, mask] = rng.uniform(0.85, 1.0, size=3)[:, None]
        rgb = (np.clip(image, 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{i:03d}.png")
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        rows.append({"sample_id": f"toy_{i:03d}", "image_path": f"images/{i:03d}.png", "concept": concept,
                     "prompt": f"a photo of a {concept}", "mask_path": f"masks/{i:03d}.png",
                     "boxes": json.dumps([box]), "split": "train" if i < N_TRAIN else "test",
                     "width": SIZE, "height": SIZE})
    pd.DataFrame(rows).to_csv(root / "samples.csv", index=False)
    (root / "index.json").write_text(json.dumps({"root": str(root), "dataset": "toy"}))
    return rows


def fake_heatmaps(root, rows, out):
    """M-hat = blurred object mask + noise, M_pre by the GMM rule, in the "Heat maps" format."""
    rng = np.random.default_rng(3)
    (out / "maps").mkdir(parents=True)
    geometry = Geometry.resize_shorter_and_center_crop((SIZE, SIZE), 32)
    table = []
    for row in rows:
        truth = np.asarray(Image.open(root / row["mask_path"])) > 0
        heat = gaussian_filter(truth.astype(np.float32), 2.0) + rng.normal(0, 0.05, truth.shape).astype(np.float32)
        pre = binarize_gmm(heat, seed=0)
        assert pre.ok
        np.savez(out / "maps" / f"{row['sample_id']}.npz", heatmap=heat, mask_pre=pre.mask.astype(np.uint8),
                 boxes=np.asarray(json.loads(row["boxes"]), np.float32), prompt=row["prompt"],
                 tokens=np.array(["a", "photo", "of", "a", row["concept"]]), token_indices=np.array([5]),
                 words=np.array([row["concept"]]), category_name=row["concept"], geometry=geometry.to_json())
        table.append({"sample_id": row["sample_id"], "dicom_id": "", "category_name": row["concept"],
                      "label_text": row["prompt"], "split": row["split"], "prompt": row["prompt"],
                      "npz_path": f"maps/{row['sample_id']}.npz", "image_path": row["image_path"]})
    pd.DataFrame(table).to_csv(out / "heatmaps.csv", index=False)
    return out / "heatmaps.csv"


@pytest.mark.slow
def test_natural_images_end_to_end(tiny_tokenizer, tmp_path):
    from cxr_fgbg.models.settings import TinyBundleSettings
    from cxr_fgbg.models.tiny import build_tiny_pipeline

    data = tmp_path / "toy"
    rows = make_natural_set(data)
    heatmaps = fake_heatmaps(data, rows, tmp_path / "localize")
    pipe = build_tiny_pipeline(tiny_tokenizer, TinyBundleSettings(image_channels=3, image_size=32,
                                                                  vae_block_out_channels=(32, 64)), seed=0)

    # refined masks M with the (random) tiny model; M_crop and M_pre need no model
    refined = run_refine(heatmaps, tmp_path / "M", pipe=pipe, image_root=data, show_progress=False,
                         settings=RefineSettings(num_inference_steps=3, batch_size=3), percentiles=None)
    crop = run_refine(heatmaps, tmp_path / "M_crop", settings=RefineSettings(method="crop"), image_root=data,
                      show_progress=False, percentiles=None)
    pre = run_refine(heatmaps, tmp_path / "M_pre", settings=RefineSettings(method="pre"), image_root=data,
                     show_progress=False)
    assert pre.written == len(rows) and pre.skipped == 0
    assert refined.written + refined.skipped == len(rows) and refined.written >= len(rows) // 2
    assert crop.written + crop.skipped == len(rows)
    m_table = pd.read_csv(refined.masks_csv, dtype=str, keep_default_na=False)
    for _, row in m_table.iterrows():
        m = np.asarray(Image.open(tmp_path / "M" / row["mask_path"])) > 0
        p = np.asarray(Image.open(tmp_path / "M_pre" / "masks" / f"{row['sample_id']}.png")) > 0
        assert m.shape == (SIZE, SIZE) and not (m & ~p).any()
    fast = EvaluateSettings(bootstrap_samples=0, figures=False)
    crop_scores = evaluate_masks(crop.masks_csv, data / "samples.csv", tmp_path / "eval_crop", fast,
                                 progress=False).summary["pooled"]["all"]
    pre_scores = evaluate_masks(pre.masks_csv, data / "samples.csv", tmp_path / "eval_pre", fast,
                                progress=False).summary["pooled"]["all"]
    assert crop_scores["iou"] > 0.5 and pre_scores["iou"] > 0.5  # both follow the objects

    # U-Net on M_pre (ground-truth-like) and, to show the chain runs, a few steps on M
    settings = SegmentSettings(steps=80, batch_size=5, crop_size=32, learning_rate=3e-3, channels=(8, 16, 32),
                               strides=(2, 2), num_res_units=1, intensity_percentiles=None, log_every=10)
    model = train_segmenter(pre.masks_csv, tmp_path / "unet_pre", settings, seed=0, show_progress=False)
    train_segmenter(refined.masks_csv, tmp_path / "unet_M", settings.model_copy(update={"steps": 5}), seed=0,
                    show_progress=False)
    assert (tmp_path / "unet_M" / "model.pt").is_file() and model.num_images == N_TRAIN
    predicted = run_predict(model.model_path, data / "samples.csv", tmp_path / "pred", splits=["test"],
                            show_progress=False)
    assert predicted.written == N_TEST
    summary = evaluate_masks(predicted.masks_csv, data / "samples.csv", tmp_path / "eval", fast,
                             progress=False).summary
    unet = summary["pooled"]["splits"]["test"]
    empty = summary["baselines"]["all_background"]["pooled"]["splits"]["test"]
    assert (tmp_path / "eval" / "per_sample.csv").is_file() and summary["counts"]["splits"]["test"] == N_TEST
    assert unet["iou"] > 0.3 > empty["iou"]
    assert unet["miou_fg_bg"] > empty["miou_fg_bg"] + 0.1
