"""Known-answer tests of the metric API, every expected value computed by hand in the comments."""

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, roc_auc_score

from cxr_fgbg.evaluation.baselines import centred_gaussian
from cxr_fgbg.evaluation.boxes import (
    box_side,
    boxes_to_mask,
    enclosing_box,
    inclusive_box_iou,
    scale_boxes,
)
from cxr_fgbg.evaluation.metrics import (
    Confusion,
    cnr,
    confusion,
    dice,
    enclosing_box_iou,
    iou,
    localisation_scores,
    miou_fg_bg,
    miou_thresholds,
    pixel_accuracy,
    pixel_auroc,
    pointing_game,
    pooled_scores,
    side_accuracy,
)

# ---------------------------------------------------------------- boxes


def test_integer_box_covers_exactly_w_by_h_pixels():
    mask = boxes_to_mask([[1, 2, 3, 2]], (5, 6))
    assert mask.sum() == 6
    assert mask[2:4, 1:4].all()
    assert enclosing_box(mask) == (1, 2, 3, 2)


def test_fractional_box_includes_every_touched_pixel_and_clips_outside():
    # [0.5, 2.5) touches columns 0, 1, 2; rows [3.9, 6) clipped to rows 3, 4 of a 5-row image.
    mask = boxes_to_mask([[0.5, 3.9, 2.0, 2.1]], (5, 4))
    assert mask.sum() == 6
    assert mask[3:5, 0:3].all()
    # A box rescaled with a rounding error does not grow by a pixel.
    scaled = scale_boxes(np.array([[10, 10, 10, 10]]), (30, 30), (90.0000001, 90.0000001))
    assert boxes_to_mask(scaled, (100, 100)).sum() == 30 * 30


def test_empty_box_list_and_zero_size_box_give_empty_mask():
    assert not boxes_to_mask([], (3, 3)).any()
    assert not boxes_to_mask([[1, 1, 0, 2]], (3, 3)).any()


def test_enclosing_box_inclusive_bounds_and_iou():
    mask = np.zeros((5, 5), bool)
    mask[2, 3] = True
    assert enclosing_box(mask) == (3, 2, 1, 1)  # one pixel: w = h = 1, not 0
    assert enclosing_box(np.zeros((3, 3), bool)) is None
    # (0,0,2,2) vs (1,1,2,2): intersection 1 pixel, union 4 + 4 - 1 = 7.
    assert inclusive_box_iou((0, 0, 2, 2), (1, 1, 2, 2)) == pytest.approx(1 / 7)
    assert inclusive_box_iou(None, None) == 1.0
    assert inclusive_box_iou((0, 0, 1, 1), None) == 0.0


def test_box_side():
    assert box_side(np.array([[0, 0, 5, 3], [1, 4, 4, 1]]), 10) == "left"
    assert box_side(np.array([[5, 0, 5, 3]]), 10) == "right"
    assert box_side(np.array([[4, 0, 2, 3]]), 10) is None
    assert box_side(np.array([[0, 0, 2, 2], [7, 0, 2, 2]]), 10) is None  # bilateral


# ---------------------------------------------------------------- pixel AUROC


def test_pixel_auroc_by_hand_with_a_tie():
    # positives 3, 1; negatives 2, 1, 0. Pairs: (3 beats all 3) + (1 beats 0, ties 1, loses to 2) = 3 + 1.5.
    heat = np.array([[3.0, 1.0, 2.0, 1.0, 0.0]])
    mask = np.array([[True, True, False, False, False]])
    assert pixel_auroc(heat, mask) == pytest.approx(4.5 / 6)


def test_pixel_auroc_equals_sklearn_on_random_maps_with_ties():
    rng = np.random.default_rng(3)
    heat = rng.integers(0, 20, size=(40, 50)).astype(np.float32)  # many ties
    mask = boxes_to_mask([[5, 5, 20, 10], [30, 20, 10, 15]], heat.shape)
    assert pixel_auroc(heat, mask) == pytest.approx(roc_auc_score(mask.ravel(), heat.ravel()), abs=1e-12)


