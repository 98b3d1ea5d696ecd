"""Refined masks M (eq. 5/6 of the paper) and the batch job that writes them.

    M = up(M_pre) AND g(|x - m'(z~_0, y_b)|)

The M_pre region is inpainted with the background prompt (`inpaint.inpaint_background`), the per-pixel
absolute difference to the input, averaged over channels, is binarised by the GMM rule + majority
filter (`gmm.binarize_gmm`), and ANDed with M_pre brought to the image by nearest-neighbour sampling
(no dilation). Optional closing / hole filling (`morphology`) are ANDed with M_pre again, so M never
leaves M_pre. The batch job reads the "Heat maps" files (npz with `mask_pre` in original coordinates
and the `geometry` record) and writes the "Masks" files (PNG in original coordinates, masks.csv,
skipped.csv); it resumes by keeping masks already written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import SkippedLog, read_table, recorded_image_root
from cxr_fgbg.masks.gmm import GmmMask, binarize_gmm
from cxr_fgbg.masks.morphology import close_and_fill
from cxr_fgbg.masks.settings import RefineSettings

__all__ = [
    "MASK_COLUMNS",
    "RefineRun",
    "RefinedMask",
    "export_masks",
    "load_heatmap_record",
    "mask_from_difference",
    "refine_masks",
    "resolve_table_path",
    "run_refine",
    "upsample_mask",
]

log = logging.getLogger(__name__)

MASK_COLUMNS = ("sample_id", "image_path", "mask_path", "mask_kind")
PASSTHROUGH_COLUMNS = ("dicom_id", "category_name", "concept", "split")
KIND_BY_METHOD = {"inpaint": "refined", "crop": "crop", "pre": "pre"}
# Skip reasons as fixed phrases, so skipped.csv and the log can count them (the paths are in its columns).
IMAGE_MISSING = "image file not found"
HEATMAP_MISSING = "heat-map file not found"


@dataclass(frozen=True)
class RefinedMask:
    """One refined mask and what it was made from (all at the same image size)."""

    mask: np.ndarray  # bool (H, W): M
    mask_pre: np.ndarray  # bool (H, W): M_pre at image size (nearest)
    difference: np.ndarray  # float32 (H, W): |x - reconstruction| averaged over channels
    reconstruction: np.ndarray  # float32 (C, H, W) in [0, 1]: the inpainting (or the flipped image)
    gmm: GmmMask

    @property
    def reason(self) -> str | None:
        """Why the difference could not be binarised (None when it could)."""
        return self.gmm.reason


def upsample_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bring a boolean mask to `hw` by nearest-neighbour sampling (integer factors: pure repetition)."""
    arr = np.asarray(mask, dtype=bool)
    if tuple(arr.shape) == tuple(hw):
        return arr.copy()
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(arr.astype(np.float32))[None, None]
    return F.interpolate(t, size=tuple(hw), mode="nearest-exact")[0, 0].numpy() > 0.5


