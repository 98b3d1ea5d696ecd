"""Config section `evaluate`: metrics, baselines and confidence intervals."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class EvaluateSettings(StrictModel):
    bootstrap_samples: int = Field(1000, ge=0, description="Bootstrap resamples for 95% intervals (0: none).")
    miou_thresholds: tuple[float, ...] = Field((0.1, 0.2, 0.3, 0.4, 0.5), description="BioViL mIoU thresholds.")