def test_pixel_auroc_ignores_nan_and_degenerate_cases_are_defined():
    heat = np.array([[3.0, np.nan, 0.0, 1.0]])
    mask = np.array([[True, True, False, False]])
    assert pixel_auroc(heat, mask) == 1.0  # the NaN positive is ignored
    assert pixel_auroc(np.full((3, 3), 0.7), boxes_to_mask([[0, 0, 1, 1]], (3, 3))) == 0.5  # constant
    assert math.isnan(pixel_auroc(heat, np.ones((1, 4), bool)))  # no negatives
    assert math.isnan(pixel_auroc(heat, np.zeros((1, 4), bool)))  # no positives (empty mask)
    with pytest.raises(ValueError):
        pixel_auroc(heat, np.ones((2, 2), bool))


# ---------------------------------------------------------------- CNR


HEAT = np.array([[2.0, 4.0, 1.0, 1.0]])
BOX_A = [0, 0, 2, 1]  # columns 0-1
BOX_B = [3, 0, 1, 1]  # column 3


def test_cnr_one_box_both_conventions():
    # inside [2, 4]: mean 3, population var 1, unbiased var 2; outside [1, 1]: mean 1, var 0.
    assert cnr(HEAT, [BOX_A], "biovil") == pytest.approx(2.0)
    assert cnr(HEAT, [BOX_A], "fau") == pytest.approx(2.0 / math.sqrt(2.0))


def test_cnr_biovil_averages_over_boxes():
    # Box B: inside [1], mean 1, var 0; rest [2, 4, 1]: mean 7/3, population var 14/9 -> (4/3)/sqrt(14/9).
    expected = (2.0 + 4.0 / math.sqrt(14.0)) / 2
    assert cnr(HEAT, [BOX_A, BOX_B], "biovil") == pytest.approx(expected)


def test_cnr_fau_is_signed_and_undefined_with_one_outside_pixel():
    # Columns 2-3: inside [1, 1] mean 1, var 0; rest [2, 4] mean 3, unbiased var 2: (1 - 3) / sqrt(2).
    assert cnr(HEAT, [[2, 0, 2, 1]], "fau") == pytest.approx(-math.sqrt(2.0))
    assert cnr(HEAT, [[2, 0, 2, 1]], "biovil") == pytest.approx(2.0 / math.sqrt(1.0))  # population var 1
    assert math.isnan(cnr(HEAT, [BOX_B], "fau"))  # one pixel inside: no unbiased variance
    # Union of A and B leaves a single outside pixel: no unbiased variance.
    assert math.isnan(cnr(HEAT, [BOX_A, BOX_B], "fau"))


def test_cnr_ignores_nan_pixels():
    heat = np.array([[2.0, 4.0, np.nan, 1.0, 1.0]])
    assert cnr(heat, [BOX_A], "biovil") == pytest.approx(2.0)
    assert cnr(heat, [BOX_A], "fau") == pytest.approx(math.sqrt(2.0))


def test_cnr_constant_and_perfect_step_maps():
    assert cnr(np.ones((4, 4)), [BOX_A], "biovil") == 0.0
    assert cnr(np.ones((4, 4)), [BOX_A], "fau") == 0.0
    assert cnr(np.array([[1.0, 1.0, 0.0, 0.0]]), [BOX_A], "biovil") == math.inf
    assert math.isnan(cnr(HEAT, [], "biovil"))
    with pytest.raises(ValueError):
        cnr(HEAT, [BOX_A], "other")  # type: ignore[arg-type]


def test_cnr_is_invariant_to_min_max_scaling():
    rng = np.random.default_rng(0)
    heat = rng.random((20, 30))
    boxes = [[2, 3, 8, 5], [15, 10, 6, 6]]
    for convention in ("biovil", "fau"):
        assert cnr(heat * 7 + 3, boxes, convention) == pytest.approx(cnr(heat, boxes, convention))


# ---------------------------------------------------------------- mIoU, pointing game, side accuracy


def test_miou_thresholds_by_hand():
    heat = np.array([[0.0, 0.25, 0.75, 1.0]])
    box = [[2, 0, 2, 1]]
    # t = 0.1, 0.2: predicted {1, 2, 3}, IoU 2/3; t = 0.3, 0.4, 0.5: predicted {2, 3}, IoU 1.
    assert miou_thresholds(heat, box) == pytest.approx((2 / 3 * 2 + 3) / 5)
    # The same values scaled by 10 and shifted give the same answer (min-max scaling).
    assert miou_thresholds(heat * 10 + 5, box) == pytest.approx(13 / 15)
    assert miou_thresholds(heat, box, thresholds=(0.5,)) == 1.0


