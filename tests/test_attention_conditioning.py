"""The conditioning map |eps(y) - eps(empty)|: zero without a prompt, seeded per sample, and the analyze table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from PIL import Image
from typer.testing import CliRunner

from cxr_fgbg.attention.conditioning import conditioning_maps
from cxr_fgbg.attention.heatmap import encode_prompts
from cxr_fgbg.cli.app import app


def _inputs(pipe, prompts):
    latents = torch.randn((len(prompts), 4, 16, 16), generator=torch.Generator().manual_seed(0))
    return latents, encode_prompts(pipe.tokenizer, pipe.text_encoder, prompts), \
        encode_prompts(pipe.tokenizer, pipe.text_encoder, [""])


def test_empty_prompt_gives_a_zero_map_and_a_real_prompt_does_not(tiny_pipeline):
    latents, embeddings, empty = _inputs(tiny_pipeline, ["", "Small left pleural effusion."])
    maps = conditioning_maps(tiny_pipeline.unet, tiny_pipeline.scheduler, latents, embeddings, empty,
                             [501, 101], ["a", "b"], seed=0)
    assert maps.shape == (2, 16, 16)
    assert torch.equal(maps[0], torch.zeros(16, 16)) and (maps[1] > 0).all()


def test_a_sample_map_does_not_depend_on_its_batch(tiny_pipeline):
    prompts = ["Small left pleural effusion.", "Mild pulmonary edema.", "No pneumothorax."]
    latents, embeddings, empty = _inputs(tiny_pipeline, prompts)
    args = (tiny_pipeline.unet, tiny_pipeline.scheduler)
    together = conditioning_maps(*args, latents, embeddings, empty, [301], ["a", "b", "c"], seed=3, batch_size=8)
    alone = conditioning_maps(*args, latents[1:2], embeddings[1:2], empty, [301], ["b"], seed=3, batch_size=2)
    assert torch.allclose(together[1], alone[0], atol=1e-5)
    other_seed = conditioning_maps(*args, latents[1:2], embeddings[1:2], empty, [301], ["b"], seed=4)
    assert not torch.allclose(alone, other_seed)


def test_analyze_conditioning_table(tiny_model_dir, tmp_path):
    root = tmp_path / "mimic"
    (root / "files").mkdir(parents=True)
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(root / "files" / "a.png")
    index = tmp_path / "index"
    index.mkdir()
    rows = [{"sample_id": f"s{k}", "dicom_id": "a", "category_name": "Pleural Effusion", "split": split,
             "label_text": "Small left pleural effusion.", "image_path": "files/a.png",
             "boxes": json.dumps([[36, 20, 20, 30]])} for k, split in enumerate(("train", "val", "val"))]
    pd.DataFrame(rows).to_csv(index / "ms_cxr.csv", index=False)
    (index / "index.json").write_text(json.dumps({"mimic_root": str(root)}))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["analyze", "conditioning", "--model", str(tiny_model_dir), "--index", str(index),
                                      "--out", str(out), "--split", "val", "--set", "localize.timesteps=[251]"])
    assert result.exit_code == 0, (result.output, result.exception)
    table = pd.read_csv(out / "conditioning_vs_attention.csv")
    assert table["sample_id"].tolist() == ["s1", "s2"]  # the val rows only
    scores = table[["auroc_attention", "auroc_conditioning"]].to_numpy()
    assert np.isfinite(scores).all() and ((scores >= 0) & (scores <= 1)).all()
    assert set(table["side_attention"]) <= {0.0, 0.5, 1.0}  # the box lies wholly in the right half
    summary = pd.read_csv(out / "conditioning_vs_attention_summary.csv")
    assert summary["category_name"].tolist() == ["Pleural Effusion", "macro (mean of classes)"]
    assert (out / "conditioning_vs_attention.png").is_file()
    nothing = CliRunner().invoke(app, ["analyze", "conditioning", "--model", str(tiny_model_dir), "--index",
                                       str(index), "--out", str(tmp_path / "none"), "--split", "tset"])
    assert "no usable sample of split(s) tset" in str(nothing.exception)


def test_analyze_takes_the_model_from_the_config(tiny_model_dir, tmp_path):
    result = CliRunner().invoke(app, ["analyze", "tokens", "--index", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "no model folder: pass --model DIR or set paths.model or model.path" in str(result.exception)
    result = CliRunner().invoke(app, ["analyze", "tokens", "--index", str(tmp_path), "--out", str(tmp_path / "o"),
                                      "--set", f"paths.model={tiny_model_dir}"])
    assert "ms_cxr.csv: not found" in str(result.exception)  # got past the model, on to the (empty) index
