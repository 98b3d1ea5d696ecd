"""Time `cxr-fgbg model build` on the phantom and print what it measured (target: well under 2 minutes
for ~200 studies at 64 px on 2 cores). Prints numbers; asserts nothing.

Usage: python benchmarks/model_bundle_build.py [--studies 200] [--size 256] [--threads N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=200)
    parser.add_argument("--size", type=int, default=256, help="Phantom image size (the model works at 64 px).")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    import torch

    from cxr_fgbg.data.mimic import build_index
    from cxr_fgbg.data.phantom import generate_phantom
    from cxr_fgbg.models.bundle import build_bundle
    from cxr_fgbg.models.settings import ModelSettings

    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bundle-bench-"))
    phantom = work / "phantom"
    if not (phantom / "mimic-cxr").exists():
        generate_phantom(phantom, args.studies, args.seed, size=args.size, progress=False)
    if not (work / "index" / "studies.csv").exists():
        build_index(phantom / "mimic-cxr", work / "index", progress=False)
    start = time.perf_counter()
    report = build_bundle(work / "index", work / f"model-{time.time_ns()}", ModelSettings(), seed=args.seed,
                          progress=False)
    seconds = time.perf_counter() - start
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"build seconds: {seconds:.1f} ({report.train_images} train images, {report.validation_images} "
          f"{report.validation_source} images)")
    print(f"text MLM loss: {report.text_pretraining['loss_before']:.3f} -> {report.text_pretraining['loss_after']:.3f}"
          f" (masked-token accuracy {report.text_pretraining['accuracy_after']:.2f})")
    before, after = report.vae["before"], report.vae["after"]
    print(f"VAE validation MSE {before['mse']:.5f} -> {after['mse']:.5f}; PSNR {before['psnr']:.2f} -> "
          f"{after['psnr']:.2f} dB; scaling factor {report.vae['scaling_factor']:.4f}")
    print("disease word pieces:", json.dumps(report.disease_word_pieces))
    print("parameters:", report.parameters)


if __name__ == "__main__":
    main()