def mask_from_difference(
    image: np.ndarray,
    reconstruction: np.ndarray,
    mask_pre: np.ndarray,
    valid: np.ndarray | None = None,
    seed: int = 0,
    majority_filter: bool = True,
    closing: bool = False,
    closing_radius: int = 2,
    fill_holes: bool = False,
) -> RefinedMask:
    """Eq. 6: GMM(|image - reconstruction| averaged over channels) AND M_pre (+ optional clean-up).

    `image` and `reconstruction` are (C, H, W) in [0, 1]; `mask_pre` is (H, W) or any coarser grid
    (upsampled by nearest); `valid` limits the GMM fit (padding excluded).
    """
    x = np.asarray(image, dtype=np.float32)
    r = np.asarray(reconstruction, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if r.ndim == 2:
        r = r[None]
    if x.shape != r.shape:
        raise ValueError(f"image {x.shape} and reconstruction {r.shape} differ in shape")
    difference = np.abs(x - r).mean(axis=0)
    pre = upsample_mask(mask_pre, difference.shape)
    gmm = binarize_gmm(difference, valid=valid, seed=seed, majority_filter=majority_filter)
    mask = gmm.mask & pre
    if closing or fill_holes:
        mask = close_and_fill(mask, closing=closing, radius=closing_radius, fill_holes=fill_holes) & pre
    return RefinedMask(mask, pre, difference, r, gmm)


def refine_masks(
    pipe,
    images: Any,
    masks_pre: Any,
    seeds: Sequence[int],
    settings: RefineSettings | None = None,
    valid: Any | None = None,
    gmm_seeds: Sequence[int] | None = None,
    majority_filter: bool = True,
    timer=None,
) -> list[RefinedMask]:
    """Refined masks M for a batch, in memory.

    `images`: (B, C, H, W) in [0, 1] at the model's input size (tensor or array); `masks_pre`: (B, H, W)
    at image size or on the latent grid; `seeds`: one noise seed per image; `valid`: optional (B, H, W)
    of pixels holding image content. Returns one `RefinedMask` per image at image size.
    """
    import torch

    from cxr_fgbg.masks.inpaint import inpaint_background

    settings = settings or RefineSettings()
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images).float()
    pre = np.asarray(masks_pre, dtype=bool)
    if pre.ndim == 2:
        pre = pre[None]
    if x.ndim != 4 or pre.shape[0] != x.shape[0]:
        raise ValueError(f"expected images (B, C, H, W) and masks (B, H, W), got {tuple(x.shape)} and {pre.shape}")
    image_pre = np.stack([upsample_mask(p, tuple(x.shape[-2:])) for p in pre])
    inpainted = inpaint_background(
        pipe, x, image_pre, settings.background_prompt, seeds,
        num_inference_steps=settings.num_inference_steps, eta=settings.eta, timer=timer,
    )
    gmm_seeds = list(gmm_seeds) if gmm_seeds is not None else [0] * x.shape[0]
    results = []
    for i in range(x.shape[0]):
        with _timed(timer, "difference + GMM"):
            results.append(mask_from_difference(
                x[i].numpy(), inpainted[i].numpy(), image_pre[i],
                valid=None if valid is None else np.asarray(valid[i], dtype=bool),
                seed=gmm_seeds[i], majority_filter=majority_filter, closing=settings.closing,
                closing_radius=settings.closing_radius, fill_holes=settings.fill_holes,
            ))
    return results


def _timed(timer, key: str):
    import contextlib

    return timer.time(key) if timer is not None else contextlib.nullcontext()


# --------------------------------------------------------------------------- files
def resolve_table_path(value: str, table: Path, roots: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """A path from a CSV cell: absolute as is, else the first existing of the table's folder, the
    `roots` given, and the roots recorded in an `index.json` beside the table."""
    path = Path(str(value))
    if path.is_absolute():
        return path
    candidates = [table.parent / path]
    candidates += [Path(root) / path for root in roots if root]
    recorded = recorded_image_root(table.parent)
    if recorded is not None:
        candidates.append(recorded / path)
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    return candidates[0]


@dataclass(frozen=True)
class HeatmapRecord:
    """What the refinement needs from one heat-map npz, in original image coordinates."""

    mask_pre: np.ndarray  # bool (H, W)
    geometry: Any  # cxr_fgbg.data.geometry.Geometry


def load_heatmap_record(npz_path: Path) -> HeatmapRecord:
    from cxr_fgbg.data.geometry import Geometry

    if not npz_path.is_file():
        raise InputDataError(f"{npz_path}: heat-map file not found")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            if "mask_pre" not in data:
                raise InputDataError(f"{npz_path}: no 'mask_pre' array")
            mask_pre = np.asarray(data["mask_pre"]) > 0
            geometry = Geometry.from_dict(data["geometry"]) if "geometry" in data else Geometry.identity(mask_pre.shape)
    except InputDataError:
        raise
    except Exception as exc:
        raise InputDataError(f"{npz_path}: not a readable heat-map file ({type(exc).__name__}: {exc})") from exc
    if mask_pre.ndim != 2 or tuple(mask_pre.shape) != tuple(geometry.original_hw):
        raise InputDataError(
            f"{npz_path}: mask_pre has shape {mask_pre.shape}, the geometry's original size is {geometry.original_hw}"
        )
    return HeatmapRecord(mask_pre, geometry)


def load_model_image(path: Path, geometry, channels: int,
                     percentiles: tuple[float, float] | None = (0.5, 99.5)) -> np.ndarray:
    """The image as the model saw it: [0, 1], (channels, h, w) through the heat map's own geometry."""
    from cxr_fgbg.data.transforms import ToChannelsd, read_image, scale_intensity

    array, full = read_image(path)
    if tuple(array.shape[:2]) != tuple(geometry.original_hw):
        raise InputDataError(
            f"{path}: image is {array.shape[:2]}, the heat map's geometry says {tuple(geometry.original_hw)}"
        )
    scaled = scale_intensity(array, percentiles, full)
    chw = scaled[None] if scaled.ndim == 2 else np.moveaxis(scaled, -1, 0)
    model = geometry.map_to_model_chw(chw, "bilinear")
    return np.asarray(ToChannelsd(("image",), channels)({"image": model})["image"], dtype=np.float32)


def write_mask_png(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    from cxr_fgbg.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8)).save(tmp, format="PNG")


