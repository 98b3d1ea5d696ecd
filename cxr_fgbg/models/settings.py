"""Config section `model`: which LDM folder to use, and the tiny phantom bundle's architecture."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class TokenizerSettings(StrictModel):
    vocab_size: int = Field(
        600, ge=64, description="BPE vocabulary trained on the impressions; small, so rare words split into sub-words."
    )
    max_length: int = Field(64, ge=8, description="Token limit of the prompt (start and end tokens included).")
    min_frequency: int = Field(2, ge=1, description="Minimum pair frequency for a BPE merge.")


class TinyBundleSettings(StrictModel):
    """Architecture of the small bundle trained from scratch on the phantom (CPU-sized)."""

    image_channels: int = Field(1, ge=1, le=3, description="1 for chest X-rays, 3 for natural images.")
    image_size: int = Field(64, ge=16, description="Model input size in pixels.")
    vae_block_out_channels: tuple[int, ...] = Field(
        (32, 64, 64), description="AutoencoderKL blocks; the downsampling factor is 2**(len - 1)."
    )
    latent_channels: int = Field(4, ge=1)
    unet_block_out_channels: tuple[int, ...] = Field((32, 64, 64), description="UNet2DConditionModel blocks.")
    unet_cross_attention_blocks: tuple[bool, ...] = Field(
        (True, True, False), description="Which down blocks (mirrored in the up path) carry cross-attention."
    )
    unet_layers_per_block: int = Field(1, ge=1)
    attention_heads: int = Field(4, ge=1, description="Heads of every cross-attention layer.")
    norm_num_groups: int = Field(8, ge=1)
    text_hidden_size: int = Field(64, ge=8, description="Width of the text encoder = cross_attention_dim.")
    text_layers: int = Field(1, ge=0, description="Transformer layers of the CLIP text encoder (0: embeddings only).")
    text_heads: int = Field(4, ge=1)
    text_intermediate_size: int = Field(128, ge=8)


class ModelSettings(StrictModel):
    path: str | None = Field(None, description="A local diffusers folder (SD 1.x/2.x, RoentGen, or ours).")
    tokenizer: TokenizerSettings = Field(default_factory=TokenizerSettings)
    tiny: TinyBundleSettings = Field(default_factory=TinyBundleSettings)
