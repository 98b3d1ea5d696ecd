"""The accelerate fine-tuning loop (RoentGen-style, or the fg/bg objective when items carry a loss mask).

Runs unchanged on one CPU, one GPU or `accelerate launch` over several processes and nodes. Only the
U-Net (and optionally the text encoder) trains; the VAE is frozen. Everything random in a step (data
order, CFG dropout, timesteps, noise) is a function of (seed, step, process), so `resume=True`
reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cxr_fgbg.errors import ConfigError, InputDataError
from cxr_fgbg.io import atomic_path, write_json_atomic, write_text_atomic
from cxr_fgbg.models.loading import BUNDLE_FILE
from cxr_fgbg.seeding import torch_generator
from cxr_fgbg.training.checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from cxr_fgbg.training.data_order import KeyedDataset, StreamBatchSampler
from cxr_fgbg.training.objectives import diffusion_loss, prediction_target
from cxr_fgbg.training.settings import FinetuneSettings

__all__ = ["FinetuneResult", "FinetuneTrainer", "count_truncated", "finetune", "load_model_folder"]

LOG = logging.getLogger(__name__)
LOSS_COLUMNS = ("step", "loss", "lr", "seconds")


@dataclass
class FinetuneResult:
    model_dir: Path | None
    steps: int
    loss_csv: Path
    run_json: Path | None


def load_model_folder(folder: str | os.PathLike[str]) -> Any:
    """A local Stable-Diffusion-layout folder as a pipeline; never reaches for a hub."""
    try:
        from cxr_fgbg.models.loading import load_pipeline
    except ImportError:
        load_pipeline = None
    if load_pipeline is not None:
        return load_pipeline(folder)
    from diffusers import StableDiffusionPipeline

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise InputDataError(f"{folder}: not a diffusers model folder (no model_index.json)")
    return StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)


def _with_bundle_text_encoder_flag(settings: FinetuneSettings, model_dir: str | os.PathLike[str]) -> FinetuneSettings:
    """Honour a tiny bundle built with `model.text_pretraining.train_jointly`: its encoder keeps training."""
    from cxr_fgbg.models.loading import inspect_model_folder

    if not settings.train_text_encoder and inspect_model_folder(model_dir).train_text_encoder_jointly:
        LOG.info("the model folder's bundle asks for joint text-encoder training: finetune.train_text_encoder on")
        return settings.model_copy(update={"train_text_encoder": True})
    return settings


def count_truncated(tokenizer: Any, texts: list[str]) -> int:
    """How many prompts are longer than the tokenizer's limit (they are cut; the log says how many)."""
    if not texts:
        return 0
    # verbose=False: the long prompts are the point of the count, not a warning for the user
    lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False, verbose=False).input_ids]
    return sum(length > tokenizer.model_max_length for length in lengths)


