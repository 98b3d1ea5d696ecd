"""A disk cache of preprocessed images, so a second epoch or a second stage decodes no DICOM.

Entries are keyed by the file's absolute path, its size and modification time, and the transform
parameters: editing a file or changing the model size makes a new key, never a stale hit. Each
entry is one ``.npz`` (the image quantised to uint16 on [0, 1] plus the geometry as JSON), written
atomically, so concurrent workers or an interrupted run never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cxr_fgbg.data.geometry import Geometry
from cxr_fgbg.io import save_npz_atomic

__all__ = ["PreprocessedCache"]

_LOG = logging.getLogger(__name__)
_LEVELS = 65535.0


class PreprocessedCache:
    """``get_or_compute(path, params, compute)`` returns (array in [0, 1], Geometry).

    `compute` is called only on a miss. The value returned on a miss is the same as a later hit
    returns (both go through the uint16 quantisation, step 1.5e-5), so results never depend on
    whether the cache was warm.
    """

    def __init__(self, cache_dir: str | os.PathLike[str]) -> None:
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0

    def key(self, path: str | os.PathLike[str], params: Mapping[str, Any]) -> str:
        file = Path(path).resolve()
        stat = file.stat()
        payload = json.dumps(
            {"path": str(file), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "params": dict(params)},
            sort_keys=True, default=str,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.npz"

    def get_or_compute(
        self,
        path: str | os.PathLike[str],
        params: Mapping[str, Any],
        compute: Callable[[], tuple[np.ndarray, Geometry]],
    ) -> tuple[np.ndarray, Geometry]:
        entry = self.entry_path(self.key(path, params))
        if entry.is_file():
            try:
                with np.load(entry) as data:
                    array = data["image"].astype(np.float32) / _LEVELS
                    geometry = Geometry.from_dict(str(data["geometry"]))
                self.hits += 1
                return array, geometry
            except Exception as exc:  # a damaged entry is recomputed, not fatal
                _LOG.warning("cache entry %s unreadable (%s); recomputing", entry, exc)
        self.misses += 1
        array, geometry = compute()
        clipped = np.clip(np.asarray(array, dtype=np.float32), 0.0, 1.0)
        quantised = np.round(clipped * _LEVELS).astype(np.uint16)
        save_npz_atomic(entry, image=quantised, geometry=np.array(geometry.to_json()))
        return quantised.astype(np.float32) / _LEVELS, geometry
