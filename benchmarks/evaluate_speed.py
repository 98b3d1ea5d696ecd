"""Time `cxr-fgbg evaluate` on MS-CXR-sized input: 1,448 heat maps of 512x512 (target: < 30 s).

Prints (1) the in-memory time of every metric on the maps and both baselines, and (2) the whole batch
evaluation from files (reading the .npz files, scoring, bootstrap intervals, per_sample.csv,
summary.json, report; figures optional). Generating the synthetic maps is not timed.

    .venv/bin/python benchmarks/evaluate_speed.py [--n 1448] [--size 512] [--figures] [--data DIR]

`--data DIR` keeps the generated maps there and reuses them on the next run (generation takes minutes).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cxr_fgbg.evaluation.baselines import ClassLocationPrior, centred_gaussian
from cxr_fgbg.evaluation.metrics import PreparedMap, localisation_scores
from cxr_fgbg.evaluation.run import evaluate_heatmaps
from cxr_fgbg.evaluation.settings import EvaluateSettings
from cxr_fgbg.io import save_npz_atomic

CLASSES = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Lung Opacity",
           "Pleural Effusion", "Pneumonia", "Pneumothorax")


def synthetic(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A smooth blob near a random box plus noise, like an upsampled attention map."""
    w, h = rng.integers(size // 8, size // 3, size=2)
    x, y = rng.integers(0, size - w), rng.integers(0, size - h)
    yy, xx = np.ogrid[:size, :size]
    blob = np.exp(-(((xx - x - w / 2) / w) ** 2 + ((yy - y - h / 2) / h) ** 2))
    heat = (blob + 0.3 * rng.random((size, size))).astype(np.float32)
    return heat, np.array([[x, y, w, h]], dtype=np.float32)


def generate(root: Path, rng: np.random.Generator, n: int, size: int) -> None:
    """n test maps and n/4 training maps (for the class prior) in the localisation stage's format."""
    rows = []
    t0 = time.perf_counter()
    n_train = n // 4
    for i in range(n + n_train):
        heat, boxes = synthetic(rng, size)
        sample_id = f"s{i:05d}"
        save_npz_atomic(root / "maps" / f"{sample_id}.npz", heatmap=heat, boxes=boxes,
                        mask_pre=(heat > 0.8).astype(np.uint8))
        rows.append({"sample_id": sample_id, "dicom_id": sample_id, "category_name": CLASSES[i % 8],
                     "label_text": "", "split": "train" if i >= n else "test", "prompt": "",
                     "npz_path": f"maps/{sample_id}.npz", "image_path": ""})
    pd.DataFrame(rows).to_csv(root / "heatmaps.csv", index=False)
    print(f"generated {n} test + {n_train} training maps of {size}x{size} "
          f"in {time.perf_counter() - t0:.1f} s (not timed below)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1448)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--figures", action="store_true", help="Also draw the report figures.")
    parser.add_argument("--data", type=Path, default=None, help="Keep / reuse the generated maps here.")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "heatmaps"
        if (root / "heatmaps.csv").is_file():
            print(f"reusing the maps in {root}")
        else:
            generate(root, rng, args.n, args.size)

        # (1) metrics in memory: maps + centred Gaussian + class-location prior.
        prior = ClassLocationPrior().fit((CLASSES[i % 8], np.array([[0.3, 0.3, 0.3, 0.3]])) for i in range(64))
        shape = (args.size, args.size)
        gauss = PreparedMap(centred_gaussian(shape), presort=True)  # as the batch run caches them
        priors = [PreparedMap(prior.predict(c, shape), presort=True) for c in CLASSES]
        maps = [synthetic(rng, args.size) for _ in range(min(args.n, 200))]
        t0 = time.perf_counter()
        for i, (heat, boxes) in enumerate(maps):
            localisation_scores(heat, boxes)
            localisation_scores(gauss, boxes)
            localisation_scores(priors[i % 8], boxes)
        per_map = (time.perf_counter() - t0) / len(maps)
        print(f"metrics in memory (maps + 2 baselines): {per_map * 1000:.1f} ms per map, "
              f"{per_map * args.n:.1f} s extrapolated to {args.n} maps")

        # (2) the whole batch from files.
        settings = EvaluateSettings(figures=args.figures)
        t0, c0 = time.perf_counter(), time.process_time()
        result = evaluate_heatmaps(root, Path(tmp) / "out", settings, seed=0, progress=False)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"full evaluation of {len(result.per_sample)} maps of {args.size}x{args.size} "
              f"(read, all metrics, both baselines, {settings.bootstrap_samples} bootstrap resamples, "
              f"report{', figures' if args.figures else ''}): {elapsed:.1f} s (target < 30 s; "
              f"{settings.workers} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        print(f"CPU time of the evaluation: {cpu:.1f} s (all threads; on an idle machine the wall time is "
              f"about this divided by the cores used)")


if __name__ == "__main__":
    main()
