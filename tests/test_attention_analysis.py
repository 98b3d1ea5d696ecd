"""Supplement analyses: AUROC helper known answers, and the `analyze` commands' tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_fgbg.attention.analysis import pixel_auroc
from cxr_fgbg.cli.app import app


def test_pixel_auroc_known_answers():
    heat = np.zeros((10, 10))
    heat[2:5, 3:7] = 1.0
    assert pixel_auroc(heat, np.array([[3, 2, 4, 3]])) == 1.0  # the box is exactly the hot area
    assert pixel_auroc(-heat, np.array([[3, 2, 4, 3]])) == 0.0
    heat[:, :5] = np.nan  # NaN pixels are ignored; the box is now half outside the valid area
    assert pixel_auroc(heat, np.array([[3, 2, 4, 3]])) == 1.0
    assert np.isnan(pixel_auroc(np.ones((4, 4)), np.array([[0, 0, 4, 4]])))  # no negatives


@pytest.fixture()
def index_dir(tmp_path):
    root = tmp_path / "mimic"
    (root / "files").mkdir(parents=True)
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(root / "files" / "a.png")
    index = tmp_path / "index"
    index.mkdir()
    pd.DataFrame([{"sample_id": "s1", "dicom_id": "a", "category_name": "Pleural Effusion",
                   "label_text": "Small left pleural effusion.", "split": "test", "image_path": "files/a.png",
                   "boxes": json.dumps([[0, 32, 30, 30]])}]).to_csv(index / "ms_cxr.csv", index=False)
    pd.DataFrame([{"dicom_id": "a", "impression": "Large right pleural effusion."}]).to_csv(
        index / "studies.csv", index=False)
    (index / "index.json").write_text(json.dumps({"mimic_root": str(root)}))
    return index


@pytest.mark.slow
def test_analyze_tokens_and_t0_tables(tiny_model_dir, index_dir, tmp_path):
    out = tmp_path / "tokens"
    common = ["--model", str(tiny_model_dir), "--index", str(index_dir), "--out", str(out)]
    result = CliRunner().invoke(app, ["analyze", "tokens", *common, "--set", "localize.timesteps=[251]"])
    assert result.exit_code == 0, (result.output, result.exception)
    table = pd.read_csv(out / "token_auroc.csv")
    tokens = table.loc[table["token_index"] >= 0, "token"].tolist()  # every token of the prompt, in order
    assert "".join(tokens[1:-1]).replace("</w>", " ").split() == ["small", "left", "pleural", "effusion", "."]
    targets = table.loc[table["is_target"] & (table["token_index"] >= 0), "token"].tolist()
    assert "".join(targets).replace("</w>", " ").split() == ["pleural", "effusion"]
    assert (table["token_index"] == -1).sum() == 1  # plus one row for the summed finding words
    assert table["auroc"].between(0, 1).all() and (out / "token_auroc.png").is_file()

    out = tmp_path / "t0"
    common[-1] = str(out)
    result = CliRunner().invoke(app, ["analyze", "t0", *common, "--t0", "1,3",
                                      "--set", "localize.num_inference_steps=4", "--set", "localize.t0=4"])
    assert result.exit_code == 0, (result.output, result.exception)
    table = pd.read_csv(out / "t0_auroc.csv")
    assert table["t0"].tolist() == [1, 3]
    assert table["max_timestep"].tolist() == [1, 501]  # 4-step grid {751, 501, 251, 1}, lowest first
    assert (out / "t0_auroc_summary.csv").is_file() and (out / "t0_auroc.png").is_file()
