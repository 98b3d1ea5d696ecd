"""Config section `masks`: GMM binarisation, refinement by background inpainting, guidance, D'_s."""

from typing import Literal

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class RefineSettings(StrictModel):
    """Refined masks M (eq. 5/6): background inpainting of M_pre, difference, GMM, AND with M_pre."""

    background_prompt: str = Field(
        "a photo of a background",
        description="y_b, the prompt the M_pre region is inpainted with (chest X-rays: a normal impression, "
        "e.g. 'No acute cardiopulmonary process.').",
    )
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps of the inpainting (paper: 50).")
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM eta (paper: 0, deterministic).")
    batch_size: int = Field(3, ge=1, description="Images inpainted together (paper timing: batches of three).")
    image_size: int | None = Field(
        None, ge=8, description="Model input size; None: the size the heat map's geometry record says."
    )
    latent_rule: Literal["any"] = Field(
        "any",
        description="A latent pixel is inpainted when ANY of its image pixels is in M_pre, so the noised "
        "region never shrinks below M_pre's footprint (missing foreground would copy object pixels).",
    )
    closing: bool = Field(False, description="Morphological closing of M (public-code flag, not in the paper).")
    closing_radius: int = Field(2, ge=1, description="Radius in pixels of the closing's disc.")
    fill_holes: bool = Field(False, description="Fill holes inside M (public-code flag, not in the paper).")
    method: Literal["inpaint", "crop", "pre"] = Field(
        "inpaint",
        description="inpaint: M (eq. 5/6); crop: the M_crop ablation (background flipped in); pre: M_pre "
        "exported as masks (for the U-Net(M_pre) ablation).",
    )
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu' or 'cuda'.")


class GuidanceSettings(StrictModel):
    """Background-prompt guidance: eps = w * eps(z, y_f) - (w - 1) * eps(z, y_b)."""

    weights: list[float] = Field(
        default_factory=lambda: [-1.0, 0.0, 1.0, 3.0, 7.5],
        description="Guidance weights w to sample (w = 1: plain y_f; w = 0: plain y_b; w = -1: background).",
    )
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps.")
    images_per_weight: int = Field(4, ge=1, description="Images drawn per w (same noise for every w).")


class SyntheticSettings(StrictModel):
    """D'_s: images sampled with y_f, indexed like natural images so localize + refine can run on them."""

    images_per_prompt: int = Field(8, ge=1, description="Images generated per foreground prompt.")
    guidance: float = Field(1.0, description="w of the background-prompt guidance (1: plain y_f).")
    num_inference_steps: int = Field(50, ge=1, description="DDIM steps.")


class MaskSettings(StrictModel):
    majority_filter: bool = Field(True, description="3x3 majority filter after the GMM threshold.")
    refine: RefineSettings = Field(default_factory=RefineSettings)
    guidance: GuidanceSettings = Field(default_factory=GuidanceSettings)
    synthetic: SyntheticSettings = Field(default_factory=SyntheticSettings)
