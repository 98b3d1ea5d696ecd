"""Per-class means, the macro average over classes, and seeded 95% bootstrap intervals.

Samples are resampled within each class; the macro interval averages the per-class resampled means of
the same draws (a stratified bootstrap). The draws depend only on the seed and the class name, so the
attention maps and every baseline are resampled identically (paired intervals) and a rerun reproduces
the same numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from cxr_fgbg.seeding import numpy_rng

__all__ = ["summarise", "summarise_classes"]


def _clean(value: float) -> float | None:
    """JSON-friendly number: NaN becomes null (undefined), infinities are kept."""
    value = float(value)
    return None if math.isnan(value) else value


def _nanmean(values: np.ndarray, axis: int | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice is a defined NaN here
        return np.nanmean(values, axis=axis)


def _interval(draws: np.ndarray) -> list[float | None]:
    finite = draws[~np.isnan(draws)]
    if finite.size == 0:
        return [None, None]
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return [_clean(lo), _clean(hi)]


def _draws(n: int, n_boot: int, seed: int, category: str) -> np.ndarray:
    return numpy_rng(seed, "bootstrap", category).integers(0, n, size=(n_boot, n))


def summarise_classes(
    values: dict[str, dict[str, np.ndarray]],
    metrics: Sequence[str],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """Summary of per-sample values grouped as {class: {metric: array}}: `classes` and `macro` objects.

    Each metric gets `mean` (NaN samples excluded), `ci95` ([low, high], null without bootstrap) and `n`
    (samples with a defined value). The macro mean is the unweighted mean of the class means.
    """
    classes: dict[str, Any] = {}
    boot_means: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    class_means: dict[str, list[float]] = {m: [] for m in metrics}
    total = 0
    for category in sorted(values):
        columns = values[category]
        n = len(next(iter(columns.values()))) if columns else 0
        total += n
        entry: dict[str, Any] = {"n": n}
        draws = _draws(n, n_boot, seed, category) if n_boot > 0 and n > 0 else None
        for metric in metrics:
            column = np.asarray(columns.get(metric, np.full(n, np.nan)), dtype=np.float64)
            mean = float(_nanmean(column)) if n else float("nan")
            if draws is not None:
                resampled = _nanmean(column[draws], axis=1)
                ci = _interval(resampled)
                boot_means[metric].append(resampled)
            else:
                ci = [None, None]
            entry[metric] = {"mean": _clean(mean), "ci95": ci, "n": int(np.count_nonzero(~np.isnan(column)))}
            class_means[metric].append(mean)
        classes[category] = entry
    macro: dict[str, Any] = {"n_classes": len(classes), "n": total}
    for metric in metrics:
        means = np.asarray(class_means[metric], dtype=np.float64)
        ci: list[float | None] = [None, None]
        if boot_means[metric]:
            ci = _interval(_nanmean(np.stack(boot_means[metric]), axis=0))
        macro[metric] = {
            "mean": _clean(_nanmean(means)) if means.size else None,
            "ci95": ci,
            "n_classes": int(np.count_nonzero(~np.isnan(means))),
        }
    return {"classes": classes, "macro": macro}


def summarise(
    frame: Any, metrics: Sequence[str], n_boot: int, seed: int, class_column: str = "category_name",
    prefix: str = "",
) -> dict[str, Any]:
    """`summarise_classes` over a per-sample DataFrame whose metric columns are `prefix + metric`."""
    values: dict[str, dict[str, np.ndarray]] = {}
    for category, group in frame.groupby(class_column, sort=True):
        values[str(category)] = {
            m: group[prefix + m].to_numpy(dtype=np.float64) if prefix + m in group else np.full(len(group), np.nan)
            for m in metrics
        }
    return summarise_classes(values, metrics, n_boot, seed)
