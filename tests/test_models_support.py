"""Helpers for the models tests: a small index (studies.csv + DICOMs) shaped like `cxr-fgbg index` output.

Built here rather than with the phantom generator so the models tests do not depend on its evolution;
the images have chest-like structure (two dark lungs, a heart, findings) so a VAE has something to learn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

FINDINGS = [
    ("left pleural effusion.", "effusion"),
    ("right pleural effusion with adjacent atelectasis.", "effusion"),
    ("small right apical pneumothorax.", "pneumothorax"),
    ("moderate cardiomegaly.", "cardiomegaly"),
    ("right lower lobe consolidation concerning for pneumonia.", "consolidation"),
    ("patchy left basilar opacity.", "opacity"),
    ("mild pulmonary edema.", "edema"),
    ("no acute cardiopulmonary process.", None),
]


def _image(rng: np.random.Generator, kind: str | None, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    img = 0.6 + 0.03 * rng.standard_normal((h, w))
    lungs = np.zeros((h, w), bool)
    for cx in (0.3, 0.7):
        lungs |= ((xx - cx) / (0.16 + 0.03 * rng.random())) ** 2 + ((yy - 0.48) / 0.33) ** 2 < 1
    img[lungs] -= 0.35
    hr = 0.18 if kind == "cardiomegaly" else 0.11
    img[((xx - 0.47) / hr) ** 2 + ((yy - 0.62) / (hr * 0.8)) ** 2 < 1] = 0.65
    cx = 0.3 if rng.random() < 0.5 else 0.7
    if kind in {"effusion", "consolidation", "opacity", "edema"}:
        img[lungs & (np.abs(xx - cx) < 0.2) & (yy > 0.6)] += 0.3
    elif kind == "pneumothorax":
        img[lungs & (np.abs(xx - cx) < 0.2) & (yy < 0.3)] -= 0.15
    return np.clip(img, 0, 1)


def _write_dicom(path: Path, pixels: np.ndarray, monochrome1: bool) -> None:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    values = pixels * 4095
    if monochrome1:
        values = 4095 - values
    ds.PixelData = np.round(values).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def make_index(folder: Path, studies: int = 40, seed: int = 0, size: tuple[int, int] = (72, 64)) -> Path:
    """Write `folder/index/{studies.csv,index.json}` and DICOMs under `folder/mimic`; return the index folder."""
    rng = np.random.default_rng(seed)
    mimic, index = folder / "mimic", folder / "index"
    rows = []
    for i in range(studies):
        subject, study, dicom = f"1{i:07d}", f"5{i:07d}", f"d{i:04d}"
        sentence, kind = FINDINGS[i % len(FINDINGS)]
        rel = f"files/p1{i // 1000 % 10}/p{subject}/s{study}/{dicom}.dcm"
        _write_dicom(mimic / rel, _image(rng, kind, *size), monochrome1=(i % 5 == 0))
        split = "validate" if i % 10 == 9 else ("test" if i % 10 == 8 else "train")
        rows.append({
            "subject_id": subject, "study_id": study, "dicom_id": dicom, "image_path": rel,
            "view_position": "PA", "split": split, "impression": sentence, "findings": "",
            "text": sentence, "text_source": "impression",
        })
    index.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(index / "studies.csv", index=False)
    (index / "index.json").write_text(json.dumps({"mimic_root": str(mimic.resolve())}))
    return index


def quick_settings(**overrides):
    """Model settings small enough for a test: 32 px images, a few dozen steps."""
    from cxr_fgbg.models.settings import ModelSettings

    data = {
        "tokenizer": {"vocab_size": 120, "max_length": 24},
        "tiny": {"image_size": 32, "vae_block_out_channels": [16, 32], "unet_block_out_channels": [16, 32],
                 "unet_cross_attention_blocks": [True, True], "text_hidden_size": 32, "text_intermediate_size": 64},
        "text_pretraining": {"steps": 30, "batch_size": 16},
        "vae_training": {"steps": 15, "batch_size": 8},
    }
    for key, value in overrides.items():
        data[key] = {**data.get(key, {}), **value}
    return ModelSettings.model_validate(data)
