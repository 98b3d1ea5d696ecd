"""The background-rectangle sampler of the fg/bg objective, rule by rule, with seeded draws."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_fgbg.training.fgbg import (
    REJECT_FOREGROUND,
    REJECT_LARGE_AREA,
    REJECT_LARGE_SIDES,
    REJECT_SMALL_AREA,
    REJECT_SMALL_SIDE,
    mask_to_latent_grid,
    rejection_reason,
    sample_background_rectangle,
)
from cxr_fgbg.training.settings import RectangleSettings

PAPER = RectangleSettings()


def corners_only(shape, a, b):
    """A background made of exactly two pixels: every candidate is the box they span (or a 1x1 box)."""
    background = np.zeros(shape, dtype=bool)
    background[a] = background[b] = True
    return background


def test_paper_defaults():
    assert (PAPER.min_side, PAPER.min_area, PAPER.max_side, PAPER.max_area, PAPER.max_tries) == (10, 256, 32, 1024, 100)
    assert PAPER.min_background_fraction == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((0, 0, 9, 39), REJECT_SMALL_SIDE),  # 10 x 40: a side of exactly 10 is rejected (<= 10)
        ((0, 0, 10, 20), REJECT_SMALL_AREA),  # 11 x 21 = 231 < 256
        ((0, 0, 15, 15), None),  # 16 x 16 = 256: the smallest accepted square
        ((0, 0, 32, 32), REJECT_LARGE_SIDES),  # 33 x 33: both sides > 32
        ((0, 0, 31, 31), None),  # 32 x 32 = 1024: accepted
        ((0, 0, 11, 99), REJECT_LARGE_AREA),  # 12 x 100 = 1200 > 1024, one side <= 32
        ((0, 0, 31, 32), REJECT_LARGE_AREA),  # 32 x 33 = 1056: only one side > 32, area too large
    ],
)
def test_rejection_rules_on_a_full_background(box, expected):
    background = np.ones((128, 128), dtype=bool)
    assert rejection_reason(box, background, PAPER) == expected


def test_background_fraction_rule():
    background = np.ones((64, 64), dtype=bool)
    background[0:16, 0:6] = False  # 96 of 16 x 16 = 256 are foreground: 160/256 = 0.625 < 2/3
    assert rejection_reason((0, 0, 15, 15), background, PAPER) == REJECT_FOREGROUND
    background[0:16, 5] = True  # 80 foreground: 176/256 = 0.6875 >= 2/3
    assert rejection_reason((0, 0, 15, 15), background, PAPER) is None


@pytest.mark.parametrize(
    ("corner", "reason"),
    [((9, 40), REJECT_SMALL_SIDE), ((10, 20), REJECT_SMALL_AREA), ((40, 40), REJECT_LARGE_SIDES),
     ((11, 99), REJECT_LARGE_AREA)],
)
def test_sampler_falls_back_to_the_whole_background_after_max_tries(corner, reason):
    background = corners_only((128, 128), (0, 0), corner)
    sample = sample_background_rectangle(background, np.random.default_rng(3), PAPER)
    assert sample.kind == "whole_background"
    assert sample.tries == 100
    assert sum(sample.rejections.values()) == 100
    # draws of the same pixel twice give a 1x1 box (side rule); all others break the rule under test
    assert set(sample.rejections) <= {reason, REJECT_SMALL_SIDE}
    assert sample.rejections[reason] > 20
    assert np.array_equal(sample.mask, background)


def test_sampler_rejects_a_mostly_foreground_rectangle():
    background = corners_only((40, 40), (0, 0), (19, 19))  # 20 x 20 box, 2 of 400 pixels background
    sample = sample_background_rectangle(background, np.random.default_rng(0), PAPER)
    assert sample.kind == "whole_background"
    assert set(sample.rejections) == {REJECT_FOREGROUND, REJECT_SMALL_SIDE}


def test_accepted_rectangle_obeys_every_rule_and_masks_out_the_object():
    background = np.ones((64, 64), dtype=bool)
    background[20:30, 20:30] = False  # the object
    for seed in range(20):
        sample = sample_background_rectangle(background, np.random.default_rng(seed), PAPER)
        assert sample.kind == "rectangle"
        top, left, bottom, right = sample.box
        height, width = bottom - top + 1, right - left + 1
        assert min(height, width) > 10 and height * width >= 256
        assert not (height > 32 and width > 32) and height * width <= 1024
        inside = background[top : bottom + 1, left : right + 1]
        assert inside.mean() >= 2 / 3
        # corners are background pixels; the loss mask = background AND rectangle
        assert background[top, left] or background[top, right]
        expected = np.zeros_like(background)
        expected[top : bottom + 1, left : right + 1] = inside
        assert np.array_equal(sample.mask, expected)
        assert not (sample.mask & ~background).any()
        assert sample.tries == sum(sample.rejections.values()) + 1


def test_sampler_is_reproducible_with_a_seed():
    background = np.ones((64, 64), dtype=bool)
    a = sample_background_rectangle(background, np.random.default_rng(11), PAPER)
    b = sample_background_rectangle(background, np.random.default_rng(11), PAPER)
    assert a.box == b.box and np.array_equal(a.mask, b.mask)


def test_all_foreground_contributes_nothing():
    sample = sample_background_rectangle(np.zeros((16, 16), bool), np.random.default_rng(0), PAPER)
    assert sample.kind == "empty" and not sample.mask.any()


def test_scaled_rules_fit_a_16x16_grid():
    rules = RectangleSettings(min_side=2, min_area=16, max_side=8, max_area=64)
    background = np.ones((16, 16), dtype=bool)
    sample = sample_background_rectangle(background, np.random.default_rng(5), rules)
    assert sample.kind == "rectangle"
    assert 16 <= sample.mask.sum() <= 64
    # the paper's rules cannot be met on a 16x16 grid (area >= 256 needs sides of 16 > 10 ... = whole grid)
    paper = sample_background_rectangle(np.ones((12, 12), bool), np.random.default_rng(5), PAPER)
    assert paper.kind == "whole_background"


def test_mask_to_latent_grid_marks_any_touched_cell_foreground():
    foreground = np.zeros((64, 64), dtype=bool)
    foreground[5, 9] = True  # one pixel, in latent cell (0, 1) of an 8x8 grid of 8-pixel cells
    grid = mask_to_latent_grid(foreground, (8, 8))
    assert grid.shape == (8, 8) and grid.sum() == 1 and grid[0, 1]
