"""Baseline heat maps that know no text: a centred Gaussian and a class-location prior.

They are scored on the same samples as the attention maps so a number can be read honestly: pixel AUROC
rewards anatomy, and a prior that only knows where a class usually sits scores high on it without ever
reading the report.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image

from cxr_fgbg.evaluation.boxes import as_boxes, boxes_to_mask

__all__ = ["BASELINE_NAMES", "ClassLocationPrior", "centred_gaussian"]

BASELINE_NAMES = ("centred_gaussian", "class_location")


def centred_gaussian(shape: tuple[int, int], sigma_fraction: float = 0.25) -> np.ndarray:
    """A Gaussian centred on the image centre, sigma = `sigma_fraction` of each side (float32 `(H, W)`).

    Centred on pixel centres ((W-1)/2, (H-1)/2) so it is exactly left-right symmetric: its side accuracy
    is 0.5 by construction.
    """
    height, width = int(shape[0]), int(shape[1])
    if sigma_fraction <= 0:
        raise ValueError("sigma_fraction must be positive")
    gy = np.exp(-0.5 * ((np.arange(height) - (height - 1) / 2.0) / (sigma_fraction * height)) ** 2)
    gx = np.exp(-0.5 * ((np.arange(width) - (width - 1) / 2.0) / (sigma_fraction * width)) ** 2)
    return np.outer(gy, gx).astype(np.float32)


class ClassLocationPrior:
    """The mean box mask of each class over training samples, on a square grid of normalised coordinates.

    `fit` takes (class, boxes in fractions of the image size) pairs; `predict` resizes the class's grid
    (bilinear) to any image shape, so training and test images need not share a size.
    """

    def __init__(self, resolution: int = 256) -> None:
        if resolution < 2:
            raise ValueError("resolution must be at least 2")
        self.resolution = int(resolution)
        self.grids_: dict[str, np.ndarray] = {}
        self.counts_: dict[str, int] = {}
        self._cache: dict[tuple[str, int, int], np.ndarray] = {}

    def fit(self, samples: Iterable[tuple[str, np.ndarray]]) -> ClassLocationPrior:
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        r = self.resolution
        for category, norm_boxes in samples:
            boxes = as_boxes(norm_boxes) * r
            if boxes.shape[0] == 0:
                continue
            grid = sums.setdefault(category, np.zeros((r, r), dtype=np.float64))
            grid += boxes_to_mask(boxes, (r, r))
            counts[category] = counts.get(category, 0) + 1
        self.grids_ = {c: (sums[c] / counts[c]).astype(np.float32) for c in sums}
        self.counts_ = counts
        self._cache.clear()
        return self

    @property
    def classes_(self) -> list[str]:
        return sorted(self.grids_)

    def predict(self, category: str, shape: tuple[int, int]) -> np.ndarray | None:
        """The prior map of `category` at `shape` (float32), or None if no training sample had that class."""
        grid = self.grids_.get(category)
        if grid is None:
            return None
        key = (category, int(shape[0]), int(shape[1]))
        cached = self._cache.get(key)
        if cached is None:
            image = Image.fromarray(grid).resize((key[2], key[1]), Image.Resampling.BILINEAR)
            cached = self._cache[key] = np.asarray(image, dtype=np.float32)
        return cached
