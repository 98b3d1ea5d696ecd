"""Classifier-free guidance with the background prompt as the negative branch (supplement eq. 4).

    eps~ = w * eps(z_t, y_f) - (w - 1) * eps(z_t, y_b)

w = 1 is plain sampling with y_f, w = 0 plain sampling with y_b, w = -1 pushes away from the object
(pure background). It is diffusers' CFG with y_b as the negative prompt, so for w > 1 it equals
`pipe(prompt=y_f, negative_prompt=y_b, guidance_scale=w)`; unlike diffusers it also runs w <= 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from cxr_fgbg.masks.inpaint import decode_latents, encode_prompts
from cxr_fgbg.seeding import torch_generator

__all__ = ["combine_eps", "contact_sheet", "guided_eps", "initial_latents", "sample_guided", "sweep_guidance"]


def combine_eps(eps_f: torch.Tensor, eps_b: torch.Tensor, w: float) -> torch.Tensor:
    """w * eps_f - (w - 1) * eps_b (exact for w = 1 and w = 0: the other term is multiplied by 0)."""
    return w * eps_f - (w - 1.0) * eps_b


@torch.no_grad()
def guided_eps(
    unet, latents: torch.Tensor, t, embeds_f: torch.Tensor, embeds_b: torch.Tensor, w: float
) -> torch.Tensor:
    """Both branches in one batched U-Net pass (background first, as in diffusers), then combined.

    At w = 1 (plain y_f) and w = 0 (plain y_b) the other branch has weight 0: one branch is computed, not two,
    which halves the cost of sampling the synthetic set D'_s.
    """
    if w == 1.0:
        return unet(latents, t, encoder_hidden_states=embeds_f).sample
    if w == 0.0:
        return unet(latents, t, encoder_hidden_states=embeds_b).sample
    n = latents.shape[0]
    out = unet(torch.cat([latents, latents]), t, encoder_hidden_states=torch.cat([embeds_b, embeds_f])).sample
    return combine_eps(out[n:], out[:n], w)


def initial_latents(
    pipe, num_images: int, seed: int, height: int | None = None, width: int | None = None
) -> torch.Tensor:
    """Seeded start noise (B, latent_channels, h, w), one generator per image so an image does not
    depend on how many are drawn with it; the same seed gives the same noise for every w."""
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = int(pipe.unet.config.sample_size) * factor
    h, w = (height or size) // factor, (width or size) // factor
    shape = (int(pipe.unet.config.out_channels), h, w)
    noise = torch.stack([torch.randn(shape, generator=torch_generator(seed, "sample", i)) for i in range(num_images)])
    return noise * pipe.scheduler.init_noise_sigma


@torch.no_grad()
def sample_guided(
    pipe,
    prompt: str,
    background_prompt: str,
    w: float,
    num_images: int = 1,
    num_inference_steps: int = 50,
    seed: int = 0,
    latents: torch.Tensor | None = None,
    show_progress: bool = False,
) -> torch.Tensor:
    """Images (B, C, H, W) in [0, 1] sampled by DDIM (eta 0) with background-prompt guidance w."""
    from tqdm.auto import tqdm

    unet, scheduler = pipe.unet, pipe.scheduler
    device, dtype = unet.device, unet.dtype
    if latents is None:
        latents = initial_latents(pipe, num_images, seed)
    latents = latents.to(device, dtype)
    n = latents.shape[0]
    embeds_f = encode_prompts(pipe, [prompt] * n).to(device, dtype)
    embeds_b = encode_prompts(pipe, [background_prompt] * n).to(device, dtype)
    scheduler.set_timesteps(num_inference_steps, device=device)
    for t in tqdm(scheduler.timesteps, desc=f"sampling w={w:g}", leave=False, disable=not show_progress):
        model_in = scheduler.scale_model_input(latents, t)
        eps = guided_eps(unet, model_in, t, embeds_f, embeds_b, w)
        latents = scheduler.step(eps, t, latents, eta=0.0).prev_sample
    return decode_latents(pipe.vae, latents)


def _to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    arr = np.asarray(image, dtype=np.float32)
    arr = np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)
    return arr[0] if arr.shape[0] == 1 else np.moveaxis(arr[:3], 0, -1)


def save_image_png(path: str | os.PathLike[str], image: torch.Tensor | np.ndarray) -> None:
    from PIL import Image

    from cxr_fgbg.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(_to_uint8(image)).save(tmp, format="PNG")


def contact_sheet(images_by_w: dict[float, torch.Tensor], path: str | os.PathLike[str], pad: int = 2) -> Path:
    """A grid PNG: one column per w (left to right in the given order), one row per seed image."""
    from PIL import Image, ImageDraw

    from cxr_fgbg.io import atomic_path

    weights = list(images_by_w)
    first = images_by_w[weights[0]]
    rows, _, h, w = first.shape
    label = 12
    sheet = Image.new("RGB", (len(weights) * (w + pad) + pad, label + rows * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for j, weight in enumerate(weights):
        x0 = pad + j * (w + pad)
        draw.text((x0, 0), f"w={weight:g}", fill="black")
        for i in range(rows):
            tile = Image.fromarray(_to_uint8(images_by_w[weight][i])).convert("RGB")
            sheet.paste(tile, (x0, label + pad + i * (h + pad)))
    target = Path(path)
    with atomic_path(target) as tmp:
        sheet.save(tmp, format="PNG")
    return target


def sweep_guidance(
    pipe,
    prompt: str,
    background_prompt: str,
    weights: Sequence[float],
    out_dir: str | os.PathLike[str],
    num_images: int = 4,
    num_inference_steps: int = 50,
    seed: int = 0,
    show_progress: bool = True,
) -> Path:
    """The supplement's Fig. 6 analogue: OUT/w_{w}/{i}.png for every w (same noise), OUT/contact_sheet.png."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    latents = initial_latents(pipe, num_images, seed)
    results: dict[float, torch.Tensor] = {}
    for w in tqdm(list(weights), desc="guidance weights", disable=not show_progress):
        images = sample_guided(pipe, prompt, background_prompt, float(w), num_inference_steps=num_inference_steps,
                               latents=latents.clone())
        results[float(w)] = images
        for i, image in enumerate(images):
            save_image_png(out / f"w_{float(w):g}" / f"{i:03d}.png", image)
    return contact_sheet(results, out / "contact_sheet.png")
