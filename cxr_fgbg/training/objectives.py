"""The denoising loss: MSE on the model's prediction target, optionally masked and Min-SNR weighted."""

from __future__ import annotations

import torch
from diffusers.training_utils import compute_snr

__all__ = ["diffusion_loss", "min_snr_weights", "per_sample_mse", "prediction_target"]


def prediction_target(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the U-Net predicts: the noise (SD 1.x, ours) or the velocity (SD 2.x 768)."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise
    if kind == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unsupported prediction_type {kind!r} (expected epsilon or v_prediction)")


def per_sample_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error per sample, over the masked latent pixels only when `mask` is given.

    `mask` is (B, 1, h, w) and broadcast over channels. A sample whose mask is empty gets 0 (it
    contributes nothing), rather than NaN.
    """
    error = (pred.float() - target.float()) ** 2
    if mask is None:
        return error.mean(dim=tuple(range(1, error.ndim)))
    mask = mask.to(error.dtype).expand_as(error)
    dims = tuple(range(1, error.ndim))
    return (error * mask).sum(dim=dims) / mask.sum(dim=dims).clamp_min(1.0)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights (Hang et al. 2023): min(SNR, gamma) / SNR for eps, / (SNR + 1) for v."""
    snr = compute_snr(scheduler, timesteps).float()
    clipped = torch.clamp(snr, max=gamma)
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr


def diffusion_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    timesteps: torch.Tensor,
    scheduler,
    mask: torch.Tensor | None = None,
    min_snr_gamma: float | None = None,
) -> torch.Tensor:
    """The batch loss: per-sample (masked) MSE, optionally Min-SNR weighted, averaged over the batch."""
    losses = per_sample_mse(pred, target, mask)
    if min_snr_gamma is not None:
        losses = losses * min_snr_weights(scheduler, timesteps, min_snr_gamma).to(losses.device)
    return losses.mean()
