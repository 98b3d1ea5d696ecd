"""Loading the images behind heat maps for report overlays (display only, never for scoring)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cxr_fgbg.io import recorded_image_root

__all__ = ["image_root_from_index", "load_display_image", "resolve_path"]

log = logging.getLogger(__name__)


def resolve_path(value: str, *bases: Path | None) -> Path | None:
    """The first existing file among `value` itself (if absolute) and `base / value` for each base."""
    if not value or value == "nan":
        return None
    path = Path(value)
    if path.is_absolute():
        return path if path.is_file() else None
    for base in bases:
        if base is not None and (base / path).is_file():
            return base / path
    return None


def image_root_from_index(index_dir: Path) -> Path | None:
    """The folder that an index's `image_path` values are relative to (its index.json's root, else the folder)."""
    return recorded_image_root(index_dir) or index_dir


def load_display_image(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The image as float `(H, W)` in [0, 1] at the heat map's shape, or None if it cannot be read.

    DICOM (MONOCHROME1 inverted) through pydicom, anything else through PIL. An image of another size
    is resized to the heat map's shape: the heat map is in original image coordinates.
    """
    from PIL import Image

    try:
        if path.suffix.lower() == ".dcm":
            import pydicom

            ds = pydicom.dcmread(path)
            pixels = ds.pixel_array.astype(np.float32)
            if str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
                pixels = pixels.max() - pixels
        else:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert("F"), dtype=np.float32)
    except Exception as exc:  # any unreadable image only costs the overlay its background
        log.warning("overlay image %s could not be read (%s); drawing the heat map alone", path, exc)
        return None
    if pixels.ndim != 2:
        pixels = pixels[..., 0] if pixels.ndim == 3 else None
        if pixels is None:
            return None
    if pixels.shape != tuple(shape):
        pixels = np.asarray(Image.fromarray(pixels).resize((shape[1], shape[0]), Image.Resampling.BILINEAR))
    lo, hi = float(pixels.min()), float(pixels.max())
    return (pixels - lo) / (hi - lo) if hi > lo else np.zeros_like(pixels)
