"""The foreground/background concept-distillation objective: the rectangle sampler and its dataset.

Per sample, with probability p the model learns full-image synthesis with the foreground prompt y_f;
otherwise it learns to inpaint a random rectangle of BACKGROUND with y_b, the loss restricted to the
background pixels inside the rectangle. A model trained this way fills a foreground region with
plausible background, which is what the mask refinement needs (METHOD.md, "Fine-tuning for
foreground / background generation").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.seeding import numpy_rng
from cxr_fgbg.training.settings import FgbgSettings, RectangleSettings

__all__ = [
    "ConceptMaskDataset",
    "RectangleSample",
    "mask_to_latent_grid",
    "sample_background_rectangle",
]

# Reasons a candidate rectangle is rejected, in the order the rules are checked.
REJECT_SMALL_SIDE = "side_too_small"
REJECT_SMALL_AREA = "area_too_small"
REJECT_LARGE_SIDES = "both_sides_too_large"
REJECT_LARGE_AREA = "area_too_large"
REJECT_FOREGROUND = "too_little_background"


@dataclass
class RectangleSample:
    """The loss mask of one background-inpainting sample and how it was found.

    `kind` is "rectangle" (a candidate passed every rule), "whole_background" (max_tries rejections)
    or "empty" (no background pixel: the sample contributes nothing). `box` is (top, left, bottom,
    right), inclusive, for a rectangle.
    """

    mask: np.ndarray
    kind: str
    box: tuple[int, int, int, int] | None = None
    tries: int = 0
    rejections: Counter = field(default_factory=Counter)


def rejection_reason(box: tuple[int, int, int, int], background: np.ndarray, rules: RectangleSettings) -> str | None:
    """The first rule a candidate rectangle breaks, or None when it is acceptable."""
    top, left, bottom, right = box
    height, width = bottom - top + 1, right - left + 1
    area = height * width
    if min(height, width) <= rules.min_side:
        return REJECT_SMALL_SIDE
    if area < rules.min_area:
        return REJECT_SMALL_AREA
    if height > rules.max_side and width > rules.max_side:
        return REJECT_LARGE_SIDES
    if area > rules.max_area:
        return REJECT_LARGE_AREA
    if background[top : bottom + 1, left : right + 1].mean() < rules.min_background_fraction:
        return REJECT_FOREGROUND
    return None


def sample_background_rectangle(
    background: np.ndarray, rng: np.random.Generator, rules: RectangleSettings | None = None
) -> RectangleSample:
    """Draw the paper's background rectangle on a latent-grid background mask (True = background).

    Two background pixels drawn uniformly (with replacement) are opposite corners; the candidate is
    checked against `rules` (see `rejection_reason`); after `rules.max_tries` rejections the whole
    background is the mask. The mask is background AND rectangle: object pixels inside are excluded.
    """
    rules = rules or RectangleSettings()
    background = np.asarray(background, dtype=bool)
    if background.ndim != 2:
        raise ValueError(f"background must be a 2-D (H, W) mask, got shape {background.shape}")
    positions = np.flatnonzero(background)
    if positions.size == 0:
        return RectangleSample(mask=np.zeros_like(background), kind="empty")
    rejections: Counter = Counter()
    width = background.shape[1]
    for attempt in range(1, rules.max_tries + 1):
        first, second = positions[rng.integers(0, positions.size, size=2)]
        (y0, x0), (y1, x1) = divmod(int(first), width), divmod(int(second), width)
        box = (min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1))
        reason = rejection_reason(box, background, rules)
        if reason is None:
            mask = np.zeros_like(background)
            mask[box[0] : box[2] + 1, box[1] : box[3] + 1] = True
            return RectangleSample(mask & background, "rectangle", box, attempt, rejections)
        rejections[reason] += 1
    return RectangleSample(background.copy(), "whole_background", None, rules.max_tries, rejections)


def mask_to_latent_grid(foreground: np.ndarray, latent_hw: tuple[int, int]) -> np.ndarray:
    """Foreground at model resolution -> latent grid; a latent pixel touching any foreground is foreground.

    Erring towards foreground keeps object pixels out of the background loss (the GMM already
    over-estimates the object for the same reason).
    """
    tensor = torch.as_tensor(np.asarray(foreground, dtype=np.float32))[None, None]
    pooled = torch.nn.functional.adaptive_max_pool2d(tensor, tuple(latent_hw))
    return pooled[0, 0].numpy() > 0.5


def _resolve(path_text: str, root: Path) -> Path:
    path = Path(path_text)
    return path if path.is_absolute() else root / path


class ConceptMaskDataset(torch.utils.data.Dataset):
    """A concept CSV (`image_path, mask_path` and `prompt` and/or `concept`) as fg/bg training samples.

    `mask_path` is a PNG in image coordinates (non-zero = foreground, the preliminary mask M_pre).
    `percentiles`: None scales natural images by bit depth; (0.5, 99.5) for chest X-rays.
    Item `key` may exceed len(self): the row is `key % len`, and the random draws (foreground or
    background, the rectangle) are seeded by the whole key, so every epoch draws afresh but
    reproducibly (the same key gives the same sample on resume).
    """

    accepts_keys = True

    def __init__(
        self,
        rows: list[dict[str, Any]],
        image_root: Path,
        mask_root: Path,
        tokenizer: Any,
        size: int,
        channels: int,
        latent_hw: tuple[int, int],
        settings: FgbgSettings,
        seed: int,
        percentiles: tuple[float, float] | None = None,
    ) -> None:
        self.rows = rows
        self.image_root, self.mask_root = Path(image_root), Path(mask_root)
        self.tokenizer, self.size, self.channels = tokenizer, size, channels
        self.latent_hw = tuple(latent_hw)
        self.settings, self.seed, self.percentiles = settings, seed, percentiles
        self.foreground_texts = [self.foreground_prompt(row) for row in rows]

    def foreground_prompt(self, row: dict[str, Any]) -> str:
        prompt = str(row.get("prompt") or "").strip()
        if prompt:
            return prompt
        concept = str(row.get("concept") or "").strip()
        if not concept:
            raise InputDataError(f"row {row.get('image_path')!r}: needs a non-empty `prompt` or `concept`")
        return self.settings.foreground_prompt.format(concept=concept)

    @property
    def texts(self) -> list[str]:
        return [*self.foreground_texts, self.settings.background_prompt]

    def __len__(self) -> int:
        return len(self.rows)

    def image_path(self, key: int) -> Path:
        return _resolve(str(self.rows[key % len(self.rows)]["image_path"]), self.image_root)

    def load_pixels(self, key: int) -> torch.Tensor:
        """The image as (C, size, size) in [-1, 1] (the data layer's preprocessing: crop, never flipped)."""
        from cxr_fgbg.data.transforms import preprocess_file

        image, _ = preprocess_file(self.image_path(key), self.size, self.percentiles, self.channels, "crop")
        return image * 2.0 - 1.0

    def background_latent(self, key: int) -> np.ndarray:
        """The row's M_pre on the latent grid, inverted: True = background."""
        from cxr_fgbg.data.geometry import Geometry

        row = self.rows[key % len(self.rows)]
        mask = _read_png(_resolve(str(row["mask_path"]), self.mask_root), "L") > 0
        geometry = Geometry.resize_shorter_and_center_crop(mask.shape, self.size)
        foreground = geometry.map_to_model(mask.astype(np.float32), "bilinear") > 0.5
        return ~mask_to_latent_grid(foreground, self.latent_hw)

    def text_item(self, key: int) -> dict[str, Any]:
        """Everything of an item but the pixels (used with the latent cache)."""
        rng = numpy_rng(self.seed, "fgbg", key)
        row_index = key % len(self.rows)
        if rng.random() < self.settings.p_foreground:
            text, kind = self.foreground_texts[row_index], "foreground"
            loss_mask = np.ones(self.latent_hw, dtype=bool)
        else:
            sample = sample_background_rectangle(self.background_latent(key), rng, self.settings.rectangle)
            text, kind, loss_mask = self.settings.background_prompt, sample.kind, sample.mask
        ids = self.tokenizer(
            text, padding="max_length", truncation=True, max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids[0]
        return {
            "input_ids": ids,
            "text": text,
            "kind": kind,
            "loss_mask": torch.from_numpy(loss_mask.astype(np.float32))[None],
            "index": row_index,
        }

    def __getitem__(self, key: int) -> dict[str, Any]:
        item = self.text_item(key)
        item["pixel_values"] = self.load_pixels(key)
        return item


def _read_png(path: Path, mode: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert(mode), dtype=np.float32)


def load_concept_rows(
    csv_path: Path, image_root: Path, mask_root: Path, skipped: Any | None = None
) -> list[dict[str, Any]]:
    """Read and check the concept CSV; rows with a missing or mismatched file go to `skipped`."""
    import pandas as pd
    from PIL import Image

    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputDataError(f"concept CSV not found: {csv_path}")
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    if not ({"prompt", "concept"} & set(frame.columns)) and "category_name" in frame.columns:
        # `cxr-fgbg refine`'s masks.csv names the class in category_name (the concept for a natural index)
        frame["concept"] = frame["category_name"]
    missing = {"image_path", "mask_path"} - set(frame.columns)
    if missing or not ({"prompt", "concept"} & set(frame.columns)):
        raise InputDataError(
            f"{csv_path}: needs columns image_path, mask_path and prompt or concept (or category_name, as in "
            f"refine's masks.csv); has {list(frame.columns)}"
        )
    rows = []
    for number, row in enumerate(frame.to_dict("records"), start=2):
        image, mask = _resolve(row["image_path"], image_root), _resolve(row["mask_path"], mask_root)
        reason = None
        if not row["mask_path"]:
            reason = "no preliminary mask"
        elif not image.is_file():
            reason = "image file not found"
        elif not mask.is_file():
            reason = f"mask file not found: {mask}"
        else:
            try:
                with Image.open(mask) as b:
                    mask_size = b.size
                if image.suffix.lower() not in (".dcm", ".dicom"):  # DICOM sizes are checked on reading
                    with Image.open(image) as a:
                        if a.size != mask_size:
                            reason = f"mask size {mask_size} differs from image size {a.size}"
            except OSError as exc:
                reason = f"unreadable: {exc}"
        if reason is None and not (str(row.get("prompt", "")).strip() or str(row.get("concept", "")).strip()):
            reason = f"line {number}: empty prompt and concept"
        if reason is not None:
            if skipped is None:
                raise InputDataError(f"{csv_path} line {number}: {reason} ({image})")
            skipped.add(image, reason)
            continue
        rows.append(row)
    if not rows:
        raise InputDataError(f"{csv_path}: no usable rows (see skipped.csv)")
    return rows
