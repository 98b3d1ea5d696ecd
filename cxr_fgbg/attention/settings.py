"""Config section `localize`: cross-attention heat maps (M-hat) and preliminary masks."""

from typing import Literal

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class LayerSelection(StrictModel):
    """Which cross-attention layers enter the sum (the paper: all of them)."""

    blocks: list[Literal["down", "mid", "up"]] = Field(
        default_factory=lambda: ["down", "mid", "up"], description="U-Net parts whose cross-attention is read."
    )
    downsampling: list[int] | None = Field(
        None,
        description="Keep only layers whose grid is the latent grid divided by one of these factors "
        "(1 = full latent resolution, 2, 4, 8). None: every resolution.",
    )


class LocalizeSettings(StrictModel):
    preset: Literal["paper", "fast"] = Field(
        "paper",
        description="paper: the last t0 timesteps of a num_inference_steps DDIM grid (40 of 50); "
        "fast: fast_timesteps of those, evenly spread (quick looks, tests).",
    )
    num_inference_steps: int = Field(50, ge=1, description="Size of the DDIM grid the timesteps are taken from.")
    t0: int = Field(40, ge=1, description="Number of the grid's lowest timesteps summed (paper: 40 of 50).")
    fast_timesteps: int = Field(5, ge=1, description="Timesteps used by the fast preset.")
    timesteps: list[int] | None = Field(
        None, description="Explicit timesteps (overrides preset, num_inference_steps and t0)."
    )
    noise_draws: int = Field(
        1, ge=1, description="Noise draws per timestep: 1 = eq. 2 of the supplement; N > 1 = eq. 1 (mean of N)."
    )
    layers: LayerSelection = Field(default_factory=LayerSelection)
    layer_upsample: Literal["bilinear", "nearest"] = Field(
        "bilinear", description="How a coarse layer's map is brought to the latent grid (public code: nearest)."
    )
    subword_reduce: Literal["sum", "mean"] = Field(
        "sum", description="How the maps of a word's sub-word tokens combine (paper: sum)."
    )
    image_size: int | None = Field(
        None, description="Model input size in pixels; None: unet sample_size x VAE scale factor."
    )
    fit: Literal["crop", "pad"] = Field(
        "crop", description="crop: shorter side resized then centre crop (the LDM's training); pad: letterbox."
    )
    intensity_percentiles: tuple[float, float] | None = Field(
        (0.5, 99.5), description="Robust intensity scaling of X-rays; None: by bit depth (natural images)."
    )
    batch_size: int = Field(8, ge=1, description="U-Net rows per forward pass (samples x timesteps).")
    device: str | None = Field(None, description="torch device; None: cuda when available, else cpu.")
    dtype: Literal["float32", "float16", "bfloat16"] = Field(
        "float32", description="Model weights' dtype (attention sums are always float32)."
    )
    vocabulary: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Extra words per MS-CXR class (added to the built-in list), e.g. {Edema: [oedema]}.",
    )
    replace_vocabulary: bool = Field(False, description="Use only `vocabulary`, not the built-in words.")
    prompt: Literal["phrase", "impression"] = Field(
        "phrase", description="phrase: the MS-CXR label_text; impression: the study's impression section."
    )
    majority_filter: bool = Field(True, description="3x3 majority filter after the GMM threshold.")
    nifti: bool = Field(False, description="Also write each heat map as NIfTI (maps_nifti/{sample_id}.nii.gz).")
    overlays: int = Field(8, ge=0, description="PNG overlays (image, heat map, boxes, mask) for the first N samples.")
