"""GMM binarisation (midpoint of the two means, valid pixels only, seeded) and the 3x3 majority filter."""

from __future__ import annotations

import math

import numpy as np

from cxr_fgbg.masks.gmm import binarize_gmm, majority_filter


def _two_level_map(seed=0):
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 0.05, size=(40, 40))
    values[10:25, 12:30] += 1.0  # a 15 x 18 object
    return values


def test_two_levels_threshold_at_midpoint_and_object_recovered():
    values = _two_level_map()
    out = binarize_gmm(values, seed=0)
    assert out.reason is None
    assert abs(out.means[0] - 0.0) < 0.02 and abs(out.means[1] - 1.0) < 0.02
    assert out.threshold == 0.5 * (out.means[0] + out.means[1])
    expected = np.zeros_like(out.mask)
    expected[10:25, 12:30] = True
    for r, c in ((10, 12), (10, 29), (24, 12), (24, 29)):
        expected[r, c] = False  # a rectangle's corner sees 4 of 9 foreground pixels: the filter drops it
    assert np.array_equal(out.mask, expected)
    unfiltered = binarize_gmm(values, seed=0, majority_filter=False)
    assert np.array_equal(unfiltered.mask, values > unfiltered.threshold)


def test_seeded_result_is_reproducible():
    values = np.random.default_rng(3).gamma(2.0, size=(30, 30))
    a, b = binarize_gmm(values, seed=7), binarize_gmm(values, seed=7)
    assert np.array_equal(a.mask, b.mask) and a.threshold == b.threshold


def test_fit_uses_valid_pixels_only():
    values = _two_level_map()
    valid = np.ones(values.shape, dtype=bool)
    valid[:, 35:] = False
    values[:, 35:] = -50.0  # padding far below everything: it would become a component of its own
    out = binarize_gmm(values, valid, seed=0)
    assert abs(out.means[0]) < 0.02 and abs(out.means[1] - 1.0) < 0.02
    assert not out.mask[:, 35:].any()
    nan_map = _two_level_map()
    nan_map[:5] = np.nan  # NaN (outside the image after the crop) is invalid by default
    assert binarize_gmm(nan_map, seed=0).mask[11:24, 13:29].all()


def test_constant_or_empty_map_gives_empty_mask_and_reason():
    out = binarize_gmm(np.full((8, 8), 3.0))
    assert not out.mask.any() and math.isnan(out.threshold) and "constant" in out.reason
    out = binarize_gmm(np.full((8, 8), np.nan))
    assert not out.mask.any() and "fewer than 2" in out.reason
    assert out.mask.shape == (8, 8) and out.mask.dtype == bool


def test_majority_filter_known_answers():
    mask = np.zeros((9, 9), dtype=bool)
    mask[1, 1] = True  # an orphan pixel: removed
    mask[4:7, 4:7] = True  # a 3x3 square: corners have 4 of 9 set -> removed; edges 6 -> kept
    out = majority_filter(mask)
    assert not out[1, 1]
    expected = np.zeros_like(mask)
    expected[5, 4:7] = True
    expected[4:7, 5] = True
    assert np.array_equal(out, expected)
    assert majority_filter(np.ones((4, 4), dtype=bool)).sum() == 4 + 4 * 2  # border: 4 or 6 of 9 in-image
    holes = np.ones((5, 5), dtype=bool)
    holes[2, 2] = False  # a one-pixel hole: 8 of 9 -> filled
    assert majority_filter(holes)[2, 2]
