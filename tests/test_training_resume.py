"""Fine-tuning loop: resume gives the same weights as an uninterrupted run; outputs and logs are right."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from cxr_fgbg.training.checkpoints import latest_checkpoint, list_checkpoints
from cxr_fgbg.training.loop import count_truncated, finetune
from cxr_fgbg.training.settings import FinetuneSettings

LONG = "right " * 40 + "pleural effusion"


class TinyPairs(torch.utils.data.Dataset):
    """Five random 1x64x64 images with report sentences (one longer than the 32-token limit)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.texts = ["Small left pleural effusion.", "No pneumothorax.", LONG, "Mild pulmonary edema.", ""]

    def __len__(self):
        return len(self.texts)

    def __getitem__(self, index):
        generator = torch.Generator().manual_seed(index)
        ids = self.tokenizer(self.texts[index], padding="max_length", truncation=True, max_length=32,
                             return_tensors="pt").input_ids[0]
        return {"pixel_values": torch.rand(1, 64, 64, generator=generator) * 2 - 1, "input_ids": ids}


def settings(**extra):
    base = dict(steps=4, per_device_batch_size=1, gradient_accumulation_steps=2, checkpoint_every=2,
                keep_checkpoints=1, log_every=1, lr_scheduler="linear", lr_warmup_steps=1, learning_rate=1e-3,
                use_ema=True, cfg_dropout=0.5, min_snr_gamma=5.0)
    return FinetuneSettings(**{**base, **extra})


def unet_weights(folder):
    return load_file(folder / "unet" / "diffusion_pytorch_model.safetensors")


def read_losses(path):
    with path.open() as handle:
        return [(row["step"], row["loss"], row["lr"]) for row in csv.DictReader(handle)]


def test_resume_reproduces_the_uninterrupted_run(tiny_model_dir, tiny_tokenizer, tmp_path):
    data = TinyPairs(tiny_tokenizer)
    straight = finetune(settings(), tiny_model_dir, tmp_path / "straight", data, seed=3)

    first = finetune(settings(), tiny_model_dir, tmp_path / "split", data, seed=3, stop_at_step=2)
    assert first.model_dir is None and not (tmp_path / "split" / "model").exists()
    assert latest_checkpoint(tmp_path / "split" / "checkpoints").name == "checkpoint-2"
    second = finetune(settings(), tiny_model_dir, tmp_path / "split", data, seed=3, resume=True)

    a, b = unet_weights(straight.model_dir), unet_weights(second.model_dir)
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert read_losses(straight.loss_csv) == read_losses(second.loss_csv)
    assert [row[0] for row in read_losses(second.loss_csv)] == ["1", "2", "3", "4"]
    # linear schedule with one warm-up step: lr 1e-3 after step 1, then down to 0 at step 4
    assert [float(row[2]) for row in read_losses(straight.loss_csv)] == pytest.approx([1e-3, 2 / 3 * 1e-3,
                                                                                      1 / 3 * 1e-3, 0.0])
    run = json.loads(second.run_json.read_text())
    assert run["resumed_from_step"] == 2 and run["num_processes"] == 1
    assert run["effective_batch_size"] == 2
    assert run["prompts_truncated"] == 1 and run["prompts"] == 5
    assert run["samples_per_process_this_session"] == [4]  # 2 steps x 2 micro-batches x 1 image
    # keep_checkpoints=1: only the newest survives
    assert [step for step, _ in list_checkpoints(tmp_path / "straight" / "checkpoints")] == [4]


def test_final_folder_holds_the_ema_weights_and_loads(tiny_model_dir, tiny_tokenizer, tmp_path):
    from diffusers import StableDiffusionPipeline

    result = finetune(settings(steps=2, gradient_accumulation_steps=1), tiny_model_dir, tmp_path / "run",
                      TinyPairs(tiny_tokenizer), seed=0)
    checkpoint = latest_checkpoint(tmp_path / "run" / "checkpoints")
    raw = load_file(checkpoint / "model.safetensors")
    ema = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=True)
    final = unet_weights(result.model_dir)
    names = list(final)
    pipeline = StableDiffusionPipeline.from_pretrained(result.model_dir, local_files_only=True)
    order = [name for name, _ in pipeline.unet.named_parameters()]
    shadow = dict(zip(order, ema["shadow_params"], strict=True))
    assert all(torch.equal(final[n], shadow[n]) for n in order)
    assert any(not torch.equal(final[n], raw[n]) for n in names)  # EMA differs from the raw weights
    assert (tmp_path / "run" / "config.yaml").is_file()


def test_count_truncated(tiny_tokenizer):
    assert count_truncated(tiny_tokenizer, ["No pneumothorax.", LONG, LONG]) == 2
    assert count_truncated(tiny_tokenizer, []) == 0
