"""Real DICOM files for the phantom: 16-bit storage, 12 bits stored, MONOCHROME2 or MONOCHROME1.

No value comes from the clock or from random UUIDs: every UID is derived from the phantom's seed
and the image's identity, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
IMPLEMENTATION_UID = generate_uid(entropy_srcs=["cxr-fgbg phantom implementation"])
MAX_VALUE = 4095  # 12 bits stored


def derived_uid(*parts: object) -> str:
    """A valid, deterministic UID (2.25.<int>) from the given parts."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


@dataclass(frozen=True)
class DicomHeader:
    """What the DICOM header says about one image (kept consistent with the MIMIC CSVs)."""

    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    view_position: str  # PA | AP | LATERAL
    pixel_spacing: float  # mm
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS.ffffff
    patient_sex: str
    monochrome1: bool
    study_id: str
    accession: str


def dicom_bytes(pixels: np.ndarray, header: DicomHeader) -> bytes:
    """Encode `pixels` (uint16, 0..4095, bright = dense) as a DICOM file.

    MONOCHROME1 files store the inverted value (4095 - v), as such scanners do, so a reader must
    look at PhotometricInterpretation to get bright bones back.
    """
    if pixels.dtype != np.uint16 or pixels.ndim != 2:
        raise ValueError("pixels must be a 2-D uint16 array")
    stored = (MAX_VALUE - pixels).astype(np.uint16) if header.monochrome1 else pixels
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = header.sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = header.sop_uid
    ds.StudyInstanceUID = header.study_uid
    ds.SeriesInstanceUID = header.series_uid
    ds.PatientID = header.patient_id
    ds.PatientName = "PHANTOM^" + header.patient_id
    ds.PatientSex = header.patient_sex
    ds.StudyDate = header.study_date
    ds.StudyTime = header.study_time
    ds.StudyID = header.study_id
    ds.AccessionNumber = header.accession
    ds.Modality = "DX"
    ds.Manufacturer = "cxr-fgbg phantom"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = header.view_position
    ds.PatientOrientation = ["P", "F"] if header.view_position == "LATERAL" else ["L", "F"]
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.PixelSpacing = [f"{header.pixel_spacing:.6f}", f"{header.pixel_spacing:.6f}"]
    ds.ImagerPixelSpacing = ds.PixelSpacing
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]  # lets MONAI build an affine without a warning
    ds.ImagePositionPatient = [0, 0, 0]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if header.monochrome1 else "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def read_display(path: str) -> np.ndarray:
    """Read a phantom DICOM back as bright-is-dense values (MONOCHROME1 inverted), rescale applied."""
    import pydicom

    ds = pydicom.dcmread(path)
    values = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        values = float(2 ** int(ds.BitsStored) - 1) - values
    return values
