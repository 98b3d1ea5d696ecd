"""The denoising loss: masked per-sample MSE and Min-SNR weights, against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from cxr_fgbg.training.objectives import diffusion_loss, min_snr_weights, per_sample_mse, prediction_target


def test_plain_mse_per_sample():
    pred = torch.zeros(2, 4, 2, 2)
    target = torch.zeros(2, 4, 2, 2)
    target[0] = 2.0  # sample 0: every error 2 -> 4
    target[1, 0, 0, 0] = 4.0  # sample 1: one of 16 errors 4 -> 16 / 16 = 1
    assert per_sample_mse(pred, target).tolist() == [4.0, 1.0]


def test_masked_mse_ignores_pixels_outside_the_mask():
    pred = torch.zeros(2, 4, 2, 2)
    target = torch.zeros(2, 4, 2, 2)
    target[:, :, 0, 0] = 3.0  # error 9 at pixel (0, 0) in every channel
    target[:, :, 1, 1] = 100.0  # huge error outside the mask
    mask = torch.zeros(2, 1, 2, 2)
    mask[0, 0, 0, 0] = 1.0  # sample 0: mask = pixel (0, 0) only -> 9
    mask[1, 0, 0, :] = 1.0  # sample 1: pixels (0, 0) and (0, 1) -> (9 + 0) / 2
    assert per_sample_mse(pred, target, mask).tolist() == [9.0, 4.5]


def test_empty_mask_contributes_zero_not_nan():
    pred, target = torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)
    mask = torch.zeros(2, 1, 2, 2)
    mask[1] = 1.0
    losses = per_sample_mse(pred, target, mask)
    assert losses.tolist() == [0.0, 1.0]
    scheduler = DDPMScheduler()
    assert diffusion_loss(pred, target, torch.tensor([1, 1]), scheduler, mask).item() == 0.5


def test_min_snr_weights_match_the_definition():
    scheduler = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    timesteps = torch.tensor([0, 500, 999])
    abar = scheduler.alphas_cumprod[timesteps]
    snr = abar / (1 - abar)
    expected = torch.clamp(snr, max=5.0) / snr
    assert torch.allclose(min_snr_weights(scheduler, timesteps, 5.0), expected, rtol=1e-5)
    # low noise (high SNR) is down-weighted, high noise keeps weight 1
    weights = min_snr_weights(scheduler, timesteps, 5.0)
    assert weights[0] < 0.01 and weights[2] == pytest.approx(1.0)


def test_min_snr_weighted_loss():
    scheduler = DDPMScheduler()
    pred, target = torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)
    timesteps = torch.tensor([10, 900])
    weights = min_snr_weights(scheduler, timesteps, 5.0)
    loss = diffusion_loss(pred, target, timesteps, scheduler, min_snr_gamma=5.0)
    assert loss.item() == pytest.approx(weights.mean().item(), rel=1e-6)


def test_prediction_target_epsilon_and_velocity():
    latents, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    t = torch.tensor([300])
    eps = DDPMScheduler(prediction_type="epsilon")
    assert torch.equal(prediction_target(eps, latents, noise, t), noise)
    v = DDPMScheduler(prediction_type="v_prediction")
    abar = v.alphas_cumprod[300]
    expected = abar.sqrt() * noise - (1 - abar).sqrt() * latents
    assert torch.allclose(prediction_target(v, latents, noise, t), expected, atol=1e-6)
