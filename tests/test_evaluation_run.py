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


def test_mask_evaluation_pools_per_split_beside_the_all_background_prediction(tmp_path):
    """Known counts: x (test) 16 of 20 object pixels found; y (validate) 4 found, 4 false; 10x10 images."""
    truth_x, pred_x = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    truth_x[0:4, 0:5], pred_x[0:4, 0:4] = True, True  # tp 16, fn 4, tn 80
    truth_y, pred_y = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    truth_y[5:7, 5:9], pred_y[5:6, 5:9], pred_y[0:1, 0:4] = True, True, True  # tp 4, fp 4, fn 4, tn 88
    for name, truth, pred in (("x", truth_x, pred_x), ("y", truth_y, pred_y)):
        _png(tmp_path / "data" / "gt" / f"{name}.png", truth)
        _png(tmp_path / "p" / f"{name}.png", pred)
    # samples.csv given as a file: its mask paths are relative to the root recorded in index.json beside it
    (tmp_path / "idx").mkdir()
    (tmp_path / "idx" / "index.json").write_text(json.dumps({"root": str(tmp_path / "data")}))
    pd.DataFrame([
        {"sample_id": "x", "concept": "disc", "mask_path": "gt/x.png", "split": "test"},
        {"sample_id": "y", "concept": "disc", "mask_path": "gt/y.png", "split": "validate"},
        {"sample_id": "z", "concept": "disc", "mask_path": "", "split": "test"},  # no ground truth: skipped
    ]).to_csv(tmp_path / "idx" / "samples.csv", index=False)
    _png(tmp_path / "p" / "z.png", pred_x)
    pd.DataFrame([{"sample_id": n, "mask_path": f"{n}.png"} for n in ("x", "y", "z")]).to_csv(
        tmp_path / "p" / "masks.csv", index=False)

    result = evaluate_masks(tmp_path / "p" / "masks.csv", tmp_path / "idx" / "samples.csv", tmp_path / "ev", FAST,
                            progress=False)
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary == json.loads(json.dumps(result.summary))
    pooled = summary["pooled"]
    assert pooled["splits"]["test"]["iou"] == pytest.approx(16 / 20)
    assert pooled["splits"]["test"]["miou_fg_bg"] == pytest.approx((16 / 20 + 80 / 84) / 2)
    assert pooled["splits"]["validate"]["iou"] == pytest.approx(4 / 12)
    assert pooled["all"]["iou"] == pytest.approx(20 / 32) and pooled["all"]["accuracy"] == pytest.approx(188 / 200)
    assert pooled["classes"]["disc"] == pooled["all"]
    assert summary["counts"] == {"all": 2, "classes": {"disc": 2}, "splits": {"test": 1, "validate": 1}}
    empty = summary["baselines"]["all_background"]
    assert empty["pooled"]["all"]["iou"] == 0.0 and empty["pooled"]["all"]["accuracy"] == pytest.approx(172 / 200)
    assert empty["pooled"]["splits"]["test"]["miou_fg_bg"] == pytest.approx(80 / 100 / 2)
    assert empty["classes"]["disc"]["iou"]["mean"] == 0.0
    assert empty["classes"]["disc"]["accuracy"]["mean"] == pytest.approx((80 / 100 + 92 / 100) / 2)
    assert result.per_sample.set_index("sample_id").loc["y", "all_background__enclosing_box_iou"] == 0.0
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "all-background prediction" in report and "split validate" in report
    skipped = pd.read_csv(tmp_path / "ev" / "skipped.csv")
    assert len(skipped) == 1 and "no ground truth for sample 'z'" in skipped["reason"][0]


def test_segment_evaluate_is_the_same_scoring_as_evaluate_masks(tmp_path):
    from cxr_fgbg.cli.app import app

    truth, pred = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    truth[0:4, 0:5], pred[0:4, 0:4] = True, True
    _png(tmp_path / "gt" / "x.png", truth)
    _png(tmp_path / "pred" / "masks" / "x.png", pred)
    pd.DataFrame([{"sample_id": "x", "mask_path": "x.png", "split": "test"}]).to_csv(
        tmp_path / "gt" / "truth.csv", index=False)
    pd.DataFrame([{"sample_id": "x", "mask_path": "masks/x.png"}]).to_csv(tmp_path / "pred" / "masks.csv", index=False)
    fast = ["--set", "evaluate.bootstrap_samples=20", "--set", "evaluate.figures=false", "--no-progress"]
    runner = CliRunner()
    res = runner.invoke(app, ["segment", "evaluate", "--predictions", str(tmp_path / "pred"),
                              "--truth", str(tmp_path / "gt" / "truth.csv"), "--out", str(tmp_path / "a"), *fast])
    assert res.exit_code == 0, res.output
    assert "pooled test: accuracy 0.960, iou 0.800" in res.output and "all-background: iou 0.000" in res.output
    res = runner.invoke(app, ["evaluate", "--masks", str(tmp_path / "pred"), "--ground-truth",
                              str(tmp_path / "gt" / "truth.csv"), "--out", str(tmp_path / "b"), *fast])
    assert res.exit_code == 0, res.output
    a, b = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("a", "b"))
    assert a["pooled"] == b["pooled"] and a["baselines"] == b["baselines"] and a["classes"] == b["classes"]
    assert (tmp_path / "a" / "config.yaml").is_file() and (tmp_path / "a" / "report.md").is_file()


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


def test_mask_evaluation_says_when_every_mask_lies_outside_the_splits(tmp_path):
    from cxr_fgbg.errors import InputDataError

    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    _png(tmp_path / "gt" / "a.png", mask)
    _png(tmp_path / "p" / "a.png", mask)
    pd.DataFrame([{"sample_id": "a", "mask_path": "gt/a.png", "split": "train"}]).to_csv(
        tmp_path / "truth.csv", index=False)
    pd.DataFrame([{"sample_id": "a", "mask_path": "a.png"}]).to_csv(tmp_path / "p" / "masks.csv", index=False)
    with pytest.raises(InputDataError, match=r"1 mask\(s\) lie outside evaluate.eval_splits \['test'\], 0 skipped"):
        evaluate_masks(tmp_path / "p", tmp_path / "truth.csv", tmp_path / "ev",
                       FAST.model_copy(update={"eval_splits": ["test"]}), progress=False)
