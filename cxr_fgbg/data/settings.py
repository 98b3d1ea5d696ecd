"""Config section `data`: indexing of MIMIC-CXR / MS-CXR / natural images, and preprocessing."""

from pydantic import Field

from cxr_fgbg.settings_base import StrictModel


class IndexSettings(StrictModel):
    views: list[str] = Field(default_factory=lambda: ["PA", "AP"], description="View positions to keep.")
    keep_ms_cxr_patients: bool = Field(
        False, description="Keep MS-CXR patients in the train/validate rows (off: they are held out)."
    )
    workers: int = Field(2, ge=1, description="Parallel workers for scanning image files.")


class PreprocessSettings(StrictModel):
    image_size: int = Field(512, ge=8, description="Model input size: shorter side resized, then centre crop.")
    intensity_percentiles: tuple[float, float] = Field(
        (0.5, 99.5), description="Robust intensity scaling to [0, 1] between these percentiles."
    )
    cache_dir: str | None = Field(None, description="Cache of preprocessed images (None: no cache).")


class DataSettings(StrictModel):
    index: IndexSettings = Field(default_factory=IndexSettings)
    preprocess: PreprocessSettings = Field(default_factory=PreprocessSettings)
