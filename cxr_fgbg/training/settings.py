"""Config section `finetune`: RoentGen-style fine-tuning and the foreground/background objective.

Defaults follow RoentGen (VAE and text encoder frozen, AdamW lr 5e-5, condition dropout 0.1) and, for
the fg/bg objective, the paper (p = 0.5, rectangle rules on a 64x64 latent grid). The rectangle sizes
are parameters because a small latent grid (16x16 for the 64x64 phantom model) cannot hold a rectangle
with sides > 10; scale them with the grid (see docs/finetuning.md).
"""

from typing import Literal

from pydantic import Field, model_validator

from cxr_fgbg.settings_base import StrictModel


class RectangleSettings(StrictModel):
    """Rules of the background-rectangle sampler, in latent pixels (paper values for a 64x64 grid)."""

    min_side: int = Field(10, ge=0, description="Reject when a side is <= this many latent pixels.")
    min_area: int = Field(256, ge=0, description="Reject when the area is < this (16x16 in the paper).")
    max_side: int = Field(32, ge=1, description="Reject when BOTH sides are > this.")
    max_area: int = Field(1024, ge=1, description="Reject when the area is > this (32x32 in the paper).")
    min_background_fraction: float = Field(
        2 / 3, ge=0, le=1, description="Reject when less than this fraction of the rectangle is background."
    )
    max_tries: int = Field(100, ge=1, description="After this many rejections the whole background is used.")


class FgbgSettings(StrictModel):
    """The foreground/background concept-distillation objective (used when `objective: fgbg`)."""

    p_foreground: float = Field(
        0.5, ge=0, le=1, description="Probability of full-image synthesis with the foreground prompt y_f."
    )
    foreground_prompt: str = Field(
        "a photo of a {concept}",
        description="y_f; `{concept}` is replaced by the row's concept. A row's own `prompt` column wins.",
    )
    background_prompt: str = Field("a photo of a background", description="y_b, used for background inpainting.")
    rectangle: RectangleSettings = Field(default_factory=RectangleSettings)
    percentiles: tuple[float, float] | None = Field(
        None, description="Intensity scaling of the concept images: None = by bit depth (natural images); "
        "[0.5, 99.5] for chest X-rays."
    )


class FinetuneSettings(StrictModel):
    objective: Literal["impression", "fgbg"] = Field(
        "impression",
        description="impression: RoentGen-style text-to-image on report text; fgbg: foreground/background "
        "concept distillation on a concept CSV with preliminary masks.",
    )
    resolution: int | None = Field(
        None, ge=8, description="Training image size in pixels (None: the VAE's `sample_size`)."
    )
    per_device_batch_size: int = Field(4, ge=1, description="Images per process per micro-batch.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Micro-batches per optimiser step. Effective batch = per-device x this x processes."
    )
    steps: int = Field(1000, ge=1, description="Optimiser steps.")
    learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate (RoentGen: 5e-5).")
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_weight_decay: float = Field(1e-2, ge=0)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="Gradient clipping (None: off).")
    lr_scheduler: Literal[
        "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"
    ] = Field("constant_with_warmup", description="Learning-rate schedule (diffusers `get_scheduler`).")
    lr_warmup_steps: int = Field(0, ge=0, description="Warm-up optimiser steps of the schedule.")
    cfg_dropout: float = Field(
        0.1, ge=0, le=1, description="Probability that a sample's text is replaced by the empty prompt (CFG)."
    )
    use_ema: bool = Field(False, description="Keep an exponential moving average of the U-Net; saved as the model.")
    ema_decay: float = Field(0.9999, gt=0, lt=1, description="EMA decay.")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field(
        "no", description="Autocast precision (accelerate). The frozen VAE/text encoder are cast to it."
    )
    min_snr_gamma: float | None = Field(
        None, gt=0, description="Min-SNR-gamma loss weighting (e.g. 5.0); None: plain MSE."
    )
    train_text_encoder: bool = Field(False, description="Also train the text encoder (RoentGen: frozen).")
    checkpoint_every: int = Field(500, ge=1, description="Write a resumable checkpoint every N optimiser steps.")
    keep_checkpoints: int = Field(2, ge=1, description="How many most recent checkpoints to keep.")
    latent_cache: bool = Field(
        False, description="Pre-compute the VAE posterior (mean, std) of every image once; a latent is "
        "sampled from it each step. Saves the VAE encoder pass; needs disk space."
    )
    latent_cache_dir: str | None = Field(None, description="Where the cache lives (None: OUT/latent_cache).")
    seed: int | None = Field(
        None, description="Seed of data order, noise, timesteps and dropout (None: the top-level `seed`)."
    )
    log_every: int = Field(10, ge=1, description="Write a row of loss.csv every N optimiser steps.")
    num_workers: int = Field(0, ge=0, description="DataLoader worker processes per training process.")
    fgbg: FgbgSettings = Field(default_factory=FgbgSettings)

    @model_validator(mode="after")
    def _check(self) -> "FinetuneSettings":
        if self.lr_warmup_steps > self.steps:
            raise ValueError(f"lr_warmup_steps ({self.lr_warmup_steps}) exceeds steps ({self.steps})")
        return self
