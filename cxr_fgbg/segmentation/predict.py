"""Prediction with a trained U-Net: masks in original image coordinates, in the "Masks" format."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError

__all__ = ["PredictRun", "predict_image", "run_predict"]


def predict_image(network, image: np.ndarray, settings, device=None) -> np.ndarray:
    """Bool (H, W) mask of a [0, 1] (C, H, W) image, in the image's own coordinates.

    center_crop (paper): shorter side resized, centre crop predicted, the rest is background;
    sliding_window: the whole resized image, in crop-sized windows (MONAI `sliding_window_inference`).
    """
    import torch
    from monai.inferers import sliding_window_inference

    from cxr_fgbg.segmentation.data import inference_geometry

    chw = np.asarray(image, dtype=np.float32)
    resize = settings.resize or settings.crop_size
    geometry = inference_geometry(tuple(chw.shape[-2:]), resize, settings.crop_size, settings.inference)
    model_in = torch.from_numpy(np.ascontiguousarray(geometry.map_to_model_chw(chw, "bilinear")))[None]
    device = device or next(network.parameters()).device
    with torch.no_grad():
        if settings.inference == "sliding_window":
            roi = (settings.crop_size, settings.crop_size)
            logits = sliding_window_inference(model_in.to(device), roi, 4, network, overlap=0.25)
        else:
            logits = network(model_in.to(device))
    prob = torch.sigmoid(torch.as_tensor(logits).float())[0, 0].cpu().numpy()
    model_mask = (prob > settings.threshold).astype(np.float32)
    model_mask[~geometry.valid_model_mask()] = 0.0
    back = geometry.map_to_original(model_mask, mode="nearest")
    return np.nan_to_num(back, nan=0.0) > 0.5


@dataclass(frozen=True)
class PredictRun:
    masks_csv: Path
    written: int
    kept: int
    skipped: int


def run_predict(
    model_path: str | os.PathLike[str],
    table: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    splits: list[str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
    overrides: dict[str, Any] | None = None,
    device: str = "auto",
    show_progress: bool = True,
) -> PredictRun:
    """Predict masks for the rows of `table` (any CSV with sample_id, image_path): OUT/masks/*.png,
    OUT/masks.csv (mask_kind 'unet'), OUT/skipped.csv. `overrides` may change threshold / inference."""
    from tqdm.auto import tqdm

    from cxr_fgbg.data.transforms import ToChannelsd, read_image, scale_intensity
    from cxr_fgbg.io import SkippedLog
    from cxr_fgbg.masks.refine import export_masks, write_mask_png
    from cxr_fgbg.segmentation.data import read_records
    from cxr_fgbg.segmentation.network import resolve_device
    from cxr_fgbg.segmentation.train import load_segmenter

    network, meta = load_segmenter(model_path, device="cpu")
    network.to(resolve_device(device))
    settings = meta["settings"]
    if overrides:
        settings = settings.model_copy(update=overrides)
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    skipped = SkippedLog(out / "skipped.csv")
    rows: list[dict[str, str]] = []
    written = kept = 0
    for record in tqdm(read_records(table, need_masks=False, splits=splits, image_root=image_root),
                       desc="U-Net prediction", disable=not show_progress):
        rec = {"sample_id": record.sample_id, "image_path": str(record.image),
               "mask_path": f"masks/{record.sample_id}.png", "mask_kind": "unet", "split": record.split,
               **record.extra}
        target = out / rec["mask_path"]
        if target.is_file():
            kept += 1
            rows.append(rec)
            continue
        try:
            array, full = read_image(record.image)
            scaled = scale_intensity(array, settings.intensity_percentiles, full)
            chw = scaled[None] if scaled.ndim == 2 else np.moveaxis(scaled, -1, 0)
            chw = ToChannelsd(("image",), meta["in_channels"])({"image": chw})["image"]
            mask = predict_image(network, chw, settings)
        except InputDataError as exc:
            skipped.add(record.image, str(exc), sample_id=record.sample_id)
            continue
        write_mask_png(target, mask)
        written += 1
        rows.append(rec)
    path = export_masks(rows, out)
    skipped.write()
    return PredictRun(path, written, kept, len(skipped))
