"""M-hat, eq. 2 (and eq. 1) of the supplement: cross-attention summed over timesteps and layers.

At every timestep t of the set T the CLEAN latent z_0 (the VAE posterior mean times the scaling
factor) is noised afresh, z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps, and one conditional U-Net
pass is made; its output is discarded, only the attention is kept. Eq. 1 averages N noise draws per
timestep. Each draw has its own seed derived from (seed, sample key, t, draw), so a map does not depend
on the batch it was computed in, and a run with T0 = 20 reuses exactly the noise of the first 20
timesteps of a run with T0 = 40.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from cxr_fgbg.attention.capture import AttentionStore, capture_cross_attention
from cxr_fgbg.attention.settings import LocalizeSettings
from cxr_fgbg.errors import ConfigError
from cxr_fgbg.seeding import torch_generator

__all__ = ["attention_token_maps", "encode_latents", "encode_prompts", "noisy_latent", "select_timesteps"]


def select_timesteps(settings: LocalizeSettings, scheduler_config: Any | None = None) -> list[int]:
    """The timesteps T, highest first: by default the last t0 of a DDIM grid (paper: {781, ..., 21, 1})."""
    if settings.timesteps is not None:
        if not settings.timesteps:
            raise ConfigError("localize.timesteps is empty")
        return sorted({int(t) for t in settings.timesteps}, reverse=True)
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(scheduler_config) if scheduler_config is not None else DDIMScheduler(
        beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1,
        clip_sample=False, set_alpha_to_one=False,
    )
    scheduler.set_timesteps(settings.num_inference_steps)
    grid = [int(t) for t in scheduler.timesteps]
    if settings.t0 > len(grid):
        raise ConfigError(f"localize.t0={settings.t0} exceeds the {len(grid)}-step grid (num_inference_steps)")
    chosen = grid[-settings.t0:]
    if settings.preset == "fast" and settings.fast_timesteps < len(chosen):
        picks = np.unique(np.round(np.linspace(0, len(chosen) - 1, settings.fast_timesteps)).astype(int))
        chosen = [chosen[i] for i in picks]
    return chosen


@torch.no_grad()
def encode_latents(vae: Any, pixels: torch.Tensor) -> torch.Tensor:
    """Clean latents z_0 of images in [0, 1] (B, C, H, W): posterior mean, shifted and scaled like SD."""
    param = next(vae.parameters())
    x = pixels.to(device=param.device, dtype=param.dtype) * 2.0 - 1.0
    mean = vae.encode(x).latent_dist.mean
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (mean - shift) * vae.config.scaling_factor


@torch.no_grad()
def encode_prompts(tokenizer: Any, text_encoder: Any, prompts: Sequence[str]) -> torch.Tensor:
    """Text embeddings exactly as StableDiffusionPipeline makes them (padded to the model's limit)."""
    ids = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids
    param = next(text_encoder.parameters())
    return text_encoder(ids.to(param.device))[0]


def noisy_latent(latent: torch.Tensor, alphas_cumprod: torch.Tensor, t: int, seed: int, key: object,
                 draw: int) -> torch.Tensor:
    """z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps on the CPU, eps seeded by (seed, sample key, t, draw): a
    sample's noise never depends on its batch, and every read-out of the same key sees the same noise."""
    noise = torch.randn(latent.shape, generator=torch_generator(seed, key, t, draw), dtype=torch.float32)
    abar = alphas_cumprod[t]
    return abar.sqrt() * latent.float().cpu() + (1 - abar).sqrt() * noise


@torch.no_grad()
def attention_token_maps(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    embeddings: torch.Tensor,
    timesteps: Sequence[int],
    keys: Sequence[object],
    seed: int,
    settings: LocalizeSettings,
    per_timestep: bool = False,
    noise_draws: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Token maps on the latent grid: (B, tokens, h, w), or (B, |T|, tokens, h, w) with `per_timestep`.

    Summed over the timesteps (unless `per_timestep`) and the selected layers, averaged over the
    `noise_draws` draws of each timestep. `keys` name the samples for their noise seeds. U-Net passes
    take `settings.batch_size` rows (samples x timesteps x draws) at a time.
    """
    draws = int(noise_draws or settings.noise_draws)
    count, n_t = latents.shape[0], len(timesteps)
    if len(keys) != count or embeddings.shape[0] != count:
        raise ValueError(f"{count} latents, {embeddings.shape[0]} embeddings and {len(keys)} keys")
    # Timestep-major order: one forward pass holds several samples at the same noise level.
    jobs = [
        (i * n_t + j if per_timestep else i, i, j, n)
        for j in range(n_t) for n in range(draws) for i in range(count)
    ]
    param = next(unet.parameters())
    alphas = scheduler.alphas_cumprod.to(torch.float32)
    store = AttentionStore(downsampling=settings.layers.downsampling)
    with capture_cross_attention(unet, store, blocks=settings.layers.blocks):
        for start in range(0, len(jobs), settings.batch_size):
            chunk = jobs[start:start + settings.batch_size]
            noisy, steps = [], []
            for _, i, j, n in chunk:
                t = int(timesteps[j])
                noisy.append(noisy_latent(latents[i], alphas, t, seed, keys[i], n))
                steps.append(t)
            store.slots = torch.tensor([slot for slot, *_ in chunk])
            sample = torch.stack(noisy).to(device=param.device, dtype=param.dtype)
            t_batch = torch.tensor(steps, device=param.device)
            context = embeddings[[i for _, i, _, _ in chunk]].to(device=param.device, dtype=param.dtype)
            unet(sample, t_batch, encoder_hidden_states=context)
            if progress is not None:
                progress(len(chunk))
        maps = store.maps(mode=settings.layer_upsample, size=tuple(latents.shape[-2:])) / draws
    slots = count * n_t if per_timestep else count
    if maps.shape[0] < slots:  # a slot no layer wrote to cannot happen; guard against silent zeros
        raise RuntimeError(f"attention captured for {maps.shape[0]} of {slots} slots")
    if per_timestep:
        return maps.reshape(count, n_t, *maps.shape[1:])
    return maps
