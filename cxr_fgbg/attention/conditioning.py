"""Where the prompt changes the denoiser: |eps(z_t, y) - eps(z_t, empty prompt)|, a diagnostic beside M-hat.

M-hat reads WHICH tokens a pixel attends to. A model can bind a report to the right place and still spread
that binding over tokens other than the finding's words (the end-of-text token, side words, a small text
encoder's mixed embeddings); then M-hat misses the lesion although the model "knows" where it is. The
conditioning map is agnostic to that: it measures where the prediction depends on the text at all. The same
noisy latents as M-hat are used (noise seeded per (seed, sample key, t, draw)), so the two maps of an image
are directly comparable. This is an analysis tool, not the paper's localiser.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from cxr_fgbg.attention.heatmap import noisy_latent

__all__ = ["conditioning_maps"]


@torch.no_grad()
def conditioning_maps(
    unet: Any,
    scheduler: Any,
    latents: torch.Tensor,
    embeddings: torch.Tensor,
    empty_embedding: torch.Tensor,
    timesteps: Sequence[int],
    keys: Sequence[object],
    seed: int,
    noise_draws: int = 1,
    batch_size: int = 8,
) -> torch.Tensor:
    """(B, h, w) on the latent grid: sum over timesteps of the draw-averaged |eps(y) - eps(empty)|, summed over
    latent channels. `embeddings` (B, L, D) are the prompts', `empty_embedding` (1, L, D) the empty prompt's."""
    count = latents.shape[0]
    if len(keys) != count or embeddings.shape[0] != count:
        raise ValueError(f"{count} latents, {embeddings.shape[0]} embeddings and {len(keys)} keys")
    param = next(unet.parameters())
    alphas = scheduler.alphas_cumprod.to(torch.float32)
    jobs = [(i, int(t), n) for t in timesteps for n in range(noise_draws) for i in range(count)]
    total = torch.zeros((count, *latents.shape[-2:]), dtype=torch.float32)
    half = max(1, batch_size // 2)  # each job is two rows: with and without the prompt
    for start in range(0, len(jobs), half):
        chunk = jobs[start:start + half]
        noisy = [noisy_latent(latents[i], alphas, t, seed, keys[i], n) for i, t, n in chunk]
        sample = torch.stack(noisy + noisy).to(device=param.device, dtype=param.dtype)
        steps = torch.tensor([t for _, t, _ in chunk] * 2, device=param.device)
        context = torch.cat([embeddings[[i for i, _, _ in chunk]],
                             empty_embedding.expand(len(chunk), -1, -1)]).to(device=param.device, dtype=param.dtype)
        eps = unet(sample, steps, encoder_hidden_states=context).sample.float().cpu()
        difference = (eps[: len(chunk)] - eps[len(chunk):]).abs().sum(dim=1)
        total.index_add_(0, torch.tensor([i for i, _, _ in chunk]), difference)
    return total / noise_draws
