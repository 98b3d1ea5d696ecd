"""Aggregation (per class, macro, bootstrap intervals) and the two baselines, with known answers."""

import math

import numpy as np
import pytest

from cxr_fgbg.evaluation.aggregate import summarise_classes
from cxr_fgbg.evaluation.baselines import ClassLocationPrior, centred_gaussian
from cxr_fgbg.evaluation.boxes import boxes_to_mask
from cxr_fgbg.evaluation.metrics import pixel_auroc

VALUES = {
    "A": {"m": np.array([1.0, 2.0, 3.0]), "s": np.array([1.0, np.nan, 0.0])},
    "B": {"m": np.array([10.0]), "s": np.array([np.nan])},
}


def test_class_means_macro_and_counts():
    summary = summarise_classes(VALUES, ["m", "s"], n_boot=0, seed=0)
    a, b = summary["classes"]["A"], summary["classes"]["B"]
    assert a["n"] == 3 and b["n"] == 1
    assert a["m"]["mean"] == 2.0 and b["m"]["mean"] == 10.0
    assert a["s"] == {"mean": 0.5, "ci95": [None, None], "n": 2}  # NaN excluded from the mean
    assert b["s"]["mean"] is None  # undefined everywhere: null, not an error
    macro = summary["macro"]
    assert macro["m"]["mean"] == 6.0  # (2 + 10) / 2: classes weigh equally, not samples
    assert macro["s"] == {"mean": 0.5, "ci95": [None, None], "n_classes": 1}
    assert macro["n"] == 4 and macro["n_classes"] == 2


def test_bootstrap_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    values = {"A": {"m": rng.normal(0.7, 0.1, 200)}, "B": {"m": rng.normal(0.5, 0.1, 200)}}
    first = summarise_classes(values, ["m"], n_boot=300, seed=5)
    again = summarise_classes(values, ["m"], n_boot=300, seed=5)
    other = summarise_classes(values, ["m"], n_boot=300, seed=6)
    assert first == again
    assert first["classes"]["A"]["m"]["ci95"] != other["classes"]["A"]["m"]["ci95"]
    # The standard error of a mean of 200 draws with sd 0.1 is 0.007: the interval is about +-0.014;
    # the macro mean of two such classes has half the variance: about +-0.010.
    for entry, width in ((first["classes"]["A"]["m"], 0.028), (first["macro"]["m"], 0.020)):
        lo, hi = entry["ci95"]
        assert lo < entry["mean"] < hi
        assert 0.7 * width < hi - lo < 1.3 * width


def test_constant_class_has_a_zero_width_interval():
    summary = summarise_classes({"A": {"m": np.full(5, 0.25)}}, ["m"], n_boot=50, seed=0)
    assert summary["classes"]["A"]["m"]["ci95"] == [0.25, 0.25]


def test_centred_gaussian_peaks_at_the_centre_and_is_symmetric():
    g = centred_gaussian((5, 7), sigma_fraction=0.25)
    assert g.shape == (5, 7) and g.dtype == np.float32
    assert np.unravel_index(np.argmax(g), g.shape) == (2, 3)
    assert g[2, 3] == pytest.approx(1.0)
    np.testing.assert_array_equal(g, g[:, ::-1])
    # One sigma = 0.25 * 7 columns away the value is exp(-1/2).
    g_wide = centred_gaussian((1, 9), sigma_fraction=1 / 9)
    assert g_wide[0, 5] == pytest.approx(math.exp(-0.5), rel=1e-6)


def test_class_location_prior_is_the_mean_box_mask():
    prior = ClassLocationPrior(resolution=4).fit([
        ("Effusion", np.array([[0.0, 0.5, 0.5, 0.5]])),  # bottom-left quarter
        ("Effusion", np.array([[0.0, 0.0, 0.5, 1.0]])),  # left half
        ("Cardiomegaly", np.array([[0.25, 0.25, 0.5, 0.5]])),
    ])
    assert prior.classes_ == ["Cardiomegaly", "Effusion"]
    assert prior.counts_ == {"Cardiomegaly": 1, "Effusion": 2}
    grid = prior.grids_["Effusion"]
    np.testing.assert_allclose(grid[:, :2], [[0.5, 0.5], [0.5, 0.5], [1, 1], [1, 1]])
    assert not grid[:, 2:].any()
    resized = prior.predict("Effusion", (8, 12))
    assert resized.shape == (8, 12)
    assert resized[7, 0] == pytest.approx(1.0) and resized[0, 11] == pytest.approx(0.0)
    assert prior.predict("Pneumothorax", (8, 8)) is None
    # A prior that knows where the class sits scores a high pixel AUROC without any text.
    truth = boxes_to_mask([[0, 4, 6, 4]], (8, 12))
    assert pixel_auroc(resized, truth) > 0.9
