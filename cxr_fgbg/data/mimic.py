"""Index a MIMIC-CXR (DICOM) or MIMIC-CXR-JPG tree: one row per usable frontal image with its report text.

Why an index: fine-tuning and evaluation should read a table a person can open, where every image left
out is listed with the reason (``skipped.csv``), and where each image file has been opened once (header
and pixel-data length) so a truncated file is caught here rather than in the middle of training.
MS-CXR patients are held out of the train/validate rows so fine-tuning never sees evaluation patients.
The outputs follow docs/architecture.md ("Index").
"""

from __future__ import annotations

import csv
import datetime as _dt
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import read_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "STUDIES_COLUMNS",
    "IndexSummary",
    "build_index",
    "find_metadata_file",
    "load_metadata",
    "scan_image_tree",
]

log = logging.getLogger(__name__)

STUDIES_COLUMNS: tuple[str, ...] = (
    "subject_id", "study_id", "dicom_id", "image_path", "view_position", "split",
    "impression", "findings", "text", "text_source", "image_width", "image_height",
)
IMAGE_SUFFIXES: tuple[str, ...] = (".dcm", ".jpg", ".jpeg", ".png")
FINETUNE_SPLITS = frozenset({"train", "validate"})
_SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
_METADATA_COLUMNS = ("dicom_id", "ViewPosition")
_PROBE_CACHE = "probe_cache.csv"
_PROBE_FIELDS = ("image_path", "size", "mtime_ns", "ok", "width", "height", "reason", "detail")
_CHECKPOINT_EVERY = 20_000


@dataclass
class IndexSummary:
    """Counts of what `build_index` wrote and left out, printed by the CLI."""

    out_dir: Path
    images_on_disk: int = 0
    images_probed: int = 0
    probe_seconds: float = 0.0
    studies_rows: int = 0
    by_split: dict[str, int] = field(default_factory=dict)
    by_view: dict[str, int] = field(default_factory=dict)
    by_text_source: dict[str, int] = field(default_factory=dict)
    ms_cxr_samples: int | None = None
    ms_cxr_patients: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def format(self) -> str:
        """A short, human-readable summary (no patient ids, no report text)."""

        def counts(mapping: dict[str, int]) -> str:
            return ", ".join(f"{key or '<empty>'}: {value}" for key, value in sorted(mapping.items())) or "none"

        lines = [
            f"index written to {self.out_dir}",
            f"  image files on disk: {self.images_on_disk}, opened and checked: {self.images_probed}"
            + (f" ({self.images_probed / self.probe_seconds:.0f} files/s)" if self.probe_seconds > 0 else ""),
            f"  studies.csv rows: {self.studies_rows}",
            f"    by split: {counts(self.by_split)}",
            f"    by view: {counts(self.by_view)}",
            f"    by text source: {counts(self.by_text_source)}",
        ]
        if self.ms_cxr_samples is not None:
            lines.append(f"  ms_cxr.csv samples: {self.ms_cxr_samples} (from {self.ms_cxr_patients} patients)")
        total = sum(self.skipped.values())
        lines.append(f"  skipped.csv rows: {total}")
        for reason, count in sorted(self.skipped.items(), key=lambda item: -item[1]):
            lines.append(f"    {count:>8}  {reason}")
        lines.append(f"  took {self.seconds:.1f} s")
        return "\n".join(lines)


def find_metadata_file(root: Path, kind: str) -> Path:
    """``mimic-cxr-*-{kind}.csv`` or ``.csv.gz`` in the root or its parent (the JPG release keeps them there)."""
    for folder in (root, root.parent):
        for pattern in (f"mimic-cxr-*-{kind}.csv", f"mimic-cxr-*-{kind}.csv.gz"):
            matches = sorted(folder.glob(pattern))
            if matches:
                return matches[-1]
    raise InputDataError(
        f"{root}: no mimic-cxr-2.0.0-{kind}.csv(.gz) found in this folder or its parent; "
        "it comes with MIMIC-CXR-JPG (download it beside the files/ folder)"
    )


