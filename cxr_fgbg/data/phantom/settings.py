"""Config section `phantom`: the embedded MIMIC-CXR-shaped dataset."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class PhantomSettings(StrictModel):
    studies: int = Field(200, ge=1, description="Number of studies to generate.")
    size: int = Field(
        512, ge=64, le=4096,
        description="Nominal image size in pixels: the longer side of each image (images are not square).",
    )
    seed: int | None = Field(None, description="Seed of the phantom; None uses the top-level seed.")
    normal_fraction: float = Field(
        0.3, ge=0.0, le=1.0, description="Share of studies with no finding (normal reports)."
    )
    lateral_fraction: float = Field(
        0.45, ge=0.0, le=1.0, description="Share of studies that add a LATERAL view to the frontal one."
    )
    ap_fraction: float = Field(
        0.3, ge=0.0, le=1.0, description="Share of frontal views taken AP (portable) rather than PA."
    )
    monochrome1_fraction: float = Field(
        0.15, ge=0.0, le=1.0,
        description="Share of images stored as MONOCHROME1 (inverted grey values), as some scanners do.",
    )
    max_studies_per_subject: int = Field(
        4, ge=1, le=20, description="Each patient gets between 1 and this many studies."
    )
    validate_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of patients in the MIMIC 'validate' split (MS-CXR 'val')."
    )
    test_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="Share of patients in the 'test' split (MIMIC and MS-CXR alike)."
    )
    ms_cxr_train_fraction: float = Field(
        0.25, ge=0.0, le=1.0,
        description="Share of training patients whose images also get MS-CXR boxes (its 'train' split); "
        "validate and test patients always do. The indexer holds all MS-CXR patients out of fine-tuning.",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Processes rendering studies in parallel (output is identical for any value)."
    )
