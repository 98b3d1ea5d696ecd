"""The cheap per-file check used at indexing time: each kind of damage gets its own reason."""

from __future__ import annotations

from pathlib import Path

from test_mimic_fixtures import write_dicom, write_jpg

from cxr_fgbg.data.dicom_header import probe_image


def test_good_dicom_and_jpg_report_size(tmp_path: Path) -> None:
    dicom = probe_image(write_dicom(tmp_path / "a.dcm", rows=40, columns=32, photometric="MONOCHROME1", bits=8))
    assert (dicom.ok, dicom.width, dicom.height, dicom.photometric, dicom.view_position) == (
        True, 32, 40, "MONOCHROME1", "PA",
    )
    jpg = probe_image(write_jpg(tmp_path / "a.jpg", width=30, height=50))
    assert (jpg.ok, jpg.width, jpg.height) == (True, 30, 50)


def test_dicom_damage_reasons(tmp_path: Path) -> None:
    good = write_dicom(tmp_path / "good.dcm", rows=40, columns=32)  # 2560 bytes of pixels
    data = good.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-100])
    (tmp_path / "header_only.dcm").write_bytes(data[:300])
    (tmp_path / "garbage.dcm").write_bytes(b"not a dicom" * 20)
    (tmp_path / "empty.dcm").write_bytes(b"")
    short = write_dicom(tmp_path / "short.dcm", rows=40, columns=32)
    import pydicom

    ds = pydicom.dcmread(short)
    ds.Rows = 80  # header promises twice the pixels present
    ds.save_as(short)
    cases = {
        "cut.dcm": (
            "truncated DICOM (pixel data runs past the end of the file)",
            f"needs {len(data)} bytes, file has {len(data) - 100}",
        ),
        "short.dcm": ("DICOM pixel data shorter than its header promises", "2560 bytes < 5120 expected"),
        "garbage.dcm": ("not a DICOM file", None),
        "empty.dcm": ("empty file", ""),
    }
    for name, (reason, detail) in cases.items():
        probe = probe_image(tmp_path / name)
        assert (probe.ok, probe.reason) == (False, reason), name
        if detail is not None:
            assert probe.detail == detail, name
    header_only = probe_image(tmp_path / "header_only.dcm")
    assert not header_only.ok and header_only.reason in {
        "DICOM has no pixel data", "unreadable DICOM (truncated or corrupt header)",
    }
    nopix = probe_image(write_dicom(tmp_path / "nopix.dcm", with_pixels=False))
    assert (nopix.ok, nopix.reason) == (False, "DICOM has no pixel data")
    palette = probe_image(write_dicom(tmp_path / "pal.dcm", photometric="PALETTE COLOR"))
    assert (palette.reason, palette.detail) == (
        "unsupported PhotometricInterpretation", "PALETTE COLOR (expected one of MONOCHROME1, MONOCHROME2)",
    )


def test_multiframe_dicom_is_refused(tmp_path: Path) -> None:
    import pydicom

    path = write_dicom(tmp_path / "mf.dcm", rows=4, columns=4)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    ds.PixelData = bytes(4 * 4 * 2 * 2)
    ds.save_as(path)
    probe = probe_image(path)
    assert (probe.ok, probe.reason, probe.detail) == (False, "multi-frame DICOM not supported", "NumberOfFrames=2")


def test_raster_damage_reasons(tmp_path: Path) -> None:
    data = write_jpg(tmp_path / "a.jpg", width=30, height=50).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:-100])
    (tmp_path / "junk.jpg").write_bytes(b"junk" * 30)
    assert probe_image(tmp_path / "cut.jpg").reason == "truncated JPEG (no end-of-image marker)"
    assert probe_image(tmp_path / "junk.jpg").reason == "not an image file"
    missing = probe_image(tmp_path / "nope.jpg")
    assert (missing.ok, missing.reason) == (False, "unreadable image file")
