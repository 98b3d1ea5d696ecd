"""Writers of small MIMIC-CXR / MIMIC-CXR-JPG / MS-CXR trees for the data tests (no tests here)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough

 FINDINGS:

 Heart size is normal.

 IMPRESSION:

 {impression}
"""


def write_dicom(
    path: Path,
    rows: int = 40,
    columns: int = 32,
    photometric: str = "MONOCHROME2",
    view: str = "PA",
    with_pixels: bool = True,
    bits: int = 16,
) -> Path:
    """A small valid DICOM with uncompressed pixels (explicit VR little endian)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    # A UID derived from the file name: the same bytes on every run (a random UID varies in length).
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path.name)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.ViewPosition = view
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if with_pixels:
        dtype = np.uint16 if bits == 16 else np.uint8
        ds.PixelData = (np.arange(rows * columns) % 200).astype(dtype).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_jpg(path: Path, width: int = 32, height: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = (np.arange(width * height).reshape(height, width) % 255).astype(np.uint8)
    Image.fromarray(array, mode="L").save(path, format="JPEG", quality=90)
    return path


def image_rel(subject: int, study: int, dicom_id: str, ext: str) -> str:
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}/{dicom_id}.{ext}"


def report_rel(subject: int, study: int) -> str:
    return f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt"


def write_metadata(root: Path, rows: list[dict], gz: bool = False) -> None:
    """rows: dicom_id, subject_id, study_id, split, ViewPosition, Rows, Columns."""
    frame = pd.DataFrame(rows)
    split = frame[["dicom_id", "study_id", "subject_id", "split"]]
    meta = frame[["dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns"]]
    for name, table in (("split", split), ("metadata", meta)):
        target = root / f"mimic-cxr-2.0.0-{name}.csv"
        if gz:
            with gzip.open(str(target) + ".gz", "wt", newline="") as handle:
                table.to_csv(handle, index=False)
        else:
            table.to_csv(target, index=False)


def write_report(root: Path, subject: int, study: int, impression: str) -> Path:
    path = root / report_rel(subject, study)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(REPORT.format(impression=impression), encoding="utf-8")
    return path
