"""The simple-inpainting ablation M_crop (supplement section 5).

Instead of a diffusion inpainting, the M_pre region is filled with real background: of the four
strips of the image outside M_pre's bounding box (above, below, left, right; wholly background by
construction) the largest is mirrored across the box edge into the box, repeating by reflection if
the strip is thinner than the box. Only M_pre's pixels are replaced. Then the same difference + GMM
+ AND with M_pre as for M (`refine.mask_from_difference`).
"""

from __future__ import annotations

import numpy as np

from cxr_fgbg.masks.refine import RefinedMask, mask_from_difference
from cxr_fgbg.masks.settings import RefineSettings

__all__ = ["background_strip", "crop_ablation_mask", "flip_background_in"]


def background_strip(mask_pre: np.ndarray) -> tuple[str, int] | None:
    """The side ('top', 'bottom', 'left', 'right') of the largest background strip and its thickness.

    None when M_pre is empty or its bounding box covers the whole image. Ties go in that order.
    """
    m = np.asarray(mask_pre, dtype=bool)
    if not m.any():
        return None
    height, width = m.shape
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    strips = [("top", r0, r0 * width), ("bottom", height - r1, (height - r1) * width),
              ("left", c0, c0 * height), ("right", width - c1, (width - c1) * height)]
    side, thickness, area = max(strips, key=lambda s: s[2])  # max keeps the first of equal areas
    return None if area == 0 else (side, int(thickness))


def _reflect(distance: np.ndarray, length: int) -> np.ndarray:
    """Distance into a strip of `length` for a pixel `distance` past its edge (mirror, then repeat)."""
    k = np.mod(distance, 2 * length)
    return np.where(k < length, k, 2 * length - 1 - k)


def flip_background_in(image: np.ndarray, mask_pre: np.ndarray) -> np.ndarray | None:
    """(C, H, W) image with M_pre's pixels replaced by the mirrored largest background strip.

    None when there is no background strip (M_pre's box spans the image).
    """
    x = np.asarray(image, dtype=np.float32)
    m = np.asarray(mask_pre, dtype=bool)
    found = background_strip(m)
    if found is None:
        return None
    side, length = found
    height, width = m.shape
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rr, cc = np.arange(height), np.arange(width)
    if side == "top":
        src_r, src_c = np.clip(r0 - 1 - _reflect(rr - r0, length), 0, height - 1), cc
    elif side == "bottom":
        src_r, src_c = np.clip(r1 + _reflect(r1 - 1 - rr, length), 0, height - 1), cc
    elif side == "left":
        src_r, src_c = rr, np.clip(c0 - 1 - _reflect(cc - c0, length), 0, width - 1)
    else:
        src_r, src_c = rr, np.clip(c1 + _reflect(c1 - 1 - cc, length), 0, width - 1)
    flipped = x[:, src_r[:, None], src_c[None, :]]
    return np.where(m[None], flipped, x)


def crop_ablation_mask(
    image: np.ndarray,
    mask_pre: np.ndarray,
    valid: np.ndarray | None = None,
    seed: int = 0,
    majority_filter: bool = True,
    settings: RefineSettings | None = None,
) -> RefinedMask:
    """M_crop for one (C, H, W) image in [0, 1] and its M_pre (image size)."""
    from cxr_fgbg.masks.gmm import GmmMask

    settings = settings or RefineSettings()
    x = np.asarray(image, dtype=np.float32)
    x = x[None] if x.ndim == 2 else x
    pre = np.asarray(mask_pre, dtype=bool)
    filled = flip_background_in(x, pre)
    if filled is None:
        empty = np.zeros(pre.shape, dtype=bool)
        reason = "no background strip outside M_pre's bounding box"
        return RefinedMask(empty, pre, np.zeros(pre.shape, np.float32), x, GmmMask(empty, float("nan"), (), reason))
    return mask_from_difference(
        x, filled, pre, valid=valid, seed=seed, majority_filter=majority_filter,
        closing=settings.closing, closing_radius=settings.closing_radius, fill_holes=settings.fill_holes,
    )
