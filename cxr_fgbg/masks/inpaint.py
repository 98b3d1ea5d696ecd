"""Background inpainting of the M_pre region (eq. 5 of the paper) with a diffusers pipeline.

A standard 4-channel U-Net is used RePaint-style: the start latent is z~_0 = z_0 (1 - M) + z M
(z seeded noise, M the latent-grid mask) and before every DDIM step the known region (1 - M) is
replaced by the clean latent noised to that step's t with the same z; after the last step it is
replaced by z_0 itself. A 9-channel inpainting U-Net (SD-inpainting layout: latents, mask, masked-image
latents) is given the mask and the masked image instead and needs no replacement (as in diffusers'
`StableDiffusionInpaintPipeline`). DDIM with eta 0 and no classifier-free guidance, as in the paper.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from cxr_fgbg.seeding import torch_generator

__all__ = [
    "Stopwatch",
    "decode_latents",
    "encode_images",
    "encode_prompts",
    "inpaint_background",
    "latent_grid_mask",
    "load_pipeline",
    "unet_kind",
]


@dataclass
class Stopwatch:
    """Seconds spent per named part (the benchmark's split: inpainting steps vs the rest)."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def time(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                torch.cuda.synchronize()  # GPU work is asynchronous: charge it to the part that queued it
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def _maybe(timer: Stopwatch | None, key: str) -> Iterator[None]:
    if timer is None:
        yield
    else:
        with timer.time(key):
            yield


def unet_kind(unet) -> str:
    """'plain' (in = latent channels) or 'inpainting' (in = 2 * latent + 1, SD-inpainting)."""
    cin, cout = int(unet.config.in_channels), int(unet.config.out_channels)
    if cin == cout:
        return "plain"
    if cin == 2 * cout + 1:
        return "inpainting"
    raise ValueError(f"U-Net with {cin} input and {cout} output channels is neither a plain nor an inpainting U-Net")


def _vae_scale(vae) -> float:
    return float(getattr(vae.config, "scaling_factor", 0.18215))


@torch.no_grad()
def encode_images(vae, images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images (B, C, H, W) -> scaled latents (the posterior mean: deterministic)."""
    dist = vae.encode(images.to(vae.device, vae.dtype) * 2.0 - 1.0).latent_dist
    return dist.mean * _vae_scale(vae)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> images in [0, 1] (clamped), float32 on the CPU."""
    images = vae.decode(latents.to(vae.dtype) / _vae_scale(vae)).sample
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0).cpu()


@torch.no_grad()
def encode_prompts(pipe, prompts: Sequence[str]) -> torch.Tensor:
    """Text embeddings of `prompts` with the pipeline's own prompt encoding (padding, truncation)."""
    embeds, _ = pipe.encode_prompt(list(prompts), pipe.device, 1, False)
    return embeds


def latent_grid_mask(mask: np.ndarray | torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Image-size mask(s) (B, H, W) -> latent grid (B, 1, h, w) float: a latent pixel is foreground
    when ANY image pixel it covers is (adaptive max pooling), so the region never shrinks below
    M_pre's footprint. A mask already on the latent grid is returned as is."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32) if not torch.is_tensor(mask) else mask).float()
    if m.ndim == 2:
        m = m[None]
    m = (m > 0.5).float()[:, None]
    if tuple(m.shape[-2:]) == tuple(latent_hw):
        return m
    return F.adaptive_max_pool2d(m, latent_hw)


def _noise(shape: tuple[int, ...], seeds: Sequence[int], device, dtype) -> torch.Tensor:
    """One seeded noise tensor per image, drawn on the CPU so a seed gives the same noise on any device."""
    return torch.stack(
        [torch.randn(shape, generator=torch_generator(int(s)), dtype=torch.float32) for s in seeds]
    ).to(device, dtype)


@torch.no_grad()
def inpaint_background(
    pipe,
    images: torch.Tensor,
    masks: np.ndarray | torch.Tensor,
    prompt: str,
    seeds: Sequence[int],
    num_inference_steps: int = 50,
    eta: float = 0.0,
    timer: Stopwatch | None = None,
    show_progress: bool = False,
) -> torch.Tensor:
    """Inpaint the `masks` region of `images` ([0, 1], (B, C, H, W)) with `prompt`; returns [0, 1] images.

    `masks` is (B, H, W) at image size (or already at latent size); `seeds` gives one seed per image.
    Timing goes to `timer` under 'encode', 'inpainting steps' and 'decode'.
    """
    from tqdm.auto import tqdm

    if len(seeds) != images.shape[0]:
        raise ValueError(f"need one seed per image: {len(seeds)} seeds for {images.shape[0]} images")
    unet, vae, scheduler = pipe.unet, pipe.vae, pipe.scheduler
    kind = unet_kind(unet)
    device, dtype = unet.device, unet.dtype
    with _maybe(timer, "encode"):
        z0 = encode_images(vae, images).to(device, dtype)
        latent_hw = tuple(z0.shape[-2:])
        m = latent_grid_mask(masks, latent_hw).to(device, dtype)
        noise = _noise(tuple(z0.shape[1:]), seeds, device, dtype)
        embeds = encode_prompts(pipe, [prompt] * z0.shape[0]).to(device, dtype)
        if kind == "inpainting":
            image_mask = torch.as_tensor(np.asarray(masks, dtype=np.float32)) if not torch.is_tensor(masks) else masks
            image_mask = image_mask.float().reshape(images.shape[0], 1, *image_mask.shape[-2:])
            if tuple(image_mask.shape[-2:]) != tuple(images.shape[-2:]):
                image_mask = F.interpolate(image_mask, size=images.shape[-2:], mode="nearest")
            masked = images * (image_mask < 0.5).to(images.dtype)
            masked_latents = encode_images(vae, masked).to(device, dtype)
    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    generators = [torch_generator(int(s), "eta") for s in seeds] if eta > 0 else None
    # z~_0 of eq. 5; an inpainting U-Net starts from pure noise, as in diffusers (it sees the image separately)
    latents = z0 * (1 - m) + noise * m if kind == "plain" else noise * scheduler.init_noise_sigma
    with _maybe(timer, "inpainting steps"):
        for t in tqdm(timesteps, desc="inpainting", leave=False, disable=not show_progress):
            if kind == "plain":
                known = scheduler.add_noise(z0, noise, t.reshape(1))
                latents = known * (1 - m) + latents * m
                model_in = scheduler.scale_model_input(latents, t)
            else:
                model_in = torch.cat([scheduler.scale_model_input(latents, t), m, masked_latents], dim=1)
            eps = unet(model_in, t, encoder_hidden_states=embeds).sample
            step_kwargs = {"eta": eta}
            if generators is not None:
                step_kwargs["generator"] = generators[0] if len(generators) == 1 else generators
            latents = scheduler.step(eps, t, latents, **step_kwargs).prev_sample
        if kind == "plain":
            latents = z0 * (1 - m) + latents * m
    with _maybe(timer, "decode"):
        return decode_latents(vae, latents)


def load_pipeline(path: str, device: str = "auto"):
    """A local diffusers folder (checked and loaded by `cxr_fgbg.models.loading`) with a DDIM scheduler,
    the paper's sampler. Works for 4- and 9-channel U-Nets alike; nothing is downloaded."""
    from diffusers import DDIMScheduler

    from cxr_fgbg.models.loading import load_pipeline as load_folder

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    pipe = load_folder(path, device=device)
    if not isinstance(pipe.scheduler, DDIMScheduler):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe
