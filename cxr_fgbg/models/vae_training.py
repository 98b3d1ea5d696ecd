"""Brief reconstruction training of the tiny AutoencoderKL, and its measured reconstruction error.

Stable Diffusion's VAE was trained on millions of natural images; ours is trained for a few hundred
steps on the phantom's training images (L2 reconstruction + a tiny KL term, as SD's KL-f8 minus the
perceptual and adversarial terms, which need pretrained networks). The latent scaling factor is set the
way SD's 0.18215 was found: 1 / standard deviation of the training latents, so the diffusion model sees
latents of unit variance. No augmentation: chest X-rays are never flipped.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
from diffusers import AutoencoderKL
from monai.metrics import MSEMetric, PSNRMetric
from tqdm.auto import tqdm

from cxr_fgbg.models.settings import VaeTrainSettings
from cxr_fgbg.seeding import torch_generator

__all__ = ["ReconstructionError", "VaeReport", "fit_scaling_factor", "reconstruction_error", "train_vae"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconstructionError:
    """Mean over images of the per-image MSE and PSNR (dB), intensities in [0, 1]."""

    mse: float
    psnr: float
    images: int


@dataclass(frozen=True)
class VaeReport:
    steps: int
    train_images: int
    validation_images: int
    validation_source: str
    before: ReconstructionError
    after: ReconstructionError
    scaling_factor: float
    final_train_loss: float | None

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def reconstruction_error(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 32) -> ReconstructionError:
    """Deterministic (posterior mode) reconstruction of [0, 1] images, scored with MONAI's metrics."""
    mse_metric, psnr_metric = MSEMetric(), PSNRMetric(max_val=1.0)
    was_training = vae.training
    vae.eval()
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size]
        recon = _reconstruct(vae, x)
        mse_metric(recon, x)
        psnr_metric(recon, x)
    vae.train(was_training)
    return ReconstructionError(
        mse=float(mse_metric.aggregate()), psnr=float(psnr_metric.aggregate()), images=len(images)
    )


@torch.no_grad()
def fit_scaling_factor(vae: AutoencoderKL, images: torch.Tensor, batch_size: int = 32) -> float:
    """1 / std of the posterior means over `images` (Stable Diffusion's recipe for `scaling_factor`)."""
    latents = [vae.encode(images[s : s + batch_size] * 2 - 1).latent_dist.mode()
               for s in range(0, len(images), batch_size)]
    std = float(torch.cat(latents).std())
    return 1.0 / std if std > 0 else 1.0


def train_vae(
    vae: AutoencoderKL,
    train_images: torch.Tensor,
    validation_images: torch.Tensor,
    settings: VaeTrainSettings,
    seed: int,
    progress: bool = True,
    validation_source: str = "validate",
) -> VaeReport:
    """Train `vae` in place on (N, C, H, W) images in [0, 1]; measure on `validation_images` before and after.

    Sets `vae.config.scaling_factor` from the training latents and leaves the VAE frozen (eval mode).
    """
    before = reconstruction_error(vae, validation_images)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=settings.learning_rate)
    batches = torch_generator(seed, "vae", "batches")
    sampling = torch_generator(seed, "vae", "posterior")
    last = None
    vae.requires_grad_(True).train()
    bar = tqdm(range(settings.steps), desc="VAE", disable=not progress, leave=False)
    for step in bar:
        x = train_images[torch.randint(len(train_images), (settings.batch_size,), generator=batches)] * 2 - 1
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=sampling)).sample
        loss = torch.nn.functional.mse_loss(recon, x) + settings.kl_weight * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        last = loss.item()
        if step % 10 == 0:
            bar.set_postfix(loss=f"{last:.4f}")
    vae.requires_grad_(False).eval()
    after = reconstruction_error(vae, validation_images)
    scale = fit_scaling_factor(vae, train_images[:256])
    vae.register_to_config(scaling_factor=scale)
    log.info("VAE: validation MSE %.5f -> %.5f, PSNR %.1f -> %.1f dB over %d steps (scaling factor %.4f)",
             before.mse, after.mse, before.psnr, after.psnr, settings.steps, scale)
    return VaeReport(
        steps=settings.steps,
        train_images=len(train_images),
        validation_images=len(validation_images),
        validation_source=validation_source,
        before=before,
        after=after,
        scaling_factor=scale,
        final_train_loss=last,
    )


def _reconstruct(vae: AutoencoderKL, images: torch.Tensor) -> torch.Tensor:
    latents = vae.encode(images * 2 - 1).latent_dist.mode()
    return ((vae.decode(latents).sample + 1) / 2).clamp(0, 1)
