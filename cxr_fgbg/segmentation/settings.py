"""Config section `segment`: the MONAI U-Net distilled from the masks."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class SegmentSettings(StrictModel):
    steps: int = Field(12000, ge=1, description="Training steps (paper: 12,000).")
    batch_size: int = Field(32, ge=1, description="Batch size (paper: 32).")
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate (paper: 1e-3).")
    crop_size: int = Field(128, ge=8, description="Random crop in training, centre crop at inference.")
