"""Config section `phantom`: the embedded MIMIC-CXR-shaped dataset."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class PhantomSettings(StrictModel):
    studies: int = Field(200, ge=1, description="Number of studies to generate.")
    size: int = Field(512, ge=64, le=4096, description="Nominal image size in pixels (images are not square).")
    seed: int | None = Field(None, description="Seed of the phantom; None uses the top-level seed.")
