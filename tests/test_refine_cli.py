"""The commands `refine`, `synthesize` and `segment train|predict|evaluate` on the tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image
from typer.testing import CliRunner

from cxr_fgbg.data.geometry import Geometry
from cxr_fgbg.errors import ConfigError


def _heatmaps(root):
    (root / "images").mkdir(parents=True)
    (root / "loc" / "maps").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for i in range(3):
        img = (rng.random((64, 64)) * 60).astype(np.uint8)
        truth = np.zeros((64, 64), dtype=np.uint8)
        truth[20 + i:40 + i, 16:36] = 255
        img[truth > 0] = 220
        Image.fromarray(img).save(root / "images" / f"{i}.png")
        Image.fromarray(truth).save(root / "images" / f"{i}_gt.png")
        pre = np.zeros((64, 64), dtype=np.uint8)
        pre[14 + i:46 + i, 10:42] = 1
        np.savez(root / "loc" / "maps" / f"s{i}.npz", heatmap=pre.astype(np.float32), mask_pre=pre,
                 geometry=np.array(Geometry.identity((64, 64)).to_json()))
        rows.append({"sample_id": f"s{i}", "dicom_id": f"d{i}", "category_name": "Pleural Effusion",
                     "split": "train", "npz_path": f"maps/s{i}.npz", "image_path": f"images/{i}.png",
                     "mask_path": f"images/{i}_gt.png"})
    frame = pd.DataFrame(rows)
    frame.drop(columns=["mask_path"]).to_csv(root / "loc" / "heatmaps.csv", index=False)
    frame[["sample_id", "dicom_id", "category_name", "mask_path"]].to_csv(root / "truth.csv", index=False)
    return root / "loc" / "heatmaps.csv"


def test_refine_synthesize_segment_commands(tmp_path, tiny_model_dir):
    from cxr_fgbg.cli.app import app

    runner = CliRunner()
    heatmaps = _heatmaps(tmp_path)
    model = str(tiny_model_dir)

    res = runner.invoke(app, ["refine", "--heatmaps", str(heatmaps), "--out", str(tmp_path / "M"), "--model", model,
                              "--image-root", str(tmp_path), "--background-prompt", "No pneumothorax.",
                              "--set", "masks.refine.num_inference_steps=2"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "M" / "masks.csv")
    assert len(table) + len(pd.read_csv(tmp_path / "M" / "skipped.csv")) == 3
    assert "num_inference_steps: 2" in (tmp_path / "M" / "config.yaml").read_text()

    res = runner.invoke(app, ["refine", "--heatmaps", str(heatmaps), "--out", str(tmp_path / "P"), "--method", "pre",
                              "--image-root", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert sorted(pd.read_csv(tmp_path / "P" / "masks.csv")["mask_kind"]) == ["pre"] * 3

    res = runner.invoke(app, ["refine", "--heatmaps", str(heatmaps), "--out", str(tmp_path / "X")])
    assert isinstance(res.exception, ConfigError) and "--model" in str(res.exception)

    res = runner.invoke(app, ["synthesize", "--model", model, "--prompt", "Small left pleural effusion.",
                              "--out", str(tmp_path / "S"), "-w", "-1", "-w", "2",
                              "--set", "masks.guidance.images_per_weight=1",
                              "--set", "masks.guidance.num_inference_steps=2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "S" / "contact_sheet.png").is_file() and (tmp_path / "S" / "w_2" / "000.png").is_file()

    res = runner.invoke(app, ["synthesize", "--model", model, "--prompt", "Small left pleural effusion.",
                              "--out", str(tmp_path / "D"), "--dataset", "--concept", "effusion",
                              "--set", "masks.synthetic.images_per_prompt=2",
                              "--set", "masks.synthetic.num_inference_steps=2"])
    assert res.exit_code == 0, res.output
    samples = pd.read_csv(tmp_path / "D" / "samples.csv")
    assert list(samples["concept"]) == ["effusion", "effusion"]
    assert all((tmp_path / "D" / p).is_file() for p in samples["image_path"])

    small = ["--set", "segment.steps=3", "--set", "segment.batch_size=2", "--set", "segment.crop_size=32",
             "--set", "segment.channels=[4, 8]", "--set", "segment.strides=[2]", "--set", "segment.num_res_units=0"]
    res = runner.invoke(app, ["segment", "train", "--masks", str(tmp_path / "P" / "masks.csv"),
                              "--out", str(tmp_path / "U"), *small])
    assert res.exit_code == 0, res.output
    assert "trained 3 steps on 3 image(s)" in res.output
    res = runner.invoke(app, ["segment", "predict", "--model", str(tmp_path / "U"),
                              "--images", str(tmp_path / "P" / "masks.csv"), "--out", str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "pred" / "masks.csv")) == 3
    # M_pre against the truth, joined on dicom_id + category_name
    res = runner.invoke(app, ["segment", "evaluate", "--predictions", str(tmp_path / "P" / "masks.csv"),
                              "--truth", str(tmp_path / "truth.csv"), "--out", str(tmp_path / "ev")])
    assert res.exit_code == 0, res.output
    per = pd.read_csv(tmp_path / "ev" / "per_sample.csv")
    assert per["iou"].round(6).tolist() == [round(400 / 1024, 6)] * 3  # 20x20 object in a 32x32 M_pre