def test_miou_with_nan_and_constant_map():
    heat = np.array([[0.0, 0.25, np.nan, 0.75, 1.0]])
    assert miou_thresholds(heat, [[3, 0, 2, 1]]) == pytest.approx(13 / 15)
    assert miou_thresholds(np.full((2, 4), 3.0), [[0, 0, 1, 1]]) == 0.0  # predicts nothing
    assert math.isnan(miou_thresholds(np.full((2, 2), np.nan), [[0, 0, 1, 1]]))


def test_pointing_game():
    heat = np.array([[0.0, 5.0, 1.0, 2.0]])
    assert pointing_game(heat, [[1, 0, 1, 1]]) == 1.0
    assert pointing_game(heat, [[2, 0, 2, 1]]) == 0.0
    tie = np.array([[5.0, 5.0, 1.0, 2.0]])
    assert pointing_game(tie, [[1, 0, 1, 1]]) == 0.5  # one of the two maxima is inside
    assert pointing_game(np.ones((1, 4)), [[0, 0, 1, 1]]) == 0.25  # constant map: box fraction
    assert pointing_game(np.array([[np.nan, 1.0, 3.0, np.nan]]), [[2, 0, 1, 1]]) == 1.0


def test_side_accuracy():
    heat = np.array([[3.0, 2.0, 0.0, 1.0], [1.0, 1.0, 0.0, 0.0]])  # left mass 7, right mass 1
    assert side_accuracy(heat, [[0, 0, 2, 2]]) == 1.0
    assert side_accuracy(heat, [[2, 0, 2, 2]]) == 0.0
    assert math.isnan(side_accuracy(heat, [[1, 0, 2, 2]]))  # crosses the midline
    assert side_accuracy(np.ones((3, 4)), [[0, 0, 1, 1]]) == 0.5  # constant map: a tie
    gauss = centred_gaussian((64, 96))
    assert side_accuracy(gauss, [[70, 10, 10, 10]]) == 0.5  # a symmetric prior ties
    # Odd width: the middle column (index 2) belongs to neither half.
    odd = np.array([[0.0, 0.0, 9.0, 1.0, 0.0]])
    assert side_accuracy(odd, [[3, 0, 2, 1]]) == 1.0
    assert side_accuracy(np.array([[np.nan, 0.0, 0.0, 1.0]]), [[2, 0, 2, 1]]) == 1.0


def test_localisation_scores_of_a_perfect_map():
    shape = (32, 40)
    boxes = [[4, 6, 10, 8]]
    heat = boxes_to_mask(boxes, shape).astype(np.float32)
    scores = localisation_scores(heat, boxes)
    assert scores["pixel_auroc"] == 1.0
    assert scores["miou"] == 1.0
    assert scores["pointing_game"] == 1.0
    assert scores["side_accuracy"] == 1.0
    assert scores["cnr_biovil"] == math.inf


# ---------------------------------------------------------------- binary masks


PRED = np.array([[1, 1, 0], [0, 1, 0]], bool)
TRUTH = np.array([[1, 0, 0], [0, 1, 1]], bool)


def test_confusion_and_per_image_scores_by_hand():
    c = confusion(PRED, TRUTH)
    assert c == Confusion(tp=2, fp=1, fn=1, tn=2)
    assert iou(PRED, TRUTH) == pytest.approx(2 / 4)
    assert dice(PRED, TRUTH) == pytest.approx(4 / 6)
    assert pixel_accuracy(PRED, TRUTH) == pytest.approx(4 / 6)
    assert miou_fg_bg(PRED, TRUTH) == pytest.approx((2 / 4 + 2 / 4) / 2)
    # Enclosing boxes: pred columns 0-1 rows 0-1 (4 px), truth columns 0-2 rows 0-1 (6 px): 4 / 6.
    assert enclosing_box_iou(PRED, TRUTH) == pytest.approx(4 / 6)


