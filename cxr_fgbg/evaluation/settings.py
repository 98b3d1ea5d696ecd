"""Config section `evaluate`: metrics, baselines, confidence intervals and the report."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class EvaluateSettings(StrictModel):
    bootstrap_samples: int = Field(1000, ge=0, description="Bootstrap resamples for 95% intervals (0: none).")
    miou_thresholds: tuple[float, ...] = Field((0.1, 0.2, 0.3, 0.4, 0.5), description="BioViL mIoU thresholds.")
    train_split: str = Field(
        "train", description="Split whose boxes build the class-location prior; its rows are never evaluated."
    )
    eval_splits: list[str] = Field(
        default_factory=list,
        description="Splits to evaluate (e.g. [test]); empty: every split except the training split.",
    )
    gaussian_sigma: float = Field(
        0.25, gt=0, description="Centred Gaussian baseline: standard deviation as a fraction of each image side."
    )
    prior_resolution: int = Field(
        256, ge=8, description="Grid size (pixels per side) of the class-location prior before resizing."
    )
    workers: int = Field(
        4, ge=1, description="Threads that read and score heat maps in parallel (results do not depend on it)."
    )
    figures: bool = Field(True, description="Draw the bar chart and overlay figures of the report.")
    overlay_metric: str = Field(
        "pixel_auroc", description="Metric that picks the best / median / worst sample of each class for overlays."
    )
    overlay_max_side: int = Field(
        384, ge=32, description="Longest side in pixels at which overlay panels are drawn (display only)."
    )
