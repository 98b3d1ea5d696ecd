"""Config section `model`: which LDM folder to use, and how the tiny phantom bundle is built."""

from typing import Literal

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class TokenizerSettings(StrictModel):
    vocab_size: int = Field(
        600, ge=64, description="BPE vocabulary trained on the impressions; small, so rare words split into sub-words."
    )
    max_length: int = Field(64, ge=8, description="Token limit of the prompt (start and end tokens included).")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")
    max_token_length: int | None = Field(
        6,
        ge=2,
        description=(
            "Longest token in characters (None: no limit). A small corpus such as the phantom has few distinct "
            "words, so BPE would otherwise learn every word whole; the limit makes long rare words "
            "('pneumothorax', 'cardiomegaly') split into sub-words the way CLIP's tokenizer splits them, while "
            "short common words stay whole."
        ),
    )


class TinyBundleSettings(StrictModel):
    """Architecture of the small bundle trained from scratch on the phantom (CPU-sized)."""

    image_channels: int = Field(1, ge=1, le=3, description="1 for chest X-rays, 3 for natural images.")
    image_size: int = Field(64, ge=16, description="Model input size in pixels.")
    vae_block_out_channels: tuple[int, ...] = Field(
        (16, 32, 32), description="AutoencoderKL blocks; the downsampling factor is 2**(len - 1)."
    )
    vae_mid_block_attention: bool = Field(
        False,
        description=(
            "Self-attention in the VAE's middle block (Stable Diffusion has it). Off by default: at small "
            "downsampling factors it attends over thousands of positions and dominates CPU training time."
        ),
    )
    latent_channels: int = Field(4, ge=1)
    unet_block_out_channels: tuple[int, ...] = Field((32, 64, 64), description="UNet2DConditionModel blocks.")
    unet_cross_attention_blocks: tuple[bool, ...] = Field(
        (True, True, False), description="Which down blocks (mirrored in the up path) carry cross-attention."
    )
    unet_layers_per_block: int = Field(1, ge=1)
    attention_heads: int = Field(4, ge=1, description="Heads of every cross-attention layer.")
    norm_num_groups: int = Field(8, ge=1)
    text_hidden_size: int = Field(
        128, ge=8,
        description=(
            "Width of the text encoder = cross_attention_dim. 128 rather than 64: on the full demo's validation "
            "split the finding words' maps reached macro pixel AUROC 0.809 instead of 0.716 (docs/phantom.md)."
        ),
    )
    text_layers: int = Field(1, ge=0, description="Transformer layers of the CLIP text encoder (0: embeddings only).")
    text_heads: int = Field(4, ge=1)
    text_intermediate_size: int = Field(256, ge=8, description="Feed-forward width of the text encoder's layers.")


class TextPretrainSettings(StrictModel):
    """Brief label-free pre-training of the tiny text encoder on the training impressions."""

    mode: Literal["mlm", "none"] = Field(
        "mlm",
        description=(
            "mlm: masked-language modelling on the training impressions (text only, no image labels), then the "
            "encoder is frozen as in RoentGen; none: keep the random initialisation."
        ),
    )
    steps: int = Field(300, ge=0, description="Optimiser steps of the pre-training.")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate of the pre-training.")
    batch_size: int = Field(32, ge=1, description="Impressions per pre-training step.")
    mask_probability: float = Field(
        0.25, gt=0, lt=1, description="Fraction of word tokens masked per impression (at least one per text)."
    )
    train_jointly: bool = Field(
        False,
        description=(
            "Recorded in the bundle for the fine-tuning stage: True asks it to keep training the text encoder "
            "together with the U-Net instead of freezing it."
        ),
    )


class VaeTrainSettings(StrictModel):
    """Brief reconstruction training of the tiny AutoencoderKL on the training images."""

    steps: int = Field(200, ge=0, description="Optimiser steps (0: keep the random initialisation).")
    learning_rate: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(8, ge=1, description="Images per step.")
    kl_weight: float = Field(1e-6, ge=0, description="Weight of the KL term (Stable Diffusion's VAE: about 1e-6).")
    max_validation_images: int = Field(
        64, ge=1, description="Held-out images (split 'validate') on which the reconstruction error is measured."
    )


class ModelSettings(StrictModel):
    path: str | None = Field(None, description="A local diffusers folder (SD 1.x/2.x, RoentGen, or ours).")
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    tiny: TinyBundleSettings = Field(default_factory=TinyBundleSettings)
    text_pretraining: TextPretrainSettings = Field(default_factory=TextPretrainSettings)
    vae_training: VaeTrainSettings = Field(default_factory=VaeTrainSettings)
