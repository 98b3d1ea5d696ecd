"""Measure phantom generation speed (target: >= 200 studies per minute on one core at 512 px).

Usage: python benchmarks/phantom_speed.py [STUDIES] [SIZE]
"""

from __future__ import annotations

import sys
import tempfile
import time

from cxr_fgbg.data.phantom import generate_phantom


def main() -> None:
    studies = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 512
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        cpu = time.process_time()
        summary = generate_phantom(out, studies=studies, seed=0, size=size, progress=False)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    print(f"{studies} studies ({summary.n_images} images) at {size} px on one process: "
          f"wall {wall:.1f} s -> {60 * studies / wall:.0f} studies/min; "
          f"CPU {cpu:.1f} s -> {60 * studies / cpu:.0f} studies/min of one core")


if __name__ == "__main__":
    main()
