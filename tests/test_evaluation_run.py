"""Batch evaluation end to end on small generated heat-map and mask folders (formats of docs/architecture.md)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.evaluation.boxes import boxes_to_mask
from cxr_fgbg.evaluation.published import PUBLISHED_LABEL
from cxr_fgbg.evaluation.run import evaluate_heatmaps
from cxr_fgbg.evaluation.run_masks import evaluate_masks
from cxr_fgbg.evaluation.settings import EvaluateSettings

SHAPE = (32, 48)
EFFUSION_BOX = [4.0, 16.0, 14.0, 12.0]  # wholly in the image's left half
CARDIO_BOX = [16.0, 10.0, 16.0, 14.0]  # crosses the midline


def _write_heatmaps(root, with_train=True):
    rows = []
    maps = root / "maps"
    maps.mkdir(parents=True)

    def add(sample_id, category, split, heatmap, boxes, **extra):
        np.savez_compressed(
            maps / f"{sample_id}.npz", heatmap=heatmap.astype(np.float32), boxes=np.array(boxes, np.float32),
            mask_pre=(heatmap > 0.5).astype(np.uint8), category_name=category, prompt="x", **extra,
        )
        rows.append({
            "sample_id": sample_id, "dicom_id": f"d{sample_id}", "category_name": category,
            "label_text": "", "split": split, "prompt": "x", "npz_path": f"maps/{sample_id}.npz",
            "image_path": "",
        })

    for category, box in (("Pleural Effusion", EFFUSION_BOX), ("Cardiomegaly", CARDIO_BOX)):
        perfect = boxes_to_mask([box], SHAPE).astype(np.float32)
        for k in range(3 if with_train else 0):
            add(f"{category[:4]}-train{k}", category, "train", perfect, [box])
        for k in range(3):
            noisy = perfect + 0.1 * np.random.default_rng(k).random(SHAPE)
            add(f"{category[:4]}-test{k}", category, "test", noisy, [box])
    with_nan = boxes_to_mask([EFFUSION_BOX], SHAPE).astype(np.float32)
    with_nan[:, -5:] = np.nan  # outside the valid area
    add("Pleu-nan", "Pleural Effusion", "validate", with_nan, [EFFUSION_BOX])
    np.savez_compressed(maps / "broken.npz", heatmap=np.zeros(SHAPE, np.float32))  # no boxes
    rows.append({**rows[-1], "sample_id": "broken", "npz_path": "maps/broken.npz"})
    rows.append({**rows[-1], "sample_id": "missing", "npz_path": "maps/missing.npz"})
    pd.DataFrame(rows).to_csv(root / "heatmaps.csv", index=False)
    return root


FAST = EvaluateSettings(bootstrap_samples=50, figures=False)


def test_heatmap_evaluation_scores_maps_and_baselines(tmp_path):
    source = _write_heatmaps(tmp_path / "hm")
    result = evaluate_heatmaps(source, tmp_path / "out", FAST, seed=3, progress=False)
    out = tmp_path / "out"
    per_sample = pd.read_csv(out / "per_sample.csv")
    assert sorted(per_sample["split"].unique()) == ["test", "validate"]  # training rows never scored
    assert len(per_sample) == 7
    nan_row = per_sample.set_index("sample_id").loc["Pleu-nan"]
    assert nan_row["pixel_auroc"] == 1.0 and nan_row["valid_fraction"] == pytest.approx(43 / 48)
    assert nan_row["mask_pre_iou"] == 1.0

    summary = json.loads((out / "summary.json").read_text())
    effusion = summary["classes"]["Pleural Effusion"]
    assert effusion["n"] == 4
    assert effusion["pixel_auroc"]["mean"] == 1.0
    assert effusion["pointing_game"]["mean"] == 1.0
    assert effusion["side_accuracy"]["mean"] == 1.0
    assert summary["classes"]["Cardiomegaly"]["side_accuracy"] == {"mean": None, "ci95": [None, None], "n": 0}
    assert summary["macro"]["pixel_auroc"]["mean"] == 1.0
    gauss = summary["baselines"]["centred_gaussian"]
    # A symmetric prior ties on full maps; on the map cut on the right it is scored on the same valid
    # area, which leaves more mass on the left: 1.0 there, so (3 * 0.5 + 1) / 4.
    assert gauss["classes"]["Pleural Effusion"]["side_accuracy"]["mean"] == 0.625
    full = per_sample[(per_sample["valid_fraction"] == 1) & (per_sample["box_side"] == "left")]
    assert (full["centred_gaussian__side_accuracy"] == 0.5).all() and len(full) == 3
    prior = summary["baselines"]["class_location"]
    # The boxes are stereotyped, so the class prior knows them without reading anything.
    assert prior["classes"]["Pleural Effusion"]["pixel_auroc"]["mean"] > 0.97
    assert prior["classes"]["Pleural Effusion"]["side_accuracy"]["mean"] == 1.0
    assert "3 training rows" in prior["description"] or "Cardiomegaly 3" in prior["description"]
    assert summary["published"]["label"] == PUBLISHED_LABEL

    skipped = pd.read_csv(out / "skipped.csv")
    assert sorted(skipped["path"]) == ["maps/broken.npz", "maps/missing.npz"]
    assert any("no boxes" in r or "missing array" in r for r in skipped["reason"])
    report = (out / "report.md").read_text()
    assert "Pixel AUROC: the maps beat the centred Gaussian in 2 of 2 classes" in report
    assert PUBLISHED_LABEL in report
    assert (out / "report.html").read_text().count("<table>") >= 6
    assert result.n_skipped == 2

    # Seeded intervals: a rerun writes the same summary.
    evaluate_heatmaps(source, tmp_path / "out2", FAST, seed=3, progress=False)
    assert json.loads((tmp_path / "out2" / "summary.json").read_text()) == summary


def test_class_prior_from_index_or_omitted_with_a_note(tmp_path):
    source = _write_heatmaps(tmp_path / "hm", with_train=False)
    evaluate_heatmaps(source, tmp_path / "out", FAST, progress=False)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["baselines"]) == ["centred_gaussian"]
    assert "class-location prior is omitted" in (tmp_path / "out" / "report.md").read_text()

    index = tmp_path / "index"
    index.mkdir()
    # Boxes of a 96x64 image: the same place in fractions of the image as EFFUSION_BOX on 48x32.
    pd.DataFrame([{
        "sample_id": "t1", "dicom_id": "x", "category_name": "Pleural Effusion", "split": "train",
        "image_width": 96, "image_height": 64, "boxes": json.dumps([[8, 32, 28, 24]]),
    }]).to_csv(index / "ms_cxr.csv", index=False)
    evaluate_heatmaps(source, tmp_path / "out2", FAST, prior_index=index, progress=False)
    summary = json.loads((tmp_path / "out2" / "summary.json").read_text())
    prior = summary["baselines"]["class_location"]
    assert prior["classes"]["Pleural Effusion"]["pixel_auroc"]["mean"] > 0.97
    assert prior["classes"]["Cardiomegaly"]["pixel_auroc"]["mean"] is None
    assert any("No training boxes for Cardiomegaly" in note for note in summary["notes"])


def test_cli_writes_report_with_figures(tmp_path):
    from cxr_fgbg.cli.app import app

    source = _write_heatmaps(tmp_path / "hm")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "evaluate", "--heatmaps", str(source), "--out", str(out), "--no-progress",
        "--set", "evaluate.bootstrap_samples=20",
    ])
    assert result.exit_code == 0, result.output
    assert "evaluated 7 samples, skipped 2" in result.output
    for name in ("per_class_bars.png", "overlays.png"):
        with Image.open(out / "figures" / name) as img:
            assert img.size[0] > 200
    assert "figures/overlays.png" in (out / "report.md").read_text()
    assert (out / "config.yaml").is_file()

    bad = CliRunner().invoke(app, ["evaluate", "--out", str(out)])
    assert isinstance(bad.exception, InputDataError)


def _png(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def test_mask_evaluation_against_phantom_masks_and_boxes(tmp_path):
    shape = (10, 20)
    truth = np.zeros(shape, bool)
    truth[2:6, 4:10] = True  # 24 pixels
    pred = np.zeros(shape, bool)
    pred[2:6, 6:12] = True  # 24 pixels, 16 shared: IoU 16 / 32
    _png(tmp_path / "gt" / "d1__pleural_effusion.png", truth)
    pd.DataFrame([{
        "dicom_id": "d1", "category_name": "Pleural Effusion", "side": "left", "size": "small",
        "mask_path": "d1__pleural_effusion.png", "split": "test",
    }]).to_csv(tmp_path / "gt" / "ground_truth.csv", index=False)
    _png(tmp_path / "masks" / "masks" / "s1.png", pred)
    _png(tmp_path / "masks" / "masks" / "s2.png", pred)
    pd.DataFrame([
        {"sample_id": "s1", "dicom_id": "d1", "category_name": "Pleural Effusion", "mask_path": "masks/s1.png"},
        {"sample_id": "s2", "dicom_id": "d9", "category_name": "Pleural Effusion", "mask_path": "masks/s2.png"},
    ]).to_csv(tmp_path / "masks" / "masks.csv", index=False)

    result = evaluate_masks(tmp_path / "masks", tmp_path / "gt", tmp_path / "out", FAST, progress=False)
    row = result.per_sample.iloc[0]
    assert row["iou"] == pytest.approx(0.5)
    assert row["dice"] == pytest.approx(32 / 48)
    assert row["accuracy"] == pytest.approx(1 - 16 / 200)
    assert row["miou_fg_bg"] == pytest.approx((0.5 + 168 / 184) / 2)
    assert row["enclosing_box_iou"] == pytest.approx(16 / 32)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["pooled"]["all"]["iou"] == pytest.approx(0.5)
    assert summary["classes"]["Pleural Effusion"]["iou"]["mean"] == pytest.approx(0.5)
    skipped = pd.read_csv(tmp_path / "out" / "skipped.csv")
    assert list(skipped["path"]) == ["masks/s2.png"] and "no ground truth" in skipped["reason"][0]

    # Box-style truth at twice the size: rescaled to the mask, inclusive of every covered pixel.
    pd.DataFrame([{"sample_id": "s1", "image_width": 40, "image_height": 20, "boxes": "[[8, 4, 12, 8]]"}]).to_csv(
        tmp_path / "boxes.csv", index=False
    )
    result = evaluate_masks(tmp_path / "masks", tmp_path / "boxes.csv", tmp_path / "out2", FAST, progress=False)
    assert result.per_sample.iloc[0]["iou"] == pytest.approx(0.5)
    assert result.per_sample.iloc[0]["truth_kind"] == "boxes"
    assert not math.isnan(result.summary["macro"]["iou"]["mean"])


def test_overlay_image_is_found_under_the_root_and_resized_to_the_map(tmp_path):
    from cxr_fgbg.evaluation.images import load_display_image, resolve_path

    image = np.zeros((16, 24), np.uint8)
    image[:, 12:] = 200
    (tmp_path / "files").mkdir()
    Image.fromarray(image).save(tmp_path / "files" / "a.png")
    path = resolve_path("files/a.png", None, tmp_path)
    assert path == tmp_path / "files" / "a.png"
    assert resolve_path("files/missing.png", tmp_path) is None
    shown = load_display_image(path, SHAPE)
    assert shown.shape == SHAPE and shown.min() == 0.0 and shown.max() == 1.0
    assert shown[:, :20].max() < 0.5 and shown[:, 28:].min() > 0.5  # never flipped left-right
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert load_display_image(tmp_path / "bad.png", SHAPE) is None  # the overlay then shows the map alone
