"""Cheap validation of one image file at indexing time (DICOM header + pixel-data length, JPG/PNG header).

Why: a truncated or corrupt file should be caught once, when the index is built, and recorded in
``skipped.csv`` with a reason, not hours later in the middle of a training epoch. The checks read the
header only (and for DICOM the pixel data element's declared length, compared with the file size and
with ``Rows * Columns * BitsAllocated/8 * SamplesPerPixel``); pixels are not decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUPPORTED_PHOTOMETRIC", "ImageProbe", "probe_dicom", "probe_image", "probe_raster"]

SUPPORTED_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2")
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclass(frozen=True)
class ImageProbe:
    """Result of probing one file: ``ok`` with its size, or a short ``reason`` and a ``detail``."""

    ok: bool
    width: int = 0
    height: int = 0
    reason: str = ""
    detail: str = ""
    view_position: str = ""
    photometric: str = ""

    @classmethod
    def bad(cls, reason: str, detail: str = "") -> ImageProbe:
        return cls(ok=False, reason=reason, detail=detail)


def probe_image(path: str | os.PathLike[str]) -> ImageProbe:
    """Probe a DICOM (``.dcm``/``.dicom``) or raster (JPG/PNG) file; never raises for a bad file."""
    file = Path(path)
    try:
        if file.suffix.lower() in {".dcm", ".dicom"}:
            return probe_dicom(file)
        return probe_raster(file)
    except Exception as exc:  # a probe must never stop a batch: report the failure as a reason
        return ImageProbe.bad("unreadable image file", f"{type(exc).__name__}: {exc}")


def probe_dicom(path: Path) -> ImageProbe:
    """Header read with deferred pixel data, then the length checks described in the module doc."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    size = path.stat().st_size
    if size == 0:
        return ImageProbe.bad("empty file")
    try:
        ds = pydicom.dcmread(path, defer_size=256, force=False)
    except InvalidDicomError as exc:
        return ImageProbe.bad("not a DICOM file", str(exc))
    except Exception as exc:
        return ImageProbe.bad("unreadable DICOM (truncated or corrupt header)", f"{type(exc).__name__}: {exc}")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    view = str(ds.get("ViewPosition", "") or "").strip().upper()
    if _PIXEL_DATA not in ds:
        return ImageProbe.bad("DICOM has no pixel data", f"no (7FE0,0010) element in {size} bytes; truncated?")
    try:
        rows, columns = int(ds.Rows), int(ds.Columns)
    except (AttributeError, TypeError, ValueError):
        return ImageProbe.bad("DICOM has no valid Rows/Columns")
    if rows <= 0 or columns <= 0:
        return ImageProbe.bad("DICOM has no valid Rows/Columns", f"Rows={rows} Columns={columns}")
    if photometric not in SUPPORTED_PHOTOMETRIC:
        return ImageProbe.bad(
            "unsupported PhotometricInterpretation",
            f"{photometric or '<missing>'} (expected one of {', '.join(SUPPORTED_PHOTOMETRIC)})",
        )
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1:  # the loader (cxr_fgbg.data.transforms) reads single images only
        return ImageProbe.bad("multi-frame DICOM not supported", f"NumberOfFrames={frames}")
    element = ds.get_item(_PIXEL_DATA, keep_deferred=True)
    length = int(getattr(element, "length", 0) or 0)
    value_tell = getattr(element, "value_tell", None)
    if length == 0:
        return ImageProbe.bad("DICOM has no pixel data", "PixelData is empty")
    if length != _UNDEFINED_LENGTH:  # native (uncompressed) pixel data: lengths must agree
        bits = int(ds.get("BitsAllocated", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        expected = (rows * columns * samples * bits + 7) // 8
        if bits <= 0:
            return ImageProbe.bad("DICOM has no valid BitsAllocated")
        if length < expected:
            return ImageProbe.bad(
                "DICOM pixel data shorter than its header promises", f"{length} bytes < {expected} expected"
            )
        if value_tell is not None and int(value_tell) + length > size:
            return ImageProbe.bad(
                "truncated DICOM (pixel data runs past the end of the file)",
                f"needs {int(value_tell) + length} bytes, file has {size}",
            )
    elif element.value is None and value_tell is not None and int(value_tell) >= size:
        return ImageProbe.bad("truncated DICOM (pixel data runs past the end of the file)")
    return ImageProbe(ok=True, width=columns, height=rows, view_position=view, photometric=photometric)


def probe_raster(path: Path) -> ImageProbe:
    """PIL header + ``verify``; for JPEG also the end-of-image marker, which ``verify`` does not check."""
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size == 0:
        return ImageProbe.bad("empty file")
    try:
        with Image.open(path) as image:
            width, height = image.size
            fmt = image.format or ""
            mode = image.mode
            image.verify()
    except UnidentifiedImageError as exc:
        return ImageProbe.bad("not an image file", str(exc))
    except Exception as exc:
        return ImageProbe.bad("corrupt image file", f"{type(exc).__name__}: {exc}")
    if width <= 0 or height <= 0:
        return ImageProbe.bad("image has zero size")
    if fmt == "JPEG":
        with path.open("rb") as handle:
            handle.seek(max(0, size - 64))
            tail = handle.read()
        if b"\xff\xd9" not in tail:
            return ImageProbe.bad("truncated JPEG (no end-of-image marker)")
    photometric = "MONOCHROME2" if mode in {"L", "I", "I;16", "F", "1"} else mode
    return ImageProbe(ok=True, width=width, height=height, photometric=photometric)


def probe_raster_size(path: Path) -> tuple[int, int]:
    """(width, height) of a raster or DICOM file from its header; raises on an unreadable file."""
    result = probe_image(path)
    if not result.ok:
        raise ValueError(f"{path}: {result.reason} {result.detail}".strip())
    return result.width, result.height