class FinetuneTrainer:
    """The model, optimiser and one optimiser step; `finetune` drives it, the benchmark times it."""

    def __init__(self, settings: FinetuneSettings, pipeline: Any, accelerator: Any, seed: int) -> None:
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from diffusers.optimization import get_scheduler
        from diffusers.training_utils import EMAModel

        self.settings, self.accelerator, self.seed = settings, accelerator, seed
        dtypes = {"fp16": torch.float16, "bf16": torch.bfloat16}
        self.weight_dtype = dtypes.get(accelerator.mixed_precision, torch.float32)
        self.tokenizer = pipeline.tokenizer
        self.noise_scheduler = DDPMScheduler.from_config(pipeline.scheduler.config)
        vae, text_encoder, unet = pipeline.vae, pipeline.text_encoder, pipeline.unet
        vae.requires_grad_(False)
        vae.to(accelerator.device, self.weight_dtype)
        text_encoder.requires_grad_(settings.train_text_encoder)
        text_encoder.to(accelerator.device, torch.float32 if settings.train_text_encoder else self.weight_dtype)
        unet.train()
        text_encoder.train(settings.train_text_encoder)
        params = list(unet.parameters()) + (list(text_encoder.parameters()) if settings.train_text_encoder else [])
        optimizer = torch.optim.AdamW(
            params, lr=settings.learning_rate, betas=(settings.adam_beta1, settings.adam_beta2),
            weight_decay=settings.adam_weight_decay, eps=settings.adam_epsilon,
        )
        self.lr_scheduler = get_scheduler(
            settings.lr_scheduler, optimizer, num_warmup_steps=settings.lr_warmup_steps,
            num_training_steps=settings.steps,
        )
        self.ema = None
        if settings.use_ema:
            self.ema = EMAModel(
                unet.parameters(), decay=settings.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config
            )
            self.ema.to(accelerator.device)
        if settings.train_text_encoder:
            self.unet, self.text_encoder, self.optimizer = accelerator.prepare(unet, text_encoder, optimizer)
        else:
            self.unet, self.optimizer = accelerator.prepare(unet, optimizer)
            self.text_encoder = text_encoder
        self.vae = vae
        # Our schedule steps once per optimiser step whatever the process count, so it is registered
        # for checkpointing rather than prepared (accelerate would step it once per process).
        accelerator.register_for_checkpointing(self.lr_scheduler)
        if self.ema is not None:
            accelerator.register_for_checkpointing(self.ema)
        self.params = params
        self.empty_ids = self.tokenizer(
            "", padding="max_length", truncation=True, max_length=self.tokenizer.model_max_length, return_tensors="pt"
        ).input_ids[0]
        self.scaling = getattr(vae.config, "scaling_factor", 1.0) or 1.0
        self.shift = getattr(vae.config, "shift_factor", None) or 0.0

    def micro_loss(self, batch: dict[str, Any], generator: torch.Generator) -> torch.Tensor:
        """Loss of one micro-batch: CFG dropout, latents, noise, U-Net, (masked) MSE."""
        device, settings = self.accelerator.device, self.settings
        ids = batch["input_ids"].clone()
        size = ids.shape[0]
        drop = torch.rand(size, generator=generator) < settings.cfg_dropout
        ids[drop] = self.empty_ids.to(ids.dtype)
        if "latent_mean" in batch:
            mean, std = batch["latent_mean"], batch["latent_std"]
            latents = (mean + std * torch.randn(mean.shape, generator=generator)).to(device)
        else:
            with torch.no_grad():
                dist = self.vae.encode(batch["pixel_values"].to(device, self.weight_dtype)).latent_dist
                latents = dist.sample(generator=generator)
        latents = ((latents.float() - self.shift) * self.scaling).float()
        noise = torch.randn(latents.shape, generator=generator).to(device)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (size,), generator=generator
        ).to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        grad = contextlib.nullcontext() if settings.train_text_encoder else torch.no_grad()
        with grad:
            hidden = self.text_encoder(ids.to(device))[0]
        pred = self.unet(noisy, timesteps, hidden).sample
        target = prediction_target(self.noise_scheduler, latents, noise, timesteps)
        mask = batch.get("loss_mask")
        return diffusion_loss(
            pred, target, timesteps, self.noise_scheduler,
            mask=None if mask is None else mask.to(device), min_snr_gamma=settings.min_snr_gamma,
        )

    def train_step(self, micro_batches: list[dict[str, Any]], step: int) -> float:
        """One optimiser step over `gradient_accumulation_steps` micro-batches; returns the mean loss."""
        accelerator, losses = self.accelerator, []
        count = len(micro_batches)
        for j, batch in enumerate(micro_batches):
            generator = torch_generator(self.seed, "step", step, j, accelerator.process_index)
            with contextlib.ExitStack() as sync:
                if j < count - 1:  # gradients are all-reduced on the last micro-batch only
                    sync.enter_context(accelerator.no_sync(self.unet))
                    if self.settings.train_text_encoder:
                        sync.enter_context(accelerator.no_sync(self.text_encoder))
                loss = self.micro_loss(batch, generator)
                accelerator.backward(loss / count)
            losses.append(loss.detach())
        if self.settings.max_grad_norm is not None:
            accelerator.clip_grad_norm_(self.params, self.settings.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.step(self.accelerator.unwrap_model(self.unet).parameters())
        return torch.stack(losses).mean().item()  # one device sync per step


def finetune(
    settings: FinetuneSettings,
    model_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    dataset: Any,
    *,
    seed: int = 0,
    resume: bool = False,
    config_text: str | None = None,
    texts: list[str] | None = None,
    latent_fingerprint: Any = None,
    stop_at_step: int | None = None,
) -> FinetuneResult:
    """Fine-tune the model folder `model_dir` on `dataset`; write checkpoints, loss.csv and `out_dir/model`.

    `dataset` items hold `input_ids`, `pixel_values` and, for the fg/bg objective, `loss_mask`.
    `texts` (default: `dataset.texts`) are the conditioning texts, checked for truncation.
    `stop_at_step` ends this session early with a checkpoint (for time-limited cluster jobs; continue
    with `resume=True`); the model folder is written only when `settings.steps` are done.
    """
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    out = Path(out_dir)
    seed = settings.seed if settings.seed is not None else seed
    settings = _with_bundle_text_encoder_flag(settings, model_dir)
    _allow_new_precision(settings.mixed_precision)
    accelerator = Accelerator(mixed_precision=settings.mixed_precision)
    world, rank = accelerator.num_processes, accelerator.process_index
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resume and (latest_checkpoint(out / "checkpoints") is not None or (out / "model").exists()):
            raise ConfigError(f"{out} already holds a fine-tuning run: pass --resume to continue it, or another --out")
        write_text_atomic(out / "config.yaml", config_text or _settings_yaml(settings, seed))
    accelerator.wait_for_everyone()

    pipeline = load_model_folder(model_dir)
    trainer = FinetuneTrainer(settings, pipeline, accelerator, seed)
    texts = list(texts if texts is not None else getattr(dataset, "texts", []))
    truncated = count_truncated(pipeline.tokenizer, texts)
    effective = settings.per_device_batch_size * settings.gradient_accumulation_steps * world
    if accelerator.is_main_process:
        LOG.info(
            "fine-tuning %s: %d samples, effective batch %d = %d per device x %d accumulation x %d processes, "
            "%d steps; %d of %d prompts longer than %d tokens were truncated",
            model_dir, len(dataset), effective, settings.per_device_batch_size, settings.gradient_accumulation_steps,
            world, settings.steps, truncated, len(texts), pipeline.tokenizer.model_max_length,
        )

    if not getattr(dataset, "accepts_keys", False):
        dataset = KeyedDataset(dataset)
    if settings.latent_cache:
        from cxr_fgbg.training.latent_cache import CachedLatentDataset, LatentCache

        cache = LatentCache(settings.latent_cache_dir or out / "latent_cache")
        fingerprint = {
            "vae": dict(pipeline.vae.config), "model": str(Path(model_dir).resolve()),
            "n": len(dataset),
            "data": latent_fingerprint if latent_fingerprint is not None else getattr(dataset, "fingerprint", None),
        }
        cache.build(dataset, trainer.vae, accelerator, fingerprint, settings.per_device_batch_size)
        dataset = CachedLatentDataset(dataset, cache)

    start, elapsed_before = 0, 0.0
    if resume:
        folder = latest_checkpoint(out / "checkpoints")
        if folder is not None:
            state = load_checkpoint(accelerator, folder)
            start, elapsed_before = int(state["step"]), float(state.get("seconds", 0.0))
            LOG.info("resuming from %s (step %d)", folder, start)
            changed = {k: (state.get(k), v) for k, v in _order_keys(settings, world, seed).items() if state.get(k) != v}
            if changed and accelerator.is_main_process:
                LOG.warning("resuming with changed %s (checkpoint, now): the data order differs from the "
                            "uninterrupted run's", changed)
    accumulation = settings.gradient_accumulation_steps
    sampler = StreamBatchSampler(
        len(dataset), settings.per_device_batch_size, world, rank, seed,
        start * accumulation, settings.steps * accumulation,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=settings.num_workers,
        persistent_workers=False, pin_memory=torch.cuda.is_available(),
    )
    loss_csv = out / "loss.csv"
    if accelerator.is_main_process:
        _prepare_loss_log(loss_csv, start)
    samples = torch.zeros(1, dtype=torch.long)
    bar = tqdm(total=settings.steps, initial=start, desc="fine-tuning", disable=not accelerator.is_local_main_process)
    began, losses = time.monotonic(), []
    iterator = iter(loader)
    stop = min(settings.steps, stop_at_step) if stop_at_step is not None else settings.steps
    for step in range(start, stop):
        batches = [next(iterator) for _ in range(accumulation)]
        samples += sum(int(b["input_ids"].shape[0]) for b in batches)
        loss = trainer.train_step(batches, step)
        losses.append(loss)
        done = step + 1
        if done % settings.log_every == 0 or done == settings.steps:
            local = torch.tensor([sum(losses) / len(losses)], device=accelerator.device)
            mean = accelerator.gather(local).mean().item()
            losses = []
            lr = trainer.lr_scheduler.get_last_lr()[0]
            if accelerator.is_main_process:
                _append_loss(loss_csv, done, mean, lr, elapsed_before + time.monotonic() - began)
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}")
        bar.update(1)
        if done % settings.checkpoint_every == 0 or done == stop:
            save_checkpoint(
                accelerator, out / "checkpoints", done,
                {"seconds": elapsed_before + time.monotonic() - began, "effective_batch_size": effective,
                 **_order_keys(settings, world, seed)},
                settings.keep_checkpoints,
            )
    bar.close()
    if stop < settings.steps:
        LOG.info("stopped at step %d of %d; continue with --resume", stop, settings.steps)
        accelerator.end_training()
        return FinetuneResult(None, stop, loss_csv, None)
    per_process = accelerator.gather(samples.to(accelerator.device)).cpu().tolist()
    run_json = out / "run.json"
    if accelerator.is_main_process:
        _save_final(trainer, model_dir, out / "model")
        write_json_atomic(run_json, {
            "steps": settings.steps,
            "resumed_from_step": start,
            "num_processes": world,
            "effective_batch_size": effective,
            "samples_per_process_this_session": per_process,
            "prompts": len(texts),
            "prompts_truncated": truncated,
            "tokenizer_max_length": pipeline.tokenizer.model_max_length,
            "seconds": elapsed_before + time.monotonic() - began,
        })
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return FinetuneResult(out / "model", settings.steps, loss_csv, run_json)