def load_metadata(root: str | os.PathLike[str]) -> pd.DataFrame:
    """The split file joined with the view position: dicom_id, subject_id, study_id, split, view_position."""
    base = Path(root)
    split = read_table(find_metadata_file(base, "split"), _SPLIT_COLUMNS)
    meta = read_table(find_metadata_file(base, "metadata"), _METADATA_COLUMNS)
    split = split[list(_SPLIT_COLUMNS)].drop_duplicates("dicom_id")
    views = meta[["dicom_id", "ViewPosition"]].drop_duplicates("dicom_id").rename(
        columns={"ViewPosition": "view_position"}
    )
    merged = split.merge(views, on="dicom_id", how="left")
    merged["view_position"] = merged["view_position"].fillna("").str.strip().str.upper()
    for column in ("subject_id", "study_id", "split", "dicom_id"):
        merged[column] = merged[column].str.strip()
    return merged


def scan_image_tree(root: str | os.PathLike[str]) -> dict[str, str]:
    """dicom_id -> image path relative to ``root`` for every image under ``root/files``.

    When one id exists with several suffixes, the first of ``.dcm, .jpg, .jpeg, .png`` wins.
    """
    base = Path(root)
    found: dict[str, str] = {}
    rank = {suffix: k for k, suffix in enumerate(IMAGE_SUFFIXES)}
    for folder, _dirs, files in os.walk(base / "files"):
        relative_folder = Path(folder).relative_to(base).as_posix()
        for name in files:
            stem, dot, ext = name.rpartition(".")
            suffix = f".{ext.lower()}"
            if not dot or suffix not in rank or name.startswith("."):
                continue
            current = found.get(stem)
            if current is None or rank[suffix] < rank[Path(current).suffix.lower()]:
                found[stem] = f"{relative_folder}/{name}"
    return found


def _probe_task(path: str) -> tuple[bool, int, int, str, str, int, int]:
    """Worker: probe one file and stat it (module level so a process pool can pickle it)."""
    from cxr_fgbg.data.dicom_header import probe_image

    try:
        stat = os.stat(path)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError as exc:
        return False, 0, 0, "image file unreadable", str(exc), -1, -1
    probe = probe_image(path)
    return probe.ok, probe.width, probe.height, probe.reason, probe.detail, size, mtime


def _run_probes(paths: Sequence[str], workers: int, progress: bool) -> Iterator[tuple[Any, ...]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(paths), desc="checking image files", unit="file", disable=not progress or not paths)
    try:
        if workers <= 1 or len(paths) < 2 * workers:
            for path in paths:
                yield _probe_task(path)
                bar.update(1)
        else:
            chunk = max(1, min(256, len(paths) // (workers * 8)))
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for result in pool.map(_probe_task, paths, chunksize=chunk):
                    yield result
                    bar.update(1)
    finally:
        bar.close()


def _load_probe_cache(path: Path) -> dict[str, dict[str, str]]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["image_path"]: row for row in csv.DictReader(handle)}


def _write_probe_cache(path: Path, cache: dict[str, dict[str, str]]) -> None:
    from cxr_fgbg.io import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(_PROBE_FIELDS))
        writer.writeheader()
        writer.writerows(cache.values())


def _probe_all(
    root: Path, relatives: Sequence[str], cache_path: Path, workers: int, progress: bool
) -> tuple[dict[str, dict[str, str]], int, float]:
    """Probe files not already in the cache with the same size and mtime; checkpoint as it goes."""
    cache = _load_probe_cache(cache_path)
    todo = []
    for relative in relatives:
        entry = cache.get(relative)
        if entry is not None:
            try:
                stat = (root / relative).stat()
            except OSError:
                stat = None
            if stat is not None and entry["size"] == str(stat.st_size) and entry["mtime_ns"] == str(stat.st_mtime_ns):
                continue
        todo.append(relative)
    start = time.perf_counter()
    done = 0
    absolute = [str(root / relative) for relative in todo]
    for relative, result in zip(todo, _run_probes(absolute, workers, progress), strict=True):
        ok, width, height, reason, detail, size, mtime = result
        cache[relative] = {
            "image_path": relative, "size": str(size), "mtime_ns": str(mtime), "ok": "1" if ok else "0",
            "width": str(width), "height": str(height), "reason": reason, "detail": detail,
        }
        done += 1
        if done % _CHECKPOINT_EVERY == 0:
            _write_probe_cache(cache_path, cache)
    elapsed = time.perf_counter() - start
    _write_probe_cache(cache_path, cache)
    return cache, done, elapsed


