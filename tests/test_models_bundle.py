"""The tiny bundle: built from a small index, loadable by diffusers, measured, resumable, deterministic."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from diffusers import StableDiffusionPipeline
from test_models_support import make_index, quick_settings
from typer.testing import CliRunner

from cxr_fgbg.cli.app import app
from cxr_fgbg.errors import ConfigError, InputDataError
from cxr_fgbg.models.bundle import build_bundle
from cxr_fgbg.models.loading import BUNDLE_FILE, load_pipeline

STUDIES = 24  # rows 8, 18 are test; 9, 19 validate; the other 20 train


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    index = make_index(root, STUDIES)
    broken = root / "mimic" / "files/p10/p10000000/s50000000/d0000.dcm"  # a training image
    broken.write_bytes(b"not a dicom")
    report = build_bundle(index, root / "model", quick_settings(), seed=3, progress=False)
    return root, index, report


def test_bundle_loads_with_diffusers_and_generates(built):
    root, _, _ = built
    pipe = StableDiffusionPipeline.from_pretrained(root / "model", local_files_only=True)
    assert pipe.vae.config.in_channels == 1
    with torch.no_grad():
        image = pipe("left pleural effusion.", num_inference_steps=2, height=32, width=32, output_type="pt",
                     generator=torch.Generator().manual_seed(0)).images
    assert image.shape == (1, 1, 32, 32)
    assert torch.isfinite(image).all()


def test_bundle_report_and_json(built):
    root, _, report = built
    stored = json.loads((root / "model" / BUNDLE_FILE).read_text())
    assert stored["seed"] == 3
    assert stored["settings"] == quick_settings().model_dump(mode="json")
    assert stored["text_encoder"] == {"pretraining": "mlm", "train_jointly": False, "frozen": True}
    assert report.train_texts == 20
    assert (report.train_images, report.skipped_images) == (19, 1)
    assert (report.validation_images, report.validation_source) == (2, "validate")
    assert report.cross_attention_latent_sizes == [16, 8]
    assert report.vae["after"]["mse"] < report.vae["before"]["mse"]
    assert stored["vae"]["after"]["psnr"] == pytest.approx(report.vae_psnr)
    assert report.text_pretraining["loss_after"] < report.text_pretraining["loss_before"]
    # every MS-CXR class word longer than max_token_length (6) splits; "edema" (5 letters) may stay whole
    assert report.unsplit_disease_words == ["edema"]
    assert all(len(pieces) >= 2 for word, pieces in report.disease_word_pieces.items() if word != "edema")
    skipped = (root / "model" / "skipped.csv").read_text()
    assert "d0000.dcm" in skipped
    assert load_pipeline(root / "model").vae.config.scaling_factor == pytest.approx(report.vae["scaling_factor"])


def test_rerun_keeps_the_bundle_and_other_settings_are_refused(built):
    root, index, _ = built
    again = build_bundle(index, root / "model", quick_settings(), seed=3, progress=False)
    assert again.reused
    with pytest.raises(ConfigError, match="other settings or seed"):
        build_bundle(index, root / "model", quick_settings(), seed=4, progress=False)
    (root / "other").mkdir()
    (root / "other" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a cxr-fgbg bundle"):
        build_bundle(index, root / "other", quick_settings(), seed=3, progress=False)


def test_index_without_studies_csv(tmp_path):
    with pytest.raises(InputDataError, match=r"no studies\.csv"):
        build_bundle(tmp_path, tmp_path / "m", quick_settings(), progress=False)


@pytest.mark.slow
def test_cli_build_is_deterministic_and_info_describes_it(built, tmp_path):
    root, index, _ = built
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"seed": 3, "model": quick_settings().model_dump(mode="json")}))
    runner = CliRunner()
    result = runner.invoke(app, ["model", "build", "--index", str(index), "--out", str(tmp_path / "m"),
                                 "--config", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output
    for sub, name in (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"),
                      ("text_encoder", "model")):
        file = f"{sub}/{name}.safetensors"
        assert (tmp_path / "m" / file).read_bytes() == (root / "model" / file).read_bytes(), file
    assert (tmp_path / "m" / "tokenizer" / "tokenizer.json").read_text() == (
        root / "model" / "tokenizer" / "tokenizer.json").read_text()
    info = runner.invoke(app, ["model", "info", str(tmp_path / "m"), "--json"])
    assert info.exit_code == 0, info.output
    described = json.loads(info.output)
    assert (described["image_channels"], described["image_size"], described["is_cxr_fgbg_bundle"]) == (1, 32, True)
    assert described["bundle"]["seed"] == 3
    assert described["train_text_encoder_jointly"] is False


def test_cli_info_on_a_missing_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["model", "info", str(tmp_path / "nope")])
    assert isinstance(result.exception, InputDataError)
    assert "model folder not found" in str(result.exception)


def test_read_index_accepts_a_dataframe_and_names_missing_columns(tmp_path):
    import pandas as pd

    from cxr_fgbg.models.bundle import read_index

    frame = pd.DataFrame({"dicom_id": ["a"], "image_path": ["x.dcm"], "split": ["train"], "text": [None]})
    read, root = read_index(frame, image_root=tmp_path)
    assert root == tmp_path and read["text"].tolist() == [""]
    with pytest.raises(InputDataError, match="missing column"):
        read_index(frame.drop(columns=["text"]))
