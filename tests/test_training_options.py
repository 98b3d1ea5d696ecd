"""Fine-tuning options: latent cache, frozen vs trained text encoder, bf16, config files."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from cxr_fgbg.training.latent_cache import CachedLatentDataset, LatentCache
from cxr_fgbg.training.loop import finetune
from cxr_fgbg.training.settings import FinetuneSettings


class Pairs(torch.utils.data.Dataset):
    def __init__(self, tokenizer, n=3):
        self.tokenizer, self.texts = tokenizer, ["Small left pleural effusion.", "No pneumothorax.", "Edema."][:n]

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, index):
        pixels = torch.rand(1, 64, 64, generator=torch.Generator().manual_seed(index)) * 2 - 1
        ids = self.tokenizer(self.texts[index], padding="max_length", truncation=True, max_length=32,
                             return_tensors="pt").input_ids[0]
        return {"pixel_values": pixels, "input_ids": ids}


def text_weights(folder):
    return load_file(folder / "text_encoder" / "model.safetensors")


def test_latent_cache_stores_the_vae_posterior(tiny_model_dir, tiny_pipeline, tiny_tokenizer, tmp_path):
    data = Pairs(tiny_tokenizer)
    settings = FinetuneSettings(steps=1, per_device_batch_size=3, latent_cache=True)
    finetune(settings, tiny_model_dir, tmp_path / "run", data)
    cache = LatentCache(tmp_path / "run" / "latent_cache")
    assert sorted(p.name for p in cache.folder.glob("*.pt")) == ["00000000.pt", "00000001.pt", "00000002.pt"]
    with torch.no_grad():
        dist = tiny_pipeline.vae.encode(data[1]["pixel_values"][None]).latent_dist
    stored = cache.load(1)
    assert torch.allclose(stored["mean"], dist.mean[0], atol=1e-5)
    assert torch.allclose(stored["std"], dist.std[0], atol=1e-5)
    item = CachedLatentDataset(data, cache)[4]  # key 4 = row 1 of the second epoch
    assert "pixel_values" not in item and torch.equal(item["latent_mean"], stored["mean"])


def test_text_encoder_frozen_by_default_and_trained_on_request(tiny_model_dir, tiny_tokenizer, tmp_path):
    data = Pairs(tiny_tokenizer)
    before = text_weights(tiny_model_dir)
    common = dict(steps=2, per_device_batch_size=3, learning_rate=1e-2, cfg_dropout=0.0)
    frozen = finetune(FinetuneSettings(**common), tiny_model_dir, tmp_path / "frozen", data)
    trained = finetune(FinetuneSettings(**common, train_text_encoder=True, mixed_precision="bf16"), tiny_model_dir,
                       tmp_path / "trained", data)
    after_frozen, after_trained = text_weights(frozen.model_dir), text_weights(trained.model_dir)
    assert all(torch.equal(before[k], after_frozen[k]) for k in before)
    assert any(not torch.equal(before[k], after_trained[k]) for k in before)
    vae_before = load_file(tiny_model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    vae_after = load_file(trained.model_dir / "vae" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(vae_before[k], vae_after[k]) for k in vae_before)  # the VAE stays frozen
    losses = pd.read_csv(trained.loss_csv)["loss"]
    assert losses.notna().all() and (losses < 10).all()


def test_an_existing_run_needs_resume(tiny_model_dir, tiny_tokenizer, tmp_path):
    from cxr_fgbg.errors import ConfigError

    finetune(FinetuneSettings(steps=1, per_device_batch_size=1), tiny_model_dir, tmp_path / "run",
             Pairs(tiny_tokenizer, 1))
    with pytest.raises(ConfigError, match="--resume"):
        finetune(FinetuneSettings(steps=1, per_device_batch_size=1), tiny_model_dir, tmp_path / "run",
                 Pairs(tiny_tokenizer, 1))


def test_config_files_validate():
    from accelerate.commands.config.config_args import ClusterConfig

    from cxr_fgbg.config import load_config

    phantom = load_config("configs/finetune_phantom.yaml").finetune
    assert phantom.fgbg.rectangle.min_side == 2 and phantom.fgbg.rectangle.max_area == 64
    mimic = load_config("configs/mimic_finetune.yaml").finetune
    # the paper's effective batch of 256 on one node of 8 GPUs
    assert mimic.per_device_batch_size * mimic.gradient_accumulation_steps * 8 == 256
    assert mimic.learning_rate == 5e-5 and not mimic.train_text_encoder
    assert ClusterConfig.from_yaml_file("configs/accelerate_single_node_8gpu.yaml").num_processes == 8
    assert ClusterConfig.from_yaml_file("configs/accelerate_multi_node.yaml").num_machines == 2


def test_settings_defaults_and_checks():
    defaults = FinetuneSettings()
    assert (defaults.learning_rate, defaults.cfg_dropout, defaults.min_snr_gamma) == (5e-5, 0.1, None)
    assert not defaults.train_text_encoder and defaults.objective == "impression"
    assert defaults.fgbg.p_foreground == 0.5 and defaults.fgbg.background_prompt == "a photo of a background"
    with pytest.raises(ValueError, match="lr_warmup_steps"):
        FinetuneSettings(steps=10, lr_warmup_steps=20)


def test_bundle_flag_turns_on_joint_text_encoder_training(tiny_model_dir, tmp_path):
    import json
    import shutil

    from cxr_fgbg.training.loop import _with_bundle_text_encoder_flag

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    frozen = FinetuneSettings()
    assert _with_bundle_text_encoder_flag(frozen, folder).train_text_encoder is False  # not our bundle
    (folder / "cxr_fgbg_bundle.json").write_text(json.dumps({"text_encoder": {"train_jointly": True}}))
    assert _with_bundle_text_encoder_flag(frozen, folder).train_text_encoder is True
    (folder / "cxr_fgbg_bundle.json").write_text(json.dumps({"text_encoder": {"train_jointly": False}}))
    assert _with_bundle_text_encoder_flag(frozen, folder).train_text_encoder is False


def test_fine_tuned_model_keeps_the_bundle_record(tiny_model_dir, tiny_tokenizer, tmp_path):
    import json
    import shutil

    from cxr_fgbg.models.loading import BUNDLE_FILE, inspect_model_folder

    folder = tmp_path / "bundle"
    shutil.copytree(tiny_model_dir, folder)
    record = {"text_encoder": {"train_jointly": True}, "vae": {"reconstruction_mae": 0.01}}
    (folder / BUNDLE_FILE).write_text(json.dumps(record))
    result = finetune(FinetuneSettings(steps=1, per_device_batch_size=1), folder, tmp_path / "run",
                      Pairs(tiny_tokenizer, 1))
    assert json.loads((result.model_dir / BUNDLE_FILE).read_text()) == record
    assert inspect_model_folder(result.model_dir).train_text_encoder_jointly is True
    plain = finetune(FinetuneSettings(steps=1, per_device_batch_size=1), tiny_model_dir, tmp_path / "plain",
                     Pairs(tiny_tokenizer, 1))
    assert not (plain.model_dir / BUNDLE_FILE).exists()  # a folder that is not ours stays without one