def _read_report(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def build_index(
    mimic_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    ms_cxr_csv: str | os.PathLike[str] | None = None,
    views: Iterable[str] = ("PA", "AP"),
    keep_ms_cxr_patients: bool = False,
    workers: int = 2,
    progress: bool = True,
    reports_root: str | os.PathLike[str] | None = None,
    box_tolerance: float = 1.0,
    aspect_tolerance: float = 0.02,
) -> IndexSummary:
    """Write ``studies.csv``, ``ms_cxr.csv`` (when ``ms_cxr_csv`` is given), ``index.json`` and ``skipped.csv``.

    ``reports_root`` is where ``files/pXX/pSUBJECT/sSTUDY.txt`` live when not beside the images (the
    JPG release has no reports). Image checks are cached in ``probe_cache.csv`` (by size and
    modification time), so a rerun after an interruption only opens the files not yet checked.
    """
    import pandas as pd

    from cxr_fgbg import __version__
    from cxr_fgbg.data.mscxr import group_samples, read_ms_cxr, resolve_samples, samples_to_frame
    from cxr_fgbg.data.reports import extract_sections
    from cxr_fgbg.io import SkippedLog, write_csv_atomic, write_json_atomic

    started = time.perf_counter()
    root = Path(mimic_root).expanduser().resolve()
    out = Path(out_dir)
    report_base = Path(reports_root).expanduser().resolve() if reports_root is not None else root
    wanted_views = [v.strip().upper() for v in views if v.strip()]
    if not (root / "files").is_dir():
        raise InputDataError(f"{root}: no files/ folder; expected the MIMIC-CXR layout files/pXX/pSUBJECT/sSTUDY/")
    skipped = SkippedLog(out / "skipped.csv", resume=False)  # the index is rebuilt whole: no stale reasons
    summary = IndexSummary(out_dir=out)
    metadata = load_metadata(root)
    on_disk = scan_image_tree(root)
    summary.images_on_disk = len(on_disk)
    default_suffix = Counter(Path(p).suffix for p in on_disk.values()).most_common(1)
    default_suffix_str = default_suffix[0][0] if default_suffix else ".dcm"

    # MS-CXR first: its patients decide which train/validate rows are held out.
    ms_samples = None
    if ms_cxr_csv is not None:
        ms_frame = read_ms_cxr(ms_cxr_csv, skipped=skipped, tolerance=box_tolerance)
        ms_samples = group_samples(ms_frame)
    out.mkdir(parents=True, exist_ok=True)  # only now: input errors above leave nothing behind
    known_ids = set(metadata["dicom_id"])
    for dicom_id, relative in on_disk.items():
        if dicom_id not in known_ids:
            skipped.add(relative, "image not in the MIMIC-CXR split/metadata files")

    candidates: list[dict[str, Any]] = []
    reports: dict[tuple[str, str], Any] = {}
    for record in metadata.to_dict("records"):
        subject, study, dicom_id = record["subject_id"], record["study_id"], record["dicom_id"]
        prefix = f"files/p{subject[:2]}/p{subject}/s{study}"
        relative = on_disk.get(dicom_id)
        if relative is None:
            skipped.add(f"{prefix}/{dicom_id}{default_suffix_str}", "image file missing (listed in metadata)")
            continue
        view = record["view_position"]
        if view not in wanted_views:
            label = view or "unknown"
            skipped.add(relative, f"view {label} not selected (keeping {', '.join(wanted_views)})")
            continue
        key = (subject, study)
        if key not in reports:
            text = _read_report(report_base / f"{prefix}.txt")
            reports[key] = None if text is None else extract_sections(text)
        sections = reports[key]
        if sections is None:
            skipped.add(relative, "report missing", detail=f"{prefix}.txt")
            continue
        if sections.is_empty:
            skipped.add(relative, "report has no usable text (impression and findings empty)", detail=f"{prefix}.txt")
            continue
        candidates.append({
            "subject_id": subject, "study_id": study, "dicom_id": dicom_id, "image_path": relative,
            "view_position": view, "split": record["split"], "impression": sections.impression,
            "findings": sections.findings, "text": sections.text, "text_source": sections.text_source,
        })

    probes, probed, probe_seconds = _probe_all(
        root, [c["image_path"] for c in candidates], out / _PROBE_CACHE, workers, progress
    )
    summary.images_probed, summary.probe_seconds = probed, probe_seconds
    sizes = {path: (int(p["width"]), int(p["height"])) for path, p in probes.items() if p["ok"] == "1"}

    held_out: set[str] = set()
    if ms_samples is not None:
        resolved = resolve_samples(
            ms_samples, root, skipped=skipped, image_paths=on_disk, image_sizes=sizes,
            aspect_tolerance=aspect_tolerance,
        )
        subject_of = dict(zip(metadata["dicom_id"], metadata["subject_id"], strict=True))
        study_of = dict(zip(metadata["dicom_id"], metadata["study_id"], strict=True))
        import dataclasses

        resolved = [dataclasses.replace(
            s, subject_id=subject_of.get(s.dicom_id, s.subject_id), study_id=study_of.get(s.dicom_id, s.study_id)
        ) for s in resolved]
        # Every patient named in the MS-CXR file is held out, resolved on disk or not.
        held_out = {subject_of.get(s.dicom_id, s.subject_id) for s in ms_samples} - {""}
        write_csv_atomic(out / "ms_cxr.csv", samples_to_frame(resolved))
        summary.ms_cxr_samples, summary.ms_cxr_patients = len(resolved), len(held_out)

    rows = []
    for candidate in candidates:
        probe = probes[candidate["image_path"]]
        if probe["ok"] != "1":
            skipped.add(candidate["image_path"], probe["reason"], detail=probe["detail"])
            continue
        if not keep_ms_cxr_patients and candidate["split"] in FINETUNE_SPLITS and candidate["subject_id"] in held_out:
            skipped.add(candidate["image_path"], "MS-CXR patient held out of train/validate")
            continue
        candidate["image_width"], candidate["image_height"] = int(probe["width"]), int(probe["height"])
        rows.append(candidate)
    studies = pd.DataFrame(rows, columns=list(STUDIES_COLUMNS))
    write_csv_atomic(out / "studies.csv", studies)
    skipped.write()

    summary.studies_rows = len(studies)
    summary.by_split = {str(k): int(v) for k, v in studies["split"].value_counts().items()}
    summary.by_view = {str(k): int(v) for k, v in studies["view_position"].value_counts().items()}
    summary.by_text_source = {str(k): int(v) for k, v in studies["text_source"].value_counts().items()}
    summary.skipped = skipped.reasons()
    summary.seconds = time.perf_counter() - started
    write_json_atomic(out / "index.json", {
        "mimic_root": str(root),
        "reports_root": str(report_base),
        "ms_cxr_csv": str(Path(ms_cxr_csv).resolve()) if ms_cxr_csv is not None else None,
        "views": wanted_views,
        "keep_ms_cxr_patients": keep_ms_cxr_patients,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "cxr_fgbg_version": __version__,
        "counts": {
            "studies_rows": summary.studies_rows, "by_split": summary.by_split, "by_view": summary.by_view,
            "by_text_source": summary.by_text_source, "ms_cxr_samples": summary.ms_cxr_samples,
            "skipped": summary.skipped,
        },
    })
    log.info("indexed %d images (%d skipped)", summary.studies_rows, sum(summary.skipped.values()))
    return summary
