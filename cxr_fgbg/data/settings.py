"""Config section `data`: indexing of MIMIC-CXR / MS-CXR / natural images, and preprocessing."""

from typing import Literal

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class IndexSettings(StrictModel):
    views: list[str] = Field(default_factory=lambda: ["PA", "AP"], description="View positions to keep.")
    keep_ms_cxr_patients: bool = Field(
        False, description="Keep MS-CXR patients in the train/validate rows (off: they are held out)."
    )
    workers: int = Field(2, ge=1, description="Parallel workers for scanning image files.")
    reports_root: str | None = Field(
        None, description="Folder holding files/pXX/pSUBJECT/sSTUDY.txt when not under the MIMIC root (None: same)."
    )
    box_tolerance: float = Field(
        1.0, ge=0, description="MS-CXR boxes may overhang the image by this many pixels (clipped); more is skipped."
    )
    aspect_tolerance: float = Field(
        0.02, ge=0, le=0.5,
        description="Largest relative difference of x and y scale when mapping MS-CXR boxes to a resized copy.",
    )


class PreprocessSettings(StrictModel):
    image_size: int = Field(
        512, ge=8, description="Model input size: shorter side resized to it, then centre crop (fit=crop)."
    )
    fit: Literal["crop", "pad"] = Field(
        "crop", description="crop: shorter side resized, centre crop; pad: longer side resized, padded."
    )
    channels: Literal[1, 3] = Field(
        3, description="Image channels the model takes (grey images are repeated; SD's VAE wants 3)."
    )
    intensity_percentiles: tuple[float, float] = Field(
        (0.5, 99.5), description="Robust intensity scaling to [0, 1] between these percentiles."
    )
    cache_dir: str | None = Field(None, description="Cache of preprocessed images (None: no cache).")


class NaturalSettings(StrictModel):
    """`cxr-fgbg index-natural`: natural-image datasets (CUB, Stanford Dogs / Cars, Human3.6M, a folder)."""

    prompt_template: str = Field(
        "a photo of a {concept}", description="Prompt for each image; {concept} is the dataset's object word."
    )
    concepts: dict[str, str] = Field(
        default_factory=lambda: {"cub": "bird", "dogs": "dog", "cars": "car", "h36m": "person"},
        description="Object word per dataset (the token whose attention map is read).",
    )
    box_tolerance: float = Field(
        2.0, ge=0, description="Pixels a box may exceed the image by and still be clipped instead of skipped."
    )
    h36m_train_subjects: list[int] = Field(
        default_factory=lambda: [1, 5, 6, 7, 8], description="Human3.6M subjects of the train split."
    )
    h36m_test_subjects: list[int] = Field(
        default_factory=lambda: [9, 11], description="Human3.6M subjects of the test split."
    )


class DataSettings(StrictModel):
    index: IndexSettings = Field(default_factory=IndexSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
    natural: NaturalSettings = Field(default_factory=NaturalSettings)
