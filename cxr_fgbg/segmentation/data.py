"""Tables and MONAI dictionary transforms of the segmentation stage.

Protocol of the paper: the shorter side is resized to `resize` (default = crop size), then a random
`crop_size` square is cut for training and the centre square at inference. Images go through the data
stage's own loader and intensity scaling (`cxr_fgbg.data.transforms`) and one `Geometry` record, so the
prediction maps back to the original image exactly. Nothing here flips an image: chest X-ray laterality
is part of the report.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import MapTransform

from cxr_fgbg.data.geometry import Geometry
from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import read_table
from cxr_fgbg.masks.refine import read_mask_png, resolve_table_path

__all__ = [
    "LoadMaskd",
    "ResizeShorterd",
    "SegRecord",
    "TrainCrop",
    "inference_geometry",
    "load_prepared",
    "read_records",
    "shorter_side_geometry",
    "train_crop",
]


@dataclass(frozen=True)
class SegRecord:
    sample_id: str
    image: Path
    mask: Path | None
    split: str
    extra: dict[str, str]


def read_records(
    tables: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    need_masks: bool = True,
    splits: Sequence[str] | None = None,
    image_root: str | os.PathLike[str] | None = None,
) -> list[SegRecord]:
    """Rows of one or more masks.csv / samples.csv files (`sample_id, image_path[, mask_path, split]`).

    With `splits`, rows whose `split` column is not listed are left out (a table without the column
    is used whole). Paths are resolved against the table's folder, `image_root` and its index.json.
    """
    paths = [tables] if isinstance(tables, (str, os.PathLike)) else list(tables)
    records: list[SegRecord] = []
    for table in map(Path, paths):
        frame = read_table(table, ("sample_id", "image_path") + (("mask_path",) if need_masks else ()))
        for row in frame.to_dict("records"):
            split = row.get("split", "")
            if splits is not None and "split" in frame.columns and split not in splits:
                continue
            mask = row.get("mask_path", "")
            records.append(SegRecord(
                sample_id=row["sample_id"],
                image=resolve_table_path(row["image_path"], table, [image_root]),
                mask=resolve_table_path(mask, table) if mask else None,
                split=split,
                extra={k: v for k, v in row.items() if k in ("dicom_id", "category_name", "concept")},
            ))
    return records


def shorter_side_geometry(original_hw: tuple[int, int], resize: int, crop: int | None = None) -> Geometry:
    """Shorter side resized to `resize` (aspect kept); with `crop`, the centre `crop` square of it."""
    height, width = (int(v) for v in original_hw)
    scale = resize / min(height, width)
    resized = (resize, max(1, round(width * scale))) if height <= width else (max(1, round(height * scale)), resize)
    if crop is None:
        return Geometry((height, width), resized, 0, 0, resized)
    return Geometry((height, width), resized, (resized[0] - crop) // 2, (resized[1] - crop) // 2, (crop, crop))


def inference_geometry(original_hw: tuple[int, int], resize: int, crop: int, mode: str) -> Geometry:
    return shorter_side_geometry(original_hw, resize, crop if mode == "center_crop" else None)


class LoadMaskd(MapTransform):
    """{key: PNG path} -> {key: (1, H, W) float32 in {0, 1}}."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = read_mask_png(Path(d[key])).astype(np.float32)[None]
        return d


class ResizeShorterd(MapTransform):
    """Resize image (bilinear) and mask (nearest) so the shorter side is `size`, through one Geometry."""

    def __init__(self, size: int, image_key: str = "image", mask_key: str = "label") -> None:
        super().__init__([image_key, mask_key], allow_missing_keys=True)
        self.size, self.image_key, self.mask_key = int(size), image_key, mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = np.asarray(d[self.image_key])
        geometry = shorter_side_geometry(tuple(image.shape[-2:]), self.size)
        d[self.image_key] = geometry.map_to_model_chw(image, "bilinear")
        if self.mask_key in d:
            mask = np.asarray(d[self.mask_key])
            if tuple(mask.shape[-2:]) != tuple(image.shape[-2:]):
                where = d.get("label_path", "mask")
                raise InputDataError(
                    f"{where}: mask is {tuple(mask.shape[-2:])}, image is {tuple(image.shape[-2:])}"
                )
            d[self.mask_key] = geometry.map_to_model_chw(mask, "nearest")
        return d


def load_prepared(record: SegRecord, resize: int, channels: int | None,
                  percentiles: tuple[float, float] | None) -> dict[str, Any]:
    """The deterministic part (load, scale, channels, resize), done once per image and kept in memory."""
    from cxr_fgbg.data.transforms import LoadImaged, ScaleIntensityd, ToChannelsd

    steps: list[Any] = [LoadImaged(("image",)), ScaleIntensityd(("image",), percentiles)]
    if channels is not None:
        steps.append(ToChannelsd(("image",), channels))
    data: dict[str, Any] = {"image": str(record.image)}
    if record.mask is not None:
        steps.append(LoadMaskd(("label",)))
        data["label"] = str(record.mask)
        data["label_path"] = str(record.mask)
    steps.append(ResizeShorterd(resize))
    out: dict[str, Any] = data
    for step in steps:  # applied one by one, not through Compose, which hides InputDataError in a RuntimeError
        out = step(out)
    return {k: np.ascontiguousarray(out[k], dtype=np.float32) for k in ("image", "label") if k in out}


class TrainCrop:
    """Pad, then one random `crop_size` square per call; `set_random_state` seeds it (resume replays it)."""

    def __init__(self, transforms: Any) -> None:
        self.transforms = transforms

    def set_random_state(self, seed: int | None = None) -> TrainCrop:
        self.transforms.set_random_state(seed=seed)
        return self

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        out = self.transforms(data)
        return out[0] if isinstance(out, list) else out  # RandCropByPosNegLabeld returns a list of samples


def train_crop(crop_size: int, sampling: str = "uniform", foreground_fraction: float = 0.5) -> TrainCrop:
    """The random part: pad if needed, then a random `crop_size` square (no flips, no rotations).

    `uniform` (paper): the square's position is uniform (MONAI `RandSpatialCropd`). `foreground`: with
    probability `foreground_fraction` the square is centred on a random mask pixel, otherwise on a
    background pixel (MONAI `RandCropByPosNegLabeld`; moved inward at the border, so the chosen pixel stays
    inside), which keeps sparse masks from being cropped away. A mask without foreground gets a
    background-centred square.
    """
    from monai.transforms import Compose, RandCropByPosNegLabeld, RandSpatialCropd, SpatialPadd

    keys = ["image", "label"]
    size = (crop_size, crop_size)
    if sampling == "foreground":
        cropper: Any = RandCropByPosNegLabeld(keys, "label", size, pos=foreground_fraction,
                                              neg=1.0 - foreground_fraction, num_samples=1)
    elif sampling == "uniform":
        cropper = RandSpatialCropd(keys, roi_size=size, random_size=False)
    else:
        raise ValueError(f"unknown crop sampling {sampling!r}: use uniform or foreground")
    return TrainCrop(Compose([SpatialPadd(keys, spatial_size=size), cropper]))
