"""Loading (DICOM / PNG / JPG), intensity scaling, the dictionary chain and the preprocessed cache."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from cxr_fgbg.data import transforms
from cxr_fgbg.data.cache import PreprocessedCache
from cxr_fgbg.data.geometry import Geometry
from cxr_fgbg.data.transforms import (
    build_preprocess,
    load_image,
    percentile_pair,
    preprocess_file,
    preprocess_image,
    read_image,
    scale_intensity,
)
from cxr_fgbg.errors import InputDataError
from cxr_fgbg.evaluation.boxes import boxes_to_mask


def write_dicom(path, pixels, photometric="MONOCHROME2", slope=None, intercept=None, pixel_data=True):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[str(path)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if pixel_data:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(h=30, w=50):
    """Distinct H and W, and a value that encodes its own (row, column): transposition shows."""
    rows, cols = np.mgrid[:h, :w]
    return (rows * 100 + cols).astype(np.uint16)


def test_dicom_numpy_order_with_rescale(tmp_path):
    pixels = ramp()
    path = write_dicom(tmp_path / "a.dcm", pixels, slope=2, intercept=-100)
    image = load_image(path)
    assert image.dtype == np.float32 and image.shape == (30, 50)
    assert image[3, 7] == (3 * 100 + 7) * 2 - 100
    np.testing.assert_array_equal(image, pixels.astype(np.float32) * 2 - 100)


def test_dicom_monochrome1_is_inverted(tmp_path):
    pixels = ramp()
    image = load_image(write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1"))
    # 16 bits stored: the header's range 0..65535 is mirrored, so stored 0 becomes 65535
    assert image[0, 0] == 65535 and image[-1, -1] == 65535 - pixels[-1, -1]
    np.testing.assert_array_equal(image, 65535.0 - pixels.astype(np.float32))
    # with slope 2, intercept -10 the range -10..131060 is mirrored onto itself: v -> 131060 - 2 v
    rescaled = load_image(write_dicom(tmp_path / "m1r.dcm", pixels, photometric="MONOCHROME1", slope=2,
                                      intercept=-10))
    np.testing.assert_array_equal(rescaled, 131060.0 - 2 * pixels.astype(np.float32))


def test_dicom_bad_inputs_name_the_file(tmp_path):
    bad_pi = write_dicom(tmp_path / "pal.dcm", ramp(), photometric="PALETTE COLOR")
    with pytest.raises(InputDataError, match=r"pal\.dcm.*PhotometricInterpretation 'PALETTE COLOR'"):
        load_image(bad_pi)
    no_pixels = write_dicom(tmp_path / "empty.dcm", ramp(), pixel_data=False)
    with pytest.raises(InputDataError, match=r"empty\.dcm.*no pixel data"):
        load_image(no_pixels)
    full = write_dicom(tmp_path / "full.dcm", ramp()).read_bytes()
    truncated = tmp_path / "trunc.dcm"
    truncated.write_bytes(full[: len(full) - 500])
    with pytest.raises(InputDataError, match=r"trunc\.dcm"):
        load_image(truncated)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not a dicom at all")
    with pytest.raises(InputDataError, match=r"garbage\.dcm"):
        load_image(garbage)
    with pytest.raises(InputDataError, match="not found"):
        load_image(tmp_path / "missing.dcm")


def test_png_grey_rgb_and_16bit(tmp_path):
    grey = (ramp() % 256).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    image, full = read_image(tmp_path / "g.png")
    assert image.shape == (30, 50) and full == 255.0 and image[3, 7] == grey[3, 7]
    rgb = np.zeros((30, 50, 3), np.uint8)
    rgb[5, 9] = (10, 20, 30)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    image = load_image(tmp_path / "c.png")
    assert image.shape == (30, 50, 3) and tuple(image[5, 9]) == (10, 20, 30)
    Image.fromarray(ramp() * 10).save(tmp_path / "w.png")  # 16-bit grey
    image, full = read_image(tmp_path / "w.png")
    assert full == 65535.0 and image[3, 7] == (307 * 10)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0garbage")
    with pytest.raises(InputDataError, match=r"broken\.jpg"):
        load_image(broken)


def test_scale_intensity_percentiles_and_full_scale():
    arr = np.arange(101, dtype=np.float32)
    np.testing.assert_allclose(scale_intensity(arr, (0, 100)), arr / 100, atol=1e-6)
    scaled = scale_intensity(arr, (10, 90))
    assert scaled[10] == pytest.approx(0) and scaled[50] == pytest.approx(0.5) and scaled[90] == pytest.approx(1)
    assert scaled.min() == 0 and scaled.max() == 1  # clipped
    np.testing.assert_allclose(scale_intensity(np.array([0, 51, 255.0]), None, 255.0), [0, 0.2, 1])
    assert not scale_intensity(np.full((4, 4), 7.0)).any()


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.integers(-5000, 5000), min_size=1, max_size=300) | st.lists(st.floats(-1e3, 1e3), min_size=1),
    st.floats(0, 50), st.floats(50, 100),
)
def test_percentile_pair_equals_numpy(values, low, high):
    arr = np.asarray(values, dtype=np.float32)
    expected = np.percentile(arr.astype(np.float64), [low, high])
    np.testing.assert_allclose(percentile_pair(arr, low, high), expected, rtol=1e-6, atol=1e-3)


def test_preprocess_image_shape_range_geometry_and_no_flip():
    image = np.zeros((300, 200), np.float32)
    image[100:200, 10:60] = 1000.0  # a bright block on the image's left
    tensor, geometry = preprocess_image(image, 64, percentiles=(0, 100), channels=3)
    assert tuple(tensor.shape) == (3, 64, 64)
    assert geometry == Geometry.resize_shorter_and_center_crop((300, 200), 64)
    assert float(tensor.min()) >= 0 and float(tensor.max()) <= 1
    assert tensor[0, :, :32].sum() > 10 * tensor[0, :, 32:].sum()  # still on the left
    expected = geometry.boxes_to_model([[10, 100, 50, 100]])[0]  # x 3.2..19.2, y 16..48 in the model
    inside = boxes_to_mask([expected], (64, 64))
    assert tensor[0][torch_bool(inside)].mean() > 0.9 and tensor[0][torch_bool(~inside)].mean() < 0.05


def torch_bool(mask):
    import torch

    return torch.from_numpy(mask)


def test_dictionary_chain_moves_image_mask_and_boxes_together(tmp_path):
    image = np.zeros((120, 80), np.uint8)
    image[40:70, 20:50] = 255
    Image.fromarray(image).save(tmp_path / "x.png")
    mask = (image > 0).astype(np.uint8)
    boxes = np.array([[20, 40, 30, 30]], np.float32)
    chain = build_preprocess(32, percentiles=None, channels=1)
    out = chain({"image": tmp_path / "x.png", "mask": mask, "boxes": boxes})
    geometry = out["geometry"]
    assert out["image"].shape == (1, 32, 32) and out["mask"].shape == (32, 32)
    np.testing.assert_allclose(out["boxes"], geometry.boxes_to_model(boxes))
    raster = boxes_to_mask(out["boxes"], (32, 32))
    assert (raster == out["mask"].astype(bool)).mean() > 0.97
    assert out["image"][0][out["mask"] == 1].mean() > 0.8


def test_preprocess_file_rgb_keeps_colour(tmp_path):
    rgb = np.zeros((40, 60, 3), np.uint8)
    rgb[..., 0] = 255
    Image.fromarray(rgb).save(tmp_path / "red.png")
    tensor, _ = preprocess_file(tmp_path / "red.png", 16, percentiles=None, channels=3)
    assert tuple(tensor.shape) == (3, 16, 16)
    assert float(tensor[0].min()) == pytest.approx(1.0) and float(tensor[1:].max()) == 0.0


def test_cache_second_read_does_not_decode(tmp_path, monkeypatch):
    path = write_dicom(tmp_path / "c.dcm", ramp(60, 90))
    calls = []
    original = transforms._decode_dicom

    def counting(p):
        calls.append(p)
        return original(p)

    monkeypatch.setattr(transforms, "_decode_dicom", counting)
    cache = PreprocessedCache(tmp_path / "cache")
    first, g1 = preprocess_file(path, 32, cache=cache)
    second, g2 = preprocess_file(path, 32, cache=cache)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 1)
    assert g1 == g2 and bool((first == second).all())
    uncached, _ = preprocess_file(path, 32)
    assert float((uncached - first).abs().max()) < 1e-4  # uint16 quantisation only
    preprocess_file(path, 48, cache=cache)  # other parameters: a new entry
    assert len(calls) == 3
    write_dicom(path, ramp(60, 90) + 1)  # file changed: size/mtime key changes
    import os

    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    preprocess_file(path, 32, cache=cache)
    assert len(calls) == 4
    assert not list((tmp_path / "cache").rglob(".*"))  # no temporary files left behind
