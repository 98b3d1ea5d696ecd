"""Box geometry for evaluation: rasterising (x, y, w, h) boxes, enclosing boxes, box sides.

One pixel rule everywhere: pixel (row r, column c) covers the square [c, c+1) x [r, r+1), and it belongs
to a box when it overlaps the box with positive area. Integer boxes therefore cover exactly columns
x .. x+w-1 and rows y .. y+h-1; fractional boxes (rescaled from another image size) include every pixel
they touch, so no box area is silently lost. Parts of a box outside the image are clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_boxes",
    "box_bounds",
    "box_masks",
    "box_side",
    "boxes_to_mask",
    "enclosing_box",
    "inclusive_box_iou",
    "normalise_boxes",
    "scale_boxes",
]

# Tolerance for rescaled float boxes: 10.0000001 must not reach into pixel 10's neighbour.
_EPS = 1e-6


def as_boxes(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boxes as a float64 `(n, 4)` array of (x, y, w, h); raises ValueError on a malformed input."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape (n, 4) as (x, y, w, h), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("boxes contain NaN or infinite coordinates")
    return arr


def _pixel_span(start: float, length: float, size: int) -> tuple[int, int]:
    """First and one-past-last pixel index overlapped by [start, start+length), clipped to [0, size)."""
    lo = math.floor(start + _EPS)
    hi = math.ceil(start + length - _EPS)
    return max(lo, 0), min(hi, size)


def box_bounds(box: Sequence[float] | np.ndarray, shape: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1), ends exclusive, of the pixels one box covers in an image of `shape`.

    None when the box covers no pixel of the image (zero size, or wholly outside).
    """
    x, y, w, h = (float(v) for v in box)
    c0, c1 = _pixel_span(x, w, int(shape[1]))
    r0, r1 = _pixel_span(y, h, int(shape[0]))
    return (r0, r1, c0, c1) if c1 > c0 and r1 > r0 else None


def boxes_to_mask(boxes: Sequence[Sequence[float]] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean `(H, W)` mask of the union of the boxes (pixel rule in the module docstring)."""
    mask = np.zeros((int(shape[0]), int(shape[1])), dtype=bool)
    for box in as_boxes(boxes):
        bounds = box_bounds(box, shape)
        if bounds is not None:
            mask[bounds[0] : bounds[1], bounds[2] : bounds[3]] = True
    return mask


def box_masks(boxes: Sequence[Sequence[float]] | np.ndarray, shape: tuple[int, int]) -> list[np.ndarray]:
    """One boolean mask per box (for per-box metrics such as the BioViL CNR)."""
    return [boxes_to_mask(box[None, :], shape) for box in as_boxes(boxes)]


def enclosing_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The smallest (x, y, w, h) holding every True pixel, with inclusive bounds (w = x_max - x_min + 1).

    None for an empty mask. Inclusive bounds matter: a one-pixel object has w = h = 1, not 0.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def inclusive_box_iou(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None) -> float:
    """IoU of two integer pixel boxes (x, y, w, h) counted in whole pixels.

    Both None (nothing predicted, nothing there): 1.0; exactly one None: 0.0.
    """
    if a is None and b is None:
        return 1.0
    if a is None or b is None:
        return 0.0
    ix = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    iy = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(ix, 0) * max(iy, 0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def scale_boxes(boxes: np.ndarray, from_size: tuple[float, float], to_size: tuple[float, float]) -> np.ndarray:
    """Rescale boxes from an image of (width, height) `from_size` to one of `to_size`."""
    arr = as_boxes(boxes).copy()
    sx = to_size[0] / from_size[0]
    sy = to_size[1] / from_size[1]
    arr[:, [0, 2]] *= sx
    arr[:, [1, 3]] *= sy
    return arr


def normalise_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Boxes in fractions of the image size, so a location prior applies to images of any size."""
    return scale_boxes(boxes, (width, height), (1.0, 1.0))


def box_side(boxes: np.ndarray, width: int) -> str | None:
    """'left' or 'right' when every box lies wholly in that half of the image (columns < W/2 or >= W/2).

    Image left, not patient left. None when a box crosses the vertical midline or there are no boxes.
    """
    arr = as_boxes(boxes)
    if arr.shape[0] == 0:
        return None
    mid = width / 2.0
    if np.all(arr[:, 0] + arr[:, 2] <= mid + _EPS):
        return "left"
    if np.all(arr[:, 0] >= mid - _EPS):
        return "right"
    return None
