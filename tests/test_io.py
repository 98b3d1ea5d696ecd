"""Atomic writes and the skipped-items record."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxr_fgbg.io import (
    SkippedLog,
    atomic_path,
    save_npz_atomic,
    write_csv_atomic,
    write_json_atomic,
    write_text_atomic,
)


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_existing_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_npz_and_csv_round_trip(tmp_path):
    save_npz_atomic(tmp_path / "a.npz", heatmap=np.arange(6, dtype=np.float32).reshape(2, 3))
    assert np.load(tmp_path / "a.npz")["heatmap"].sum() == 15
    write_csv_atomic(tmp_path / "t.csv", pd.DataFrame({"x": [1, 2]}))
    assert pd.read_csv(tmp_path / "t.csv")["x"].tolist() == [1, 2]


def test_skipped_log_writes_resumes_and_deduplicates(tmp_path):
    path = tmp_path / "skipped.csv"
    log = SkippedLog(path)
    log.add("files/p10/a.dcm", "truncated DICOM")
    log.add("files/p10/a.dcm", "truncated DICOM")
    log.add("files/p10/b.dcm", "lateral view", stage="index")
    log.write()
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["path"], r["reason"]) for r in rows] == [
        ("files/p10/a.dcm", "truncated DICOM"),
        ("files/p10/b.dcm", "lateral view"),
    ]
    assert rows[1]["stage"] == "index"
    resumed = SkippedLog(path)
    resumed.add("files/p10/c.dcm", "no report")
    assert len(resumed) == 3
    assert resumed.reasons() == {"truncated DICOM": 1, "lateral view": 1, "no report": 1}
    fresh = SkippedLog(path, resume=False)
    assert len(fresh) == 0


def test_skipped_summary_counts_reasons_most_frequent_first(tmp_path):
    log = SkippedLog(tmp_path / "skipped.csv")
    assert log.summary() == "no samples skipped"
    for name in ("a", "b", "c"):
        log.add(f"maps/{name}.npz", "image file not found")
    log.add("maps/d.npz", "empty M_pre")
    log.add("maps/e.npz", "bad geometry")
    assert log.summary() == (
        f"5 samples skipped: 3 image file not found, 1 bad geometry, 1 empty M_pre; see {tmp_path / 'skipped.csv'}"
    )
    one = SkippedLog(tmp_path / "other.csv")
    one.add("x.png", "unreadable")
    assert one.summary("mask") == f"1 mask skipped: 1 unreadable; see {tmp_path / 'other.csv'}"


def test_empty_skipped_log_still_writes_a_header(tmp_path):
    path = SkippedLog(tmp_path / "skipped.csv").write()
    assert path.read_text().strip() == "path,reason"


def test_json_is_strict_with_non_finite_values_as_null(tmp_path):
    import json

    path = tmp_path / "s.json"
    write_json_atomic(path, {"cnr": float("inf"), "auroc": np.float32(0.75), "n": np.int64(3), "x": [float("nan")]})
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}")) == {
        "cnr": None, "auroc": 0.75, "n": 3, "x": [None],
    }


def test_read_table_names_the_file_and_the_missing_columns(tmp_path):
    from cxr_fgbg.errors import InputDataError
    from cxr_fgbg.io import read_table

    good = tmp_path / "t.csv"
    good.write_text("sample_id,split\n007,\n")
    frame = read_table(good, ["sample_id"])
    assert frame["sample_id"].tolist() == ["007"] and frame["split"].tolist() == [""]  # strings, no NaN
    expected = r"t\.csv: missing column\(s\) image_path, boxes \(has: sample_id, split\)"
    with pytest.raises(InputDataError, match=expected):
        read_table(good, ["sample_id", "image_path", "boxes"])
    with pytest.raises(InputDataError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv", [])
    broken = tmp_path / "broken.csv"
    broken.write_bytes(b'a,b\n"unterminated\n')
    with pytest.raises(InputDataError, match=r"broken\.csv: not a readable CSV"):
        read_table(broken, ["a"])
    assert read_table(pd.DataFrame({"x": [1]}, index=[5]), ["x"]).index.tolist() == [0]


def test_skipped_log_forgets_items_done_later(tmp_path):
    log = SkippedLog(tmp_path / "skipped.csv")
    log.add("a.dcm", "image file not found", sample_id="s1")
    log.add("b.dcm", "image file not found", sample_id="s2")
    log.write()
    resumed = SkippedLog(tmp_path / "skipped.csv")
    resumed.forget(sample_id="s1")
    resumed.forget(sample_id="unknown")
    assert [row["sample_id"] for row in resumed] == ["s2"]
    with pytest.raises(ValueError, match="at least one"):
        resumed.forget()


def test_recorded_image_root_reads_every_index_kind(tmp_path):
    from cxr_fgbg.errors import InputDataError
    from cxr_fgbg.io import recorded_image_root

    assert recorded_image_root(tmp_path) is None  # no index.json
    for key in ("mimic_root", "root", "image_root"):
        (tmp_path / "index.json").write_text(json.dumps({key: "/data/x", "dataset": "cub"}))
        assert recorded_image_root(tmp_path) == Path("/data/x")
    (tmp_path / "index.json").write_text(json.dumps({"dataset": "cub"}))
    assert recorded_image_root(tmp_path) is None
    (tmp_path / "index.json").write_text("{not json")
    assert recorded_image_root(tmp_path) is None
    with pytest.raises(InputDataError, match=r"index\.json: not valid JSON"):
        recorded_image_root(tmp_path, strict=True)
