"""Files per second of `cxr-fgbg index` on a phantom tree of a few thousand studies.

Usage: python benchmarks/index_speed.py [--studies 3000] [--size 128] [--workers 1 2] [--kind dcm|jpg] [--synthetic]

Uses the phantom generator (`cxr_fgbg.data.phantom.generate_phantom`, DICOM) unless `--synthetic` or
`--kind jpg` is given or it is missing; otherwise writes a synthetic MIMIC-CXR-shaped tree itself
(small DICOMs or JPGs, one frontal image and report per study).
The header check does not read pixel data, so its speed hardly depends on the image size. Prints the
rate of the image checks alone and of the whole index build, for each worker count, from a cold start
(a fresh output folder, so the probe cache is empty) and for a rerun (cache hit).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_tree(root: Path, studies: int, size: int, kind: str) -> Path:
    from PIL import Image
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    rng = np.random.default_rng(0)
    rows = []
    pixels = rng.integers(0, 4096, size=(size, size), dtype=np.uint16)
    for k in range(studies):
        subject, study, dicom_id = 10000000 + k, 50000000 + k, f"{k:08x}-synthetic"
        folder = root / f"files/p{str(subject)[:2]}/p{subject}/s{study}"
        folder.mkdir(parents=True, exist_ok=True)
        if kind == "dcm":
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
            ds.Modality, ds.ViewPosition = "CR", "PA"
            ds.Rows, ds.Columns, ds.SamplesPerPixel = size, size, 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.PixelData = pixels.tobytes()
            ds.save_as(folder / f"{dicom_id}.dcm", enforce_file_format=True)
        else:
            Image.fromarray((pixels >> 4).astype(np.uint8)).save(folder / f"{dicom_id}.jpg", quality=90)
        (root / f"files/p{str(subject)[:2]}/p{subject}/s{study}.txt").write_text(
            " FINDINGS: Heart size is normal.\n\n IMPRESSION: No acute process.\n", encoding="utf-8"
        )
        rows.append({"dicom_id": dicom_id, "subject_id": subject, "study_id": study,
                     "split": "train" if k % 10 else "test", "ViewPosition": "PA", "Rows": size, "Columns": size})
    frame = pd.DataFrame(rows)
    frame[["dicom_id", "study_id", "subject_id", "split"]].to_csv(root / "mimic-cxr-2.0.0-split.csv", index=False)
    frame[["dicom_id", "subject_id", "study_id", "ViewPosition", "Rows", "Columns"]].to_csv(
        root / "mimic-cxr-2.0.0-metadata.csv", index=False
    )
    return root


def make_tree(base: Path, studies: int, size: int, kind: str, synthetic: bool) -> tuple[Path, str]:
    if synthetic:
        return synthetic_tree(base / "mimic", studies, size, kind), f"synthetic {kind}"
    try:
        from cxr_fgbg.data.phantom import generate_phantom  # type: ignore[attr-defined]
    except ImportError:
        generate_phantom = None
    if generate_phantom is not None and kind == "dcm":
        generate_phantom(base / "phantom", studies=studies, seed=0, size=size, progress=False)
        return base / "phantom" / "mimic-cxr", "phantom"
    return synthetic_tree(base / "mimic", studies, size, kind), f"synthetic {kind}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=3000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kind", choices=["dcm", "jpg"], default="dcm")
    parser.add_argument("--synthetic", action="store_true", help="Write a simple tree instead of the phantom.")
    args = parser.parse_args()

    from cxr_fgbg.data.mimic import build_index

    base = Path(tempfile.mkdtemp(prefix="cxr_fgbg_bench_"))
    try:
        start = time.perf_counter()
        root, label = make_tree(base, args.studies, args.size, args.kind, args.synthetic)
        took = time.perf_counter() - start
        print(f"tree: {label}, {args.studies} studies, size {args.size}, written in {took:.1f} s")
        for workers in args.workers:
            out = base / f"out_{workers}"
            cold = build_index(root, out, workers=workers, progress=False)
            warm = build_index(root, out, workers=workers, progress=False)
            print(
                f"workers={workers}: image checks {cold.images_probed / cold.probe_seconds:8.0f} files/s | "
                f"whole index {cold.images_on_disk / cold.seconds:8.0f} files/s ({cold.seconds:.1f} s) | "
                f"rerun with cache {warm.images_on_disk / warm.seconds:8.0f} files/s ({warm.seconds:.1f} s) | "
                f"rows {cold.studies_rows}, skipped {sum(cold.skipped.values())}"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
