"""The tiny latent diffusion bundle for the phantom: built from the config, saved as a diffusers folder.

Every component is a standard diffusers / transformers class, so the folder loads with
`StableDiffusionPipeline.from_pretrained(folder)` exactly like Stable Diffusion or RoentGen; only
the sizes differ (1-channel VAE for chest X-rays, a narrow U-Net, a one-layer CLIP text encoder).
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from cxr_fgbg.errors import ConfigError
from cxr_fgbg.models.settings import TinyBundleSettings


def build_scheduler(num_train_timesteps: int = 1000) -> DDIMScheduler:
    """The DDIM scheduler of Stable Diffusion 1.x (scaled-linear betas, eps prediction)."""
    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
        prediction_type="epsilon",
    )


def build_vae(settings: TinyBundleSettings) -> AutoencoderKL:
    blocks = len(settings.vae_block_out_channels)
    return AutoencoderKL(
        in_channels=settings.image_channels,
        out_channels=settings.image_channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        block_out_channels=tuple(settings.vae_block_out_channels),
        layers_per_block=1,
        latent_channels=settings.latent_channels,
        mid_block_add_attention=settings.vae_mid_block_attention,
        norm_num_groups=settings.norm_num_groups,
        sample_size=settings.image_size,
    )


def build_unet(settings: TinyBundleSettings) -> UNet2DConditionModel:
    channels = tuple(settings.unet_block_out_channels)
    cross = tuple(settings.unet_cross_attention_blocks)
    if len(cross) != len(channels):
        raise ConfigError(
            "model.tiny.unet_cross_attention_blocks must have one entry per unet_block_out_channels "
            f"entry ({len(channels)}), got {len(cross)}"
        )
    if not any(cross):
        raise ConfigError("model.tiny.unet_cross_attention_blocks: at least one block needs cross-attention")
    down = tuple("CrossAttnDownBlock2D" if c else "DownBlock2D" for c in cross)
    up = tuple("CrossAttnUpBlock2D" if c else "UpBlock2D" for c in reversed(cross))
    factor = 2 ** (len(settings.vae_block_out_channels) - 1)
    return UNet2DConditionModel(
        sample_size=settings.image_size // factor,
        in_channels=settings.latent_channels,
        out_channels=settings.latent_channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=channels,
        layers_per_block=settings.unet_layers_per_block,
        cross_attention_dim=settings.text_hidden_size,
        attention_head_dim=settings.attention_heads,
        norm_num_groups=settings.norm_num_groups,
    )


def build_text_encoder(settings: TinyBundleSettings, tokenizer: CLIPTokenizer) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=settings.text_hidden_size,
        intermediate_size=settings.text_intermediate_size,
        num_hidden_layers=settings.text_layers,
        num_attention_heads=settings.text_heads,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_tiny_pipeline(
    tokenizer: CLIPTokenizer, settings: TinyBundleSettings | None = None, seed: int = 0
) -> StableDiffusionPipeline:
    """A randomly initialised tiny pipeline (weights from `seed`); training happens elsewhere."""
    settings = settings or TinyBundleSettings()
    torch.manual_seed(seed)
    vae = build_vae(settings)
    unet = build_unet(settings)
    text_encoder = build_text_encoder(settings, tokenizer)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