def test_empty_masks_are_defined():
    empty = np.zeros((2, 3), bool)
    assert iou(empty, empty) == 1.0
    assert dice(empty, empty) == 1.0
    assert miou_fg_bg(empty, empty) == 1.0
    assert iou(PRED, empty) == 0.0
    assert pixel_accuracy(PRED, empty) == pytest.approx(3 / 6)
    assert enclosing_box_iou(empty, empty) == 1.0
    assert enclosing_box_iou(PRED, empty) == 0.0


def test_pooled_scores_sum_counts_before_dividing():
    small = Confusion(tp=1, fp=0, fn=0, tn=0)  # IoU 1
    large = Confusion(tp=1, fp=2, fn=1, tn=6)  # IoU 1/4
    pooled = pooled_scores([small, large])
    assert pooled["iou"] == pytest.approx(2 / 5)  # not the mean (1 + 1/4) / 2
    assert pooled["accuracy"] == pytest.approx(8 / 11)
    assert pooled["miou_fg_bg"] == pytest.approx((2 / 5 + 6 / 9) / 2)


def test_iou_and_dice_agree_with_sklearn():
    rng = np.random.default_rng(1)
    pred = rng.random((16, 16)) > 0.6
    truth = rng.random((16, 16)) > 0.5
    assert iou(pred, truth) == pytest.approx(jaccard_score(truth.ravel(), pred.ravel()))
    assert dice(pred, truth) == pytest.approx(f1_score(truth.ravel(), pred.ravel()))
    assert pixel_accuracy(pred, truth) == pytest.approx(accuracy_score(truth.ravel(), pred.ravel()))


def test_localisation_scores_equal_the_single_metrics_on_a_map_with_nan_and_two_boxes():
    rng = np.random.default_rng(7)
    heat = rng.random((30, 40)).astype(np.float32)
    heat[:, :3] = np.nan
    boxes = [[2, 2, 10, 8], [5, 20, 12, 6]]
    scores = localisation_scores(heat, boxes)
    assert scores["pixel_auroc"] == pixel_auroc(heat, boxes_to_mask(boxes, heat.shape))
    assert scores["cnr_biovil"] == cnr(heat, boxes, "biovil")
    assert scores["cnr_fau"] == cnr(heat, boxes, "fau")
    assert scores["miou"] == miou_thresholds(heat, boxes)
    assert scores["pointing_game"] == pointing_game(heat, boxes)
    assert scores["side_accuracy"] == side_accuracy(heat, boxes)
    # Against a slow, direct reading of the definitions.
    valid = np.isfinite(heat)
    per_box = []
    for box in boxes:
        inside = boxes_to_mask([box], heat.shape)
        a, b = heat[inside & valid].astype(float), heat[~inside & valid].astype(float)
        per_box.append(abs(a.mean() - b.mean()) / np.sqrt(a.var() + b.var()))
    assert scores["cnr_biovil"] == pytest.approx(np.mean(per_box), rel=1e-9)
    union = boxes_to_mask(boxes, heat.shape)
    a, b = heat[union & valid].astype(float), heat[~union & valid].astype(float)
    assert scores["cnr_fau"] == pytest.approx((a.mean() - b.mean()) / np.sqrt(a.var(ddof=1) + b.var(ddof=1)))
    scaled = (heat - np.nanmin(heat)) / (np.nanmax(heat) - np.nanmin(heat))
    ious = [((scaled > t) & union).sum() / (((scaled > t) & valid) | (union & valid)).sum() for t in
            (0.1, 0.2, 0.3, 0.4, 0.5)]
    assert scores["miou"] == pytest.approx(np.mean(ious))


def test_presorted_prepared_map_gives_the_same_scores_with_ties():
    from cxr_fgbg.evaluation.metrics import PreparedMap

    rng = np.random.default_rng(2)
    prior = rng.integers(0, 5, size=(24, 32)).astype(np.float32)  # a piecewise-constant prior: many ties
    prepared = PreparedMap(prior, presort=True)
    for boxes in ([[1, 1, 8, 6]], [[20, 3, 10, 10], [2, 12, 6, 9]]):
        np.testing.assert_equal(localisation_scores(prepared, boxes), localisation_scores(prior, boxes))
