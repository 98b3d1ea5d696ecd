"""Atomic file output and the `skipped.csv` record shared by every batch stage.

Every output goes to a temporary file in the destination folder and is renamed into place, so an
interrupted run never leaves a half-written file that a resumed run would mistake for a result.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.errors import InputDataError

SKIPPED_COLUMNS = ("path", "reason")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path`, on error delete it.

    The temporary name keeps the final suffix (or `suffix`) so libraries that infer the format
    from the extension (PIL, nibabel, numpy) write the right one.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix if suffix is not None else "".join(target.suffixes),
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Strict JSON (readable by any parser): NaN and infinities are written as null."""
    write_text_atomic(path, json.dumps(_finite_or_none(obj), indent=2, allow_nan=False) + "\n")


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _finite_or_none(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(value) for value in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


INDEX_ROOT_KEYS = ("mimic_root", "root", "image_root")


def recorded_image_root(folder: str | os.PathLike[str], strict: bool = False) -> Path | None:
    """The image root an `index.json` in `folder` records (`mimic_root` of `cxr-fgbg index` and `localize`,
    `root` of `index-natural`, `image_root`), or None when there is none.

    Every stage that reads a table of relative image paths asks this one function, so the stages agree on
    where images are. `strict`: an unreadable index.json is an InputDataError instead of "no root".
    """
    from cxr_fgbg.errors import InputDataError

    meta = Path(folder) / "index.json"
    if not meta.is_file():
        return None
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if strict:
            raise InputDataError(f"{meta}: not valid JSON ({exc})") from exc
        return None
    for key in INDEX_ROOT_KEYS:
        if isinstance(recorded, dict) and isinstance(recorded.get(key), str) and recorded[key]:
            return Path(recorded[key])
    return None


def read_table(table: Any, required: Sequence[str] = ()) -> Any:
    """Read a CSV as strings (no NaN guessing), or take a DataFrame, and check its columns.

    Every stage reads its input tables through this, so a bad table always gets the same clear error:
    the file and the missing column(s).
    """
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        frame, name = table.reset_index(drop=True), "<DataFrame>"
    else:
        name = str(table)
        if not Path(table).is_file():
            raise InputDataError(f"{name}: file not found")
        try:
            frame = pd.read_csv(table, dtype=str, keep_default_na=False)
        except Exception as exc:  # pandas raises several parser errors; all mean the same thing here
            raise InputDataError(f"{name}: not a readable CSV ({exc})") from exc
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise InputDataError(
            f"{name}: missing column(s) {', '.join(missing)} (has: {', '.join(map(str, frame.columns))})"
        )
    return frame


def write_csv_atomic(path: str | os.PathLike[str], frame: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (no index column)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_npz_atomic(path: str | os.PathLike[str], **arrays: Any) -> None:
    """`np.savez_compressed` through a temporary file."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


class SkippedLog:
    """Collects the items a batch job leaves out, with the reason, and writes `skipped.csv`.

    Nothing is ever dropped silently: every stage that skips an item adds it here. Rows already in an
    existing file are kept (a resumed run appends to what the interrupted run recorded), and a row is
    recorded once however often it is added.
    """

    def __init__(self, path: str | os.PathLike[str], resume: bool = True) -> None:
        self.path = Path(path)
        self._rows: dict[tuple[str, str], dict[str, str]] = {}
        if resume and self.path.exists():
            with self.path.open(newline="", encoding="utf-8") as handle:
                for row in csv.DictReader(handle):
                    self._rows[(row["path"], row["reason"])] = dict(row)

    def add(self, path: str | os.PathLike[str], reason: str, **extra: Any) -> None:
        row = {"path": str(path), "reason": str(reason), **{k: str(v) for k, v in extra.items()}}
        self._rows[(row["path"], row["reason"])] = row

    def forget(self, **match: Any) -> None:
        """Drop the rows whose columns equal `match` (e.g. `sample_id=...`) before a resumed run handles that item
        again: skipped.csv then holds this run's outcome only, never an item beside its output or twice."""
        if not match:
            raise ValueError("forget() needs at least one column=value to match")
        wanted = {k: str(v) for k, v in match.items()}
        self._rows = {key: row for key, row in self._rows.items()
                      if any(row.get(k) != v for k, v in wanted.items())}

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, str]]:
        return iter(self._rows.values())

    def reasons(self) -> dict[str, int]:
        """Count of skipped items per reason, for a one-line summary in the log."""
        counts: dict[str, int] = {}
        for row in self._rows.values():
            counts[row["reason"]] = counts.get(row["reason"], 0) + 1
        return counts

    def summary(self, noun: str = "sample") -> str:
        """One log line that stays short however many items were skipped: the count of each reason (most
        frequent first) and where the full list is, e.g. '3 samples skipped: 2 image file not found,
        1 empty M_pre; see out/skipped.csv'. Reasons aggregate only when they are fixed phrases; the
        item's path belongs in the `path` column, not in the reason."""
        total = len(self)
        if total == 0:
            return f"no {noun}s skipped"
        ranked = sorted(self.reasons().items(), key=lambda item: (-item[1], item[0]))
        counts = ", ".join(f"{count} {reason}" for reason, count in ranked)
        return f"{total} {noun}{'' if total == 1 else 's'} skipped: {counts}; see {self.path}"

    def write(self) -> Path:
        """Write the file (also when empty, so a reader can tell that nothing was skipped)."""
        columns = list(SKIPPED_COLUMNS)
        for row in self._rows.values():
            columns.extend(key for key in row if key not in columns)
        with atomic_path(self.path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(self._rows.values())
        return self.path
