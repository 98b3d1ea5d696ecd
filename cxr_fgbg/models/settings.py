"""Config section `model`: which LDM folder to use, and the tiny phantom bundle's architecture."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class ModelSettings(StrictModel):
    path: str | None = Field(None, description="A local diffusers folder (SD 1.x/2.x, RoentGen, or ours).")
