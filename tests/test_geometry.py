"""Geometry record: exact known mappings, round trips (hypothesis), arrays and serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxr_fgbg.data.geometry import Geometry, clip_boxes
from cxr_fgbg.evaluation.boxes import boxes_to_mask


def test_center_crop_portrait_known_numbers():
    g = Geometry.resize_shorter_and_center_crop((300, 200), 64)
    # shorter side 200 -> 64 (scale 0.32): 300 -> 96 rows, centre crop cuts 16 rows at top and bottom
    assert g.resized_hw == (96, 64) and (g.top, g.left) == (16, 0) and g.model_hw == (64, 64)
    box = g.boxes_to_model([[50, 100, 100, 50]])
    np.testing.assert_allclose(box, [[16, 16, 32, 16]])
    np.testing.assert_allclose(g.points_to_model([[0, 50]]), [[0, 0]])


def test_center_crop_landscape_known_numbers():
    g = Geometry.resize_shorter_and_center_crop((100, 250), 50)
    assert g.resized_hw == (50, 125) and (g.top, g.left) == (0, 37)
    np.testing.assert_allclose(g.points_to_model([[74, 0]]), [[0, 0]])
    np.testing.assert_allclose(g.points_to_original([[0, 10]]), [[74, 20]])


def test_pad_known_numbers():
    g = Geometry.resize_to_fit_and_pad((300, 200), 60)
    # longer side 300 -> 60 (scale 0.2): 200 -> 40 columns, padded 10 left and 10 right
    assert g.resized_hw == (60, 40) and (g.top, g.left) == (0, -10)
    np.testing.assert_allclose(g.boxes_to_model([[0, 0, 200, 300]]), [[10, 0, 40, 60]])
    valid = g.valid_model_mask()
    assert valid.sum() == 60 * 40 and not valid[:, :10].any() and valid[:, 10:50].all()


geometries = st.builds(
    lambda h, w, size, pad: (Geometry.resize_to_fit_and_pad if pad else Geometry.resize_shorter_and_center_crop)(
        (h, w), size
    ),
    st.integers(8, 4000), st.integers(8, 4000), st.integers(8, 1024), st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(geometries, st.lists(st.tuples(*[st.floats(0, 4000)] * 2, *[st.floats(0.5, 2000)] * 2), max_size=5))
def test_box_round_trip_is_identity(g, boxes):
    boxes = np.array(boxes, dtype=float).reshape(-1, 4)
    back = g.boxes_to_original(g.boxes_to_model(boxes))
    np.testing.assert_allclose(back, boxes, rtol=1e-9, atol=1e-6)
    model = g.boxes_to_model(boxes)
    np.testing.assert_allclose(g.boxes_to_model(g.boxes_to_original(model)), model, rtol=1e-9, atol=1e-6)


@settings(max_examples=100, deadline=None)
@given(geometries)
def test_geometry_dims_and_json(g):
    assert g.model_hw[0] == g.model_hw[1]
    # the model window lies inside the resized image (crop) or contains it (pad), centred to 1 px
    if g.top >= 0:
        assert g.top + g.model_hw[0] <= g.resized_hw[0]
    assert abs((g.resized_hw[0] - g.model_hw[0]) - 2 * g.top) <= 1
    assert abs((g.resized_hw[1] - g.model_hw[1]) - 2 * g.left) <= 1
    assert Geometry.from_dict(json.loads(json.dumps(g.to_dict()))) == g
    assert Geometry.from_dict(g.to_json()) == g


def test_from_dict_reads_npz_field(tmp_path):
    g = Geometry.resize_shorter_and_center_crop((123, 77), 32)
    np.savez(tmp_path / "x.npz", geometry=np.array(g.to_json()))
    with np.load(tmp_path / "x.npz") as data:
        assert Geometry.from_dict(data["geometry"]) == g


@pytest.mark.parametrize("hw", [(300, 200), (200, 300), (256, 256)])
def test_heatmap_round_trip_keeps_mass_inside_box(hw):
    g = Geometry.resize_shorter_and_center_crop(hw, 64)
    box = np.array([[60.0, 80.0, 90.0, 60.0]])  # inside the part the crop keeps for every hw above
    heat = boxes_to_mask(box, hw).astype(np.float32)
    back = g.map_to_original(g.map_to_model(heat, "bilinear"), "bilinear")
    inside = boxes_to_mask(box, hw)
    mass = np.nansum(back)
    assert mass == pytest.approx(heat.sum(), rel=0.03)
    assert np.nansum(back[inside]) / mass > 0.9
    # all the mass lies within two model pixels (2 / scale original pixels) of the box
    margin = 2 / min(g.scale_yx)
    grown = boxes_to_mask(box + np.array([[-margin, -margin, 2 * margin, 2 * margin]]), hw)
    assert np.nansum(back[grown]) / mass > 0.999
    # and its centre of mass does not move (a half-pixel convention error would shift it by 1/scale / 2)
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    weights = np.nan_to_num(back)
    assert (weights * xx).sum() / weights.sum() + 0.5 == pytest.approx(60 + 45, abs=0.3)
    assert (weights * yy).sum() / weights.sum() + 0.5 == pytest.approx(80 + 30, abs=0.3)


def test_map_to_original_nan_exactly_where_crop_cut():
    g = Geometry.resize_shorter_and_center_crop((300, 200), 64)
    back = g.map_to_original(np.ones((64, 64), np.float32))
    cut = np.isnan(back)
    # 16 resized rows = 50 original rows are cut at top and at bottom
    assert cut[:50].all() and cut[250:].all() and not cut[50:250].any()
    np.testing.assert_allclose(back[50:250], 1.0)


def test_map_to_original_after_padding_has_no_nan_and_drops_padding():
    g = Geometry.resize_to_fit_and_pad((300, 200), 60)
    model = np.zeros((60, 60), np.float32)
    model[:, :10] = 100.0  # padding only
    back = g.map_to_original(model)
    assert back.shape == (300, 200) and not np.isnan(back).any() and back.max() == 0.0


@pytest.mark.parametrize("hw", [(300, 200), (190, 410)])
def test_mask_round_trip_keeps_a_mask(hw):
    g = Geometry.resize_shorter_and_center_crop(hw, 64)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    cy, cx = hw[0] / 2 + rng.integers(-10, 10), hw[1] / 2 + rng.integers(-10, 10)
    mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < 40**2).astype(np.uint8)
    model = g.map_to_model(mask, "nearest")
    assert model.dtype == np.uint8 and set(np.unique(model)) <= {0, 1}
    back = g.map_to_original(model, "nearest")
    valid = ~np.isnan(back)
    assert set(np.unique(back[valid])) <= {0.0, 1.0}
    inter = ((back == 1) & (mask == 1)).sum()
    union = ((back == 1) | (mask == 1)).sum()
    assert inter / union > 0.9
    # no dilation: the mask's area is kept to within the boundary ring of one model pixel
    assert abs((back == 1).sum() - mask.sum()) < 0.1 * mask.sum()


def test_identity_geometry_leaves_arrays_alone():
    g = Geometry.identity((20, 30))
    arr = np.arange(600, dtype=np.float32).reshape(20, 30)
    np.testing.assert_array_equal(g.map_to_model(arr), arr)
    np.testing.assert_array_equal(g.map_to_original(arr), arr)


def test_map_to_model_channel_last_and_shape_errors():
    g = Geometry.resize_shorter_and_center_crop((40, 60), 20)
    rgb = np.zeros((40, 60, 3), np.float32)
    rgb[..., 1] = 1.0
    out = g.map_to_model(rgb)
    assert out.shape == (20, 20, 3)
    np.testing.assert_allclose(out[..., 1], 1.0)
    np.testing.assert_allclose(out[..., 0], 0.0)
    with pytest.raises(ValueError, match="spatial size"):
        g.map_to_model(np.zeros((60, 40)))
    with pytest.raises(ValueError, match=r"\(n, 4\)"):
        g.boxes_to_model(np.zeros((2, 3)))


def test_clip_boxes_and_raster():
    clipped = clip_boxes([[-5, 2, 10, 4], [50, 50, 5, 5]], (20, 30))
    np.testing.assert_allclose(clipped, [[0, 2, 5, 4], [30, 20, 0, 0]])
    mask = boxes_to_mask([[1, 2, 3, 1]], (5, 6))
    expected = np.zeros((5, 6), bool)
    expected[2, 1:4] = True
    np.testing.assert_array_equal(mask, expected)