def read_mask_png(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L")) > 127
    except Exception as exc:
        raise InputDataError(f"{path}: not a readable mask image ({type(exc).__name__}: {exc})") from exc


def _safe_id(sample_id: str) -> bool:
    return bool(sample_id) and "/" not in sample_id and "\\" not in sample_id and sample_id not in {".", ".."}


def export_masks(rows: list[dict[str, str]], out_dir: Path) -> Path:
    """Write masks.csv for `rows` (those whose PNG exists), columns MASK_COLUMNS + passthrough ones."""
    import pandas as pd

    from cxr_fgbg.io import write_csv_atomic

    columns = list(MASK_COLUMNS) + [c for c in PASSTHROUGH_COLUMNS if any(c in r for r in rows)]
    frame = pd.DataFrame([{c: r.get(c, "") for c in columns} for r in rows], columns=columns)
    path = out_dir / "masks.csv"
    write_csv_atomic(path, frame)
    return path


@dataclass(frozen=True)
class RefineRun:
    masks_csv: Path
    written: int
    kept: int
    skipped: int


def run_refine(
    heatmaps_csv: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    pipe=None,
    settings: RefineSettings | None = None,
    seed: int = 0,
    majority_filter: bool = True,
    percentiles: tuple[float, float] | None = (0.5, 99.5),
    image_root: str | os.PathLike[str] | None = None,
    show_progress: bool = True,
    timer=None,
) -> RefineRun:
    """The batch job: heatmaps.csv + npz -> OUT/masks/{sample_id}.png, OUT/masks.csv, OUT/skipped.csv.

    `settings.method`: 'inpaint' (M, needs `pipe`), 'crop' (M_crop) or 'pre' (M_pre exported as is,
    for the U-Net(M_pre) ablation). Masks already on disk are kept (resume).
    """
    from tqdm.auto import tqdm

    from cxr_fgbg.seeding import derive_seed

    settings = settings or RefineSettings()
    method = settings.method
    if method == "inpaint" and pipe is None:
        raise ValueError("method 'inpaint' needs a diffusion pipeline")
    table = Path(heatmaps_csv)
    frame = read_table(table, ("sample_id", "npz_path", "image_path"))
    out = Path(out_dir)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    skipped = SkippedLog(out / "skipped.csv")
    kind = KIND_BY_METHOD[method]
    channels = int(pipe.vae.config.in_channels) if pipe is not None else 0
    done_rows: list[dict[str, str]] = []
    pending: list[dict[str, Any]] = []
    written = kept = 0

    def row_record(row: dict[str, str], image_path: Path) -> dict[str, str]:
        rec = {"sample_id": row["sample_id"], "image_path": str(image_path),
               "mask_path": f"masks/{row['sample_id']}.png", "mask_kind": kind}
        rec.update({c: row[c] for c in PASSTHROUGH_COLUMNS if c in row})
        return rec

    def flush() -> None:
        nonlocal written
        if not pending:
            return
        batch = list(pending)
        pending.clear()
        try:
            if method == "inpaint":
                results = refine_masks(
                    pipe, np.stack([p["image"] for p in batch]), np.stack([p["pre_model"] for p in batch]),
                    seeds=[derive_seed(seed, "refine", p["row"]["sample_id"]) for p in batch],
                    settings=settings, valid=np.stack([p["valid"] for p in batch]),
                    gmm_seeds=[derive_seed(seed, "gmm", p["row"]["sample_id"]) for p in batch],
                    majority_filter=majority_filter, timer=timer,
                )
            else:
                from cxr_fgbg.masks.crop_ablation import crop_ablation_mask

                results = [crop_ablation_mask(
                    p["image"], p["pre_model"], valid=p["valid"], seed=derive_seed(seed, "gmm", p["row"]["sample_id"]),
                    majority_filter=majority_filter, settings=settings) for p in batch]
        except Exception as exc:  # one bad batch must not stop the job: record every member
            for p in batch:
                skipped.add(p["row"]["npz_path"], f"refinement failed: {type(exc).__name__}: {exc}",
                            sample_id=p["row"]["sample_id"], image_path=p["record"]["image_path"])
            return
        for p, result in zip(batch, results, strict=True):
            if result.reason is not None:
                skipped.add(p["row"]["npz_path"], f"difference not binarised: {result.reason}",
                            sample_id=p["row"]["sample_id"], image_path=p["record"]["image_path"])
                continue
            _write_original(p, result.mask)
            written += 1
            done_rows.append(p["record"])

    def _write_original(p: dict[str, Any], model_mask: np.ndarray) -> None:
        record: HeatmapRecord = p["heat"]
        back = record.geometry.map_to_original(model_mask.astype(np.float32), mode="nearest")
        mask = np.nan_to_num(back, nan=0.0) > 0.5
        write_mask_png(out / p["record"]["mask_path"], mask & record.mask_pre)

    rows = frame.to_dict("records")
    for row in tqdm(rows, desc=f"masks ({kind})", disable=not show_progress):
        sample_id = row["sample_id"]
        skipped.forget(sample_id=sample_id)  # an earlier run's reason is replaced by this run's outcome
        if not _safe_id(sample_id):
            skipped.add(row.get("npz_path", ""), f"sample_id {sample_id!r} cannot be a file name")
            continue
        image_path = resolve_table_path(row["image_path"], table, [image_root])
        record = row_record(row, image_path)
        if (out / record["mask_path"]).is_file():
            kept += 1
            done_rows.append(record)
            continue
        try:
            npz_path = resolve_table_path(row["npz_path"], table)
            if not npz_path.is_file():
                raise InputDataError(HEATMAP_MISSING)
            heat = load_heatmap_record(npz_path)
            if not heat.mask_pre.any():
                raise InputDataError("M_pre is empty: nothing to refine")
            if not image_path.is_file():
                raise InputDataError(IMAGE_MISSING)
            if method == "pre":
                write_mask_png(out / record["mask_path"], heat.mask_pre)
                written += 1
                done_rows.append(record)
                continue
            geometry = heat.geometry
            if settings.image_size is not None and tuple(geometry.model_hw) != (settings.image_size,) * 2:
                raise InputDataError(
                    f"the heat map was made at {geometry.model_hw}, masks.refine.image_size is {settings.image_size}"
                )
            image = load_model_image(image_path, geometry, channels or _image_channels(image_path), percentiles)
            pre_model = geometry.map_to_model(heat.mask_pre.astype(np.uint8), mode="nearest") > 0
            valid = geometry.valid_model_mask()
            if not (pre_model & valid).any():
                raise InputDataError("M_pre is empty inside the model window")
            if (valid & ~pre_model).sum() == 0:
                raise InputDataError("M_pre covers the whole image: no background to compare with")
        except InputDataError as exc:  # the reason is a fixed phrase where possible; paths go in columns
            skipped.add(row.get("npz_path", ""), str(exc), sample_id=sample_id, image_path=str(image_path))
            continue
        pending.append({"row": row, "record": record, "heat": heat, "image": image,
                        "pre_model": pre_model, "valid": valid})
        if len(pending) >= settings.batch_size:
            flush()
    flush()
    order = {sid: i for i, sid in enumerate(frame["sample_id"])}
    done_rows.sort(key=lambda r: order.get(r["sample_id"], 0))
    masks_csv = export_masks(done_rows, out)
    skipped.write()
    _log_skipped(skipped)
    return RefineRun(masks_csv, written, kept, len(skipped))


def _log_skipped(skipped: SkippedLog) -> None:
    """One warning with the count of each reason, however many samples were skipped."""
    if not len(skipped):
        return
    log.warning("refine: %s", skipped.summary())
    if IMAGE_MISSING in skipped.reasons():
        log.warning("refine: image paths are looked up beside the heat-map table, in --image-root (image_root) "
                    "and in the roots of an index.json beside the table; skipped.csv lists each image_path")


def _image_channels(path: Path) -> int:
    from cxr_fgbg.data.transforms import load_image

    return 1 if load_image(path).ndim == 2 else 3
