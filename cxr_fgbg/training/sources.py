"""The two training inputs as datasets: an index folder (studies.csv) or a concept CSV with M_pre masks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import recorded_image_root

__all__ = ["concept_dataset", "impression_dataset", "latent_grid"]


def latent_grid(pipeline: Any, size: int) -> tuple[int, int]:
    """Latent size for `size`-pixel images: the VAE halves the size once per block after the first."""
    factor = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
    return size // factor, size // factor


def impression_dataset(
    index_dir: str | os.PathLike[str], tokenizer: Any, size: int, channels: int,
    percentiles: tuple[float, float] | None = (0.5, 99.5), cache_dir: str | None = None, split: str = "train",
    skipped: Any | None = None,
) -> Any:
    """The `split` rows of `index_dir/studies.csv` with their conditioning `text` (RoentGen-style).

    Rows without text are left out and recorded in `skipped` (they would train the unconditional model only).
    """
    from cxr_fgbg.data.cache import PreprocessedCache
    from cxr_fgbg.data.datasets import ImageTextDataset, resolve_root
    from cxr_fgbg.io import read_table

    studies = Path(index_dir) / "studies.csv"
    frame = read_table(studies, ["image_path", "split", "text"])
    frame = frame[frame["split"] == split]
    empty = frame["text"].str.strip() == ""
    if skipped is not None:
        for path in frame.loc[empty, "image_path"]:
            skipped.add(path, "no conditioning text (impression, findings and last paragraph all empty)")
    frame = frame[~empty].reset_index(drop=True)
    if frame.empty:
        raise InputDataError(f"{studies}: no {split!r} rows with a non-empty text")
    dataset = ImageTextDataset(
        frame, resolve_root(studies, None), tokenizer, size=size,
        cache=PreprocessedCache(cache_dir) if cache_dir else None, percentiles=percentiles, channels=channels,
    )
    dataset.texts = frame["text"].tolist()
    dataset.fingerprint = frame["image_path"].tolist()
    return dataset


def concept_dataset(
    csv_path: str | os.PathLike[str], tokenizer: Any, size: int, channels: int, latent_hw: tuple[int, int],
    settings: Any, seed: int, image_root: str | None = None, mask_root: str | None = None,
    skipped: Any | None = None,
) -> Any:
    """A concept CSV for the fg/bg objective; image paths relative to `image_root` (default: the
    `root`/`mimic_root` of an index.json beside the CSV, else the CSV's folder), masks to `mask_root`
    (default: the CSV's folder)."""
    from cxr_fgbg.training.fgbg import ConceptMaskDataset, load_concept_rows

    csv_path = Path(csv_path)
    if image_root is None:
        image_root = recorded_image_root(csv_path.parent, strict=True) or csv_path.parent
    mask_root = mask_root or str(csv_path.parent)
    rows = load_concept_rows(csv_path, Path(image_root), Path(mask_root), skipped)
    dataset = ConceptMaskDataset(
        rows, Path(image_root), Path(mask_root), tokenizer, size, channels, latent_hw, settings.fgbg, seed,
        percentiles=settings.fgbg.percentiles,
    )
    dataset.fingerprint = [(r["image_path"], r["mask_path"]) for r in rows]
    return dataset
