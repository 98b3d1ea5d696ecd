"""Config section `segment`: the MONAI U-Net distilled from the masks."""

from typing import Literal

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class SegmentSettings(StrictModel):
    steps: int = Field(12000, ge=1, description="Training steps (paper: 12,000).")
    batch_size: int = Field(32, ge=1, description="Batch size (paper: 32).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate (paper: 1e-3; public code 2e-3).")
    crop_size: int = Field(128, ge=8, description="Random crop in training, centre crop at inference.")
    resize: int | None = Field(
        None, ge=8, description="Shorter image side before cropping (None: crop_size, the paper's protocol)."
    )
    crop_sampling: Literal["uniform", "foreground"] = Field(
        "uniform",
        description="Training crops: uniform position (paper) or foreground: centred on a mask pixel with "
        "probability foreground_fraction, else on a background pixel (MONAI RandCropByPosNegLabeld).",
    )
    foreground_fraction: float = Field(
        0.5, ge=0, le=1, description="Share of foreground-centred crops when crop_sampling is foreground."
    )
    loss: Literal["bce", "dicece"] = Field(
        "dicece",
        description="dicece: MONAI DiceCELoss (Dice + BCE; sparse masks such as lesions need the Dice term, with "
        "BCE alone the U-Net can predict no foreground at all, see docs/segmentation.md); bce: binary "
        "cross-entropy only (kept by configs/cub.yaml, dogs, cars, h36m).",
    )
    channels: tuple[int, ...] = Field((16, 32, 64, 128, 256), description="MONAI UNet channels per level.")
    strides: tuple[int, ...] = Field((2, 2, 2, 2), description="MONAI UNet strides (one fewer than channels).")
    num_res_units: int = Field(2, ge=0, description="Residual units per MONAI UNet block.")
    in_channels: int | None = Field(
        None, ge=1, le=3, description="Image channels (1 chest X-ray, 3 natural); None: from the first image."
    )
    intensity_percentiles: tuple[float, float] | None = Field(
        (0.5, 99.5), description="Robust intensity scaling to [0, 1]; None: by the file's bit depth."
    )
    train_splits: list[str] = Field(
        default_factory=lambda: ["train"],
        description="Rows of masks.csv used for training (by its split column; all rows when it has none).",
    )
    threshold: float = Field(0.5, gt=0, lt=1, description="Foreground when sigmoid(output) exceeds it.")
    inference: Literal["center_crop", "sliding_window"] = Field(
        "center_crop",
        description="center_crop (paper): outside the crop is background; sliding_window covers the whole "
        "resized image.",
    )
    checkpoint_every: int = Field(1000, ge=1, description="Save model + optimiser every N steps (resume point).")
    log_every: int = Field(50, ge=1, description="Write the mean loss of every N steps to train_log.csv.")
    device: str = Field("auto", description="'auto' (CUDA when available), 'cpu' or 'cuda'.")
