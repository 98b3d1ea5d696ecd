"""The paper's hyperparameter-free binarisation: 2-component GMM, midpoint threshold, 3x3 majority filter.

The GMM is fitted on the valid pixels only (the public code also fits padding, which shifts the
background mean) and is seeded (the public code is not, so its masks change from run to run). A map
the GMM cannot split (constant, too few pixels, one component) gives an EMPTY mask with a reason,
never an exception and never a stale mask from an earlier image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["GmmMask", "binarize_gmm", "majority_filter"]

# Fitting a 1-D two-component GMM on more values than this changes the means by far less than a pixel
# value's noise; larger maps are subsampled (seeded) for the fit and thresholded in full.
MAX_FIT_SAMPLES = 200_000


@dataclass(frozen=True)
class GmmMask:
    """The binary mask and how it was obtained.

    `threshold` is NaN and `reason` names the cause when the map could not be split; `means` holds the
    two component means in increasing order (empty when no GMM was fitted).
    """

    mask: np.ndarray
    threshold: float
    means: tuple[float, ...]
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def majority_filter(mask: np.ndarray) -> np.ndarray:
    """3x3 majority vote: a pixel is foreground when at least 5 of the 9 pixels around it are.

    This is the paper's 3x3 mean filter thresholded at 0.5; pixels outside the image count as
    background, so the filter never grows a mask across the border.
    """
    from scipy.ndimage import correlate

    arr = np.asarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"majority_filter expects a 2-D mask, got shape {arr.shape}")
    counts = correlate(arr.astype(np.uint8), np.ones((3, 3), dtype=np.uint8), mode="constant", cval=0)
    return counts >= 5


def binarize_gmm(
    values: np.ndarray,
    valid: np.ndarray | None = None,
    seed: int = 0,
    majority_filter: bool = True,
) -> GmmMask:
    """Binarise a heat map (or an image difference) with a two-component Gaussian mixture.

    `valid` marks the pixels that carry information (default: the finite ones); the GMM is fitted on
    them only, and pixels outside it are never foreground. Foreground = value above the midpoint of
    the two component means. With `majority_filter` the 3x3 majority vote follows (2-D maps only).
    """
    from sklearn.mixture import GaussianMixture

    arr = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(arr)
    keep = finite if valid is None else (np.asarray(valid, dtype=bool) & finite)
    if keep.shape != arr.shape:
        raise ValueError(f"valid has shape {keep.shape}, values have shape {arr.shape}")
    empty = np.zeros(arr.shape, dtype=bool)
    samples = arr[keep]
    if samples.size < 2:
        return GmmMask(empty, math.nan, (), f"fewer than 2 valid pixels ({samples.size})")
    low, high = float(samples.min()), float(samples.max())
    scale = max(abs(low), abs(high), 1e-30)
    if high - low <= 1e-6 * scale:
        return GmmMask(empty, math.nan, (), "constant map: nothing to separate")
    if np.unique(samples).size < 2:
        return GmmMask(empty, math.nan, (), "constant map: nothing to separate")
    fit_values = samples
    if fit_values.size > MAX_FIT_SAMPLES:
        rng = np.random.default_rng(seed)
        fit_values = rng.choice(fit_values, size=MAX_FIT_SAMPLES, replace=False)
    # Standardise for the fit so tiny or huge value ranges do not trip the covariance regulariser.
    centre, spread = float(fit_values.mean()), float(fit_values.std())
    if not spread > 0:
        return GmmMask(empty, math.nan, (), "constant map: nothing to separate")
    standard = ((fit_values - centre) / spread).reshape(-1, 1)
    gmm = GaussianMixture(n_components=2, covariance_type="full", random_state=seed, reg_covar=1e-6)
    try:
        gmm.fit(standard)
    except (ValueError, FloatingPointError) as exc:
        return GmmMask(empty, math.nan, (), f"GMM fit failed: {exc}")
    means = tuple(sorted(float(m) * spread + centre for m in gmm.means_.ravel()))
    if not all(math.isfinite(m) for m in means) or means[1] - means[0] <= 1e-6 * scale:
        return GmmMask(empty, math.nan, means, "degenerate GMM: both components have the same mean")
    threshold = 0.5 * (means[0] + means[1])
    mask = keep & (arr > threshold)
    if majority_filter and mask.ndim == 2:
        mask = _majority(mask) & keep
    reason = None if mask.any() else "empty after thresholding and the majority filter"
    return GmmMask(mask, threshold, means, reason)


_majority = majority_filter
