"""Config section `localize`: cross-attention heat maps (M-hat) and preliminary masks."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class LocalizeSettings(StrictModel):
    num_inference_steps: int = Field(50, ge=1, description="Size of the DDIM grid the timesteps are taken from.")
    t0: int = Field(40, ge=1, description="Number of the grid's lowest timesteps summed (paper: 40 of 50).")
