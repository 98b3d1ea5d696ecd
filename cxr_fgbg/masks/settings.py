"""Config section `masks`: GMM binarisation, refinement by background inpainting, guidance."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class MaskSettings(StrictModel):
    majority_filter: bool = Field(True, description="3x3 majority filter after the GMM threshold.")
