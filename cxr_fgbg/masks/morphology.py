"""Optional clean-up of a refined mask: closing and hole filling (the public code's flag).

Not in the paper; off by default. Both operations only add pixels, so the caller ANDs the result
with M_pre again to keep M inside the preliminary mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["close_and_fill", "disc"]


def disc(radius: int) -> np.ndarray:
    """A filled disc structuring element of the given radius (radius 1: the 3x3 cross)."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= r * r


def close_and_fill(mask: np.ndarray, closing: bool = True, radius: int = 2, fill_holes: bool = True) -> np.ndarray:
    """Binary closing with a disc of `radius` (border treated as background) and/or hole filling."""
    out = np.asarray(mask, dtype=bool)
    if closing and out.any():
        # Pad so the closing does not erode objects touching the border (scipy's border is background).
        pad = int(radius) + 1
        padded = np.pad(out, pad, mode="edge")
        out = ndimage.binary_closing(padded, structure=disc(radius))[pad:-pad, pad:-pad]
    if fill_holes:
        out = ndimage.binary_fill_holes(out)
    return out.astype(bool)
