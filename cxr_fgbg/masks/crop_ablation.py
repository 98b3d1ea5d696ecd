"""The simple-inpainting ablation M_crop (supplement section 5).

The paper: "take the largest background region according to M_pre and flip it into the foreground
region". Instead of a diffusion inpainting, M_pre's pixels are filled with real background, then the
same difference + GMM + AND with M_pre as for M follows (`refine.mask_from_difference`).

Our reading, per connected component of M_pre (8-connected; bilateral findings give one blob per lung):
of the four strips of the image outside that component's bounding box (above, below, left, right; sized
by thickness times the image side) the largest is mirrored across the box edge into the box, repeated by
reflection when the strip is thinner than the box. For a single component without padding this is exactly
the earlier whole-mask reading, which had to skip every mask whose blobs together span the image. Another
component may lie in a strip, so a pixel whose mirrored source is foreground (or outside the valid area)
takes its source from the next largest strip, and when every strip fails (e.g. a component whose box spans
the image) the mean of all usable background pixels. So a sample is only left without a fill when M_pre
is empty or leaves no usable background at all.
"""

from __future__ import annotations

import numpy as np

from cxr_fgbg.masks.refine import RefinedMask, mask_from_difference
from cxr_fgbg.masks.settings import RefineSettings

__all__ = ["background_strip", "crop_ablation_mask", "flip_background_in", "ranked_strips"]

Box = tuple[int, int, int, int]  # r0, r1, c0, c1 (half-open)
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _bounding_box(mask: np.ndarray) -> Box:
    """Half-open row and column bounds of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def ranked_strips(box: Box, shape: tuple[int, int]) -> list[tuple[str, int]]:
    """(side, thickness) of the non-empty strips outside `box`, largest area first (ties: top, bottom,
    left, right). The area is thickness times the image side, as the strip spans the whole image."""
    r0, r1, c0, c1 = box
    height, width = shape
    strips = [("top", r0, r0 * width), ("bottom", height - r1, (height - r1) * width),
              ("left", c0, c0 * height), ("right", width - c1, (width - c1) * height)]
    ranked = sorted(strips, key=lambda strip: -strip[2])  # stable: equal areas keep the order above
    return [(side, int(thickness)) for side, thickness, area in ranked if area > 0]


def background_strip(mask_pre: np.ndarray) -> tuple[str, int] | None:
    """The side ('top', 'bottom', 'left', 'right') of the largest strip outside the mask's bounding box
    and its thickness; None when the mask is empty or its bounding box covers the whole image."""
    m = np.asarray(mask_pre, dtype=bool)
    if not m.any():
        return None
    strips = ranked_strips(_bounding_box(m), m.shape)
    return strips[0] if strips else None


def _reflect(distance: np.ndarray, length: int) -> np.ndarray:
    """Distance into a strip of `length` for a pixel `distance` past its edge (mirror, then repeat)."""
    k = np.mod(distance, 2 * length)
    return np.where(k < length, k, 2 * length - 1 - k)


def _mirror_sources(side: str, length: int, box: Box, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, ...]:
    """Source (row, col) in the strip on `side` for the box pixels (ys, xs): mirrored across the box edge."""
    r0, r1, c0, c1 = box
    if side == "top":
        return r0 - 1 - _reflect(ys - r0, length), xs
    if side == "bottom":
        return r1 + _reflect(r1 - 1 - ys, length), xs
    if side == "left":
        return ys, c0 - 1 - _reflect(xs - c0, length)
    return ys, c1 + _reflect(c1 - 1 - xs, length)


def _fill_component(x: np.ndarray, out: np.ndarray, pixels: tuple[np.ndarray, np.ndarray], box: Box,
                    usable: np.ndarray, fallback: np.ndarray) -> None:
    """Write the fill of one component's `pixels` into `out`, strip by strip; sources are read from `x` only,
    so the order of the components does not matter."""
    ys, xs = pixels
    todo = np.ones(ys.size, dtype=bool)
    for side, length in ranked_strips(box, usable.shape):
        src_r, src_c = _mirror_sources(side, length, box, ys, xs)
        take = todo & usable[src_r, src_c]
        out[:, ys[take], xs[take]] = x[:, src_r[take], src_c[take]]
        todo &= ~take
        if not todo.any():
            return
    out[:, ys[todo], xs[todo]] = fallback[:, None]


def _components(mask: np.ndarray) -> list[tuple[tuple[np.ndarray, np.ndarray], Box]]:
    """Pixels (rows, cols) and bounding box of each 8-connected component of `mask`."""
    from scipy.ndimage import find_objects, label

    labels, _ = label(mask, structure=EIGHT_CONNECTED)
    found = []
    for index, (rows, cols) in enumerate(find_objects(labels), start=1):
        ys, xs = np.nonzero(labels[rows, cols] == index)
        found.append(((ys + rows.start, xs + cols.start), (rows.start, rows.stop, cols.start, cols.stop)))
    return found


def flip_background_in(image: np.ndarray, mask_pre: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray | None:
    """(C, H, W) image with M_pre's pixels replaced by mirrored background, component by component.

    Source pixels are background (outside M_pre) and, when `valid` is given, inside the valid area.
    None when there is nothing to flip: M_pre empty, or no usable background pixel.
    """
    x = np.asarray(image, dtype=np.float32)
    m = np.asarray(mask_pre, dtype=bool)
    usable = ~m if valid is None else ~m & np.asarray(valid, dtype=bool)
    if not m.any() or not usable.any():
        return None
    fallback = x[:, usable].mean(axis=1)
    out = x.copy()
    for pixels, box in _components(m):
        _fill_component(x, out, pixels, box, usable, fallback)
    return out


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
    filled = flip_background_in(x, pre, valid)
    if filled is None:
        empty = np.zeros(pre.shape, dtype=bool)
        reason = "nothing to flip: M_pre is empty or leaves no background"
        return RefinedMask(empty, pre, np.zeros(pre.shape, np.float32), x, GmmMask(empty, float("nan"), (), reason))
    return mask_from_difference(
        x, filled, pre, valid=valid, seed=seed, majority_filter=majority_filter,
        closing=settings.closing, closing_radius=settings.closing_radius, fill_holes=settings.fill_holes,
    )
