"""Loading local Stable-Diffusion-layout folders: round trip, and each broken component named in the error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.models.loading import inspect_model_folder, load_pipeline


@pytest.fixture()
def model_copy(tiny_model_dir, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(tiny_model_dir, target)
    return target


def _edit_config(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def test_round_trip_keeps_tokenizer_ids_and_weights(tiny_model_dir, tiny_pipeline, tiny_tokenizer):
    pipe = load_pipeline(tiny_model_dir)
    prompt = "Small right apical pneumothorax."
    assert pipe.tokenizer(prompt).input_ids == tiny_tokenizer(prompt).input_ids
    assert pipe.safety_checker is None
    for name in ("unet", "vae", "text_encoder"):
        loaded, original = getattr(pipe, name).state_dict(), getattr(tiny_pipeline, name).state_dict()
        assert loaded.keys() == original.keys()
        assert all(torch.equal(loaded[k], original[k]) for k in original), name


def test_inspect_reports_the_sizes(tiny_model_dir, tiny_tokenizer):
    info = inspect_model_folder(tiny_model_dir)
    assert (info.image_channels, info.latent_channels, info.vae_scale_factor) == (1, 4, 4)
    assert (info.latent_size, info.image_size) == (16, 64)
    assert info.cross_attention_dim == info.text_hidden_size == 128
    assert info.tokenizer_size == len(tiny_tokenizer)
    assert info.tokenizer_max_length == 32
    assert not info.inpainting


def test_torch_dtype_is_applied(tiny_model_dir):
    pipe = load_pipeline(tiny_model_dir, torch_dtype=torch.float64)
    assert pipe.unet.dtype == torch.float64


def test_nonexistent_folder_and_hub_id_are_refused(tmp_path):
    with pytest.raises(InputDataError, match="model folder not found"):
        load_pipeline(tmp_path / "nope")
    with pytest.raises(InputDataError, match="never downloads"):
        load_pipeline("runwayml/stable-diffusion-v1-5")


def test_a_file_is_not_a_folder(tmp_path):
    file = tmp_path / "model.ckpt"
    file.write_bytes(b"x")
    with pytest.raises(InputDataError, match="expected a model FOLDER"):
        load_pipeline(file)


def test_missing_model_index(model_copy):
    (model_copy / "model_index.json").unlink()
    with pytest.raises(InputDataError, match=r"model_index\.json") as err:
        load_pipeline(model_copy)
    assert str(model_copy.resolve()) in str(err.value)


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder", "tokenizer", "scheduler"])
def test_missing_component_folder(model_copy, component):
    shutil.rmtree(model_copy / component)
    with pytest.raises(InputDataError, match=f"component '{component}' is missing") as err:
        load_pipeline(model_copy)
    assert str(model_copy.resolve()) in str(err.value)


@pytest.mark.parametrize(
    ("component", "weights"),
    [("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
     ("text_encoder", "model.safetensors")],
)
def test_missing_weights_file(model_copy, component, weights):
    (model_copy / component / weights).unlink()
    with pytest.raises(InputDataError, match=f"component '{component}' has no weights file"):
        load_pipeline(model_copy)


def test_missing_config_file(model_copy):
    (model_copy / "unet" / "config.json").unlink()
    with pytest.raises(InputDataError, match=r"component 'unet' has no config\.json"):
        load_pipeline(model_copy)


def test_missing_tokenizer_files(model_copy):
    (model_copy / "tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(InputDataError, match=r"component 'tokenizer' has neither tokenizer\.json"):
        load_pipeline(model_copy)


def test_cross_attention_dim_mismatch(model_copy):
    _edit_config(model_copy / "unet" / "config.json", cross_attention_dim=32)
    expected = "unet cross_attention_dim 32 does not match the text_encoder hidden_size 128"
    with pytest.raises(InputDataError, match=expected):
        load_pipeline(model_copy)


def test_in_channels_mismatch(model_copy):
    _edit_config(model_copy / "unet" / "config.json", in_channels=3)
    with pytest.raises(InputDataError, match="unet in_channels 3 does not match the vae latent_channels 4"):
        load_pipeline(model_copy)


def test_inpainting_unet_is_allowed_and_flagged(model_copy):
    _edit_config(model_copy / "unet" / "config.json", in_channels=9)
    assert inspect_model_folder(model_copy).inpainting


def test_tokenizer_larger_than_text_vocabulary(model_copy, tiny_tokenizer):
    _edit_config(model_copy / "text_encoder" / "config.json", vocab_size=len(tiny_tokenizer) - 10)
    with pytest.raises(InputDataError, match=f"tokenizer has {len(tiny_tokenizer)} tokens"):
        load_pipeline(model_copy)


def test_corrupt_weights_file_names_the_folder(model_copy):
    (model_copy / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputDataError, match="could not load the pipeline") as err:
        load_pipeline(model_copy)
    assert str(model_copy.resolve()) in str(err.value)


def test_fp16_variant_only_folder_loads(model_copy, tiny_pipeline):
    parts = (("unet", "diffusion_pytorch_model"), ("vae", "diffusion_pytorch_model"), ("text_encoder", "model"))
    for sub, stem in parts:
        (model_copy / sub / f"{stem}.safetensors").rename(model_copy / sub / f"{stem}.fp16.safetensors")
    assert inspect_model_folder(model_copy).weights_variant == "fp16"
    pipe = load_pipeline(model_copy)
    key = next(iter(tiny_pipeline.unet.state_dict()))
    assert torch.equal(pipe.unet.state_dict()[key], tiny_pipeline.unet.state_dict()[key])