def _order_keys(settings: FinetuneSettings, world: int, seed: int) -> dict[str, int]:
    """What the data order depends on; recorded in every checkpoint and compared on resume."""
    return {"per_device_batch_size": settings.per_device_batch_size, "num_processes": world,
            "gradient_accumulation_steps": settings.gradient_accumulation_steps, "seed": seed}


def _allow_new_precision(mixed_precision: str) -> None:
    """accelerate keeps one global state per process; a second in-process run (a notebook, the demo)
    with another precision would be refused, so the precision part of that state is reset."""
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def _save_final(trainer: FinetuneTrainer, model_dir: Any, target: Path) -> None:
    """A fresh full-precision copy of the model folder with the trained (or EMA) U-Net, renamed into place."""
    fresh = load_model_folder(model_dir)
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    fresh.unet.load_state_dict({k: v.float().cpu() for k, v in unet.state_dict().items()})
    if trainer.ema is not None:
        trainer.ema.copy_to(fresh.unet.parameters())
    if trainer.settings.train_text_encoder:
        encoder = trainer.accelerator.unwrap_model(trainer.text_encoder)
        fresh.text_encoder.load_state_dict({k: v.float().cpu() for k, v in encoder.state_dict().items()})
    fresh.to("cpu", torch.float32)
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    fresh.save_pretrained(tmp)
    bundle_record = Path(model_dir) / BUNDLE_FILE
    if bundle_record.is_file():  # keep how the bundle was built (tokenizer, VAE error, text encoder) with the model
        shutil.copy2(bundle_record, tmp / BUNDLE_FILE)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def _prepare_loss_log(path: Path, start: int) -> None:
    """Start loss.csv, or on resume keep only the rows up to the checkpoint's step.

    A last line cut short by a kill is dropped; the file is replaced atomically.
    """
    rows = []
    if start > 0 and path.is_file():
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row.get("step", "").isdigit() and row.get("seconds") and int(row["step"]) <= start:
                    rows.append(row)
    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=LOSS_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _append_loss(path: Path, step: int, loss: float, lr: float, seconds: float) -> None:
    if not math.isfinite(loss):
        LOG.warning("step %d: the loss is %s", step, loss)
    with path.open("a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow([step, f"{loss:.6g}", f"{lr:.6g}", f"{seconds:.2f}"])


def _settings_yaml(settings: FinetuneSettings, seed: int) -> str:
    import yaml

    return yaml.safe_dump({"seed": seed, "finetune": settings.model_dump(mode="json")}, sort_keys=False)
