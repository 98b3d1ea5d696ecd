"""Time the refined masks M for one batch of three images, and where the time goes.

The paper (supplement): 7.5 s per batch of three on one GPU, 50 DDIM steps at 512x512.

    .venv/bin/python benchmarks/refine.py                      # tiny random bundle (64x64, CPU-sized)
    .venv/bin/python benchmarks/refine.py --model DIR          # a local diffusers folder
    .venv/bin/python benchmarks/refine.py --sd-shaped          # random weights, SD 1.x shapes at 512x512

Prints the wall time per batch (after one warm-up batch) split into encoding, inpainting steps, decoding
and difference + GMM. Nothing is downloaded; timings with random weights are valid because the cost
does not depend on the weights.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def tiny_tokenizer(max_length: int):
    from cxr_fgbg.models.tokenizer import train_tokenizer

    texts = ["a photo of a background", "No acute cardiopulmonary process.", "Small left pleural effusion."]
    return train_tokenizer(texts * 20, vocab_size=120, max_length=max_length)


def sd_shaped_pipeline():
    """Stable Diffusion 1.x component shapes (860M-parameter U-Net, 4-block VAE, CLIP-L-sized text encoder)."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from cxr_fgbg.models.tiny import build_scheduler

    tokenizer = tiny_tokenizer(77)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2, sample_size=512,
    )
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77))
    return StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet,
                                   scheduler=build_scheduler(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local diffusers folder")
    parser.add_argument("--sd-shaped", action="store_true", help="random weights with SD 1.x shapes")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batches", type=int, default=2, help="timed batches after the warm-up")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fp16", action="store_true", help="half precision (GPU)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (a loaded machine: 1)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from cxr_fgbg.masks.inpaint import Stopwatch
    from cxr_fgbg.masks.refine import refine_masks
    from cxr_fgbg.masks.settings import RefineSettings

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    start = time.perf_counter()
    if args.model:
        from cxr_fgbg.masks.inpaint import load_pipeline

        pipe = load_pipeline(args.model, device)
        label = args.model
    elif args.sd_shaped:
        pipe = sd_shaped_pipeline()
        label = "SD 1.x-shaped, random weights"
    else:
        from cxr_fgbg.models.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline(tiny_tokenizer(32))
        label = "tiny bundle, random weights"
    if args.fp16:
        pipe = pipe.to(torch.float16)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    print(f"model: {label}; loaded in {time.perf_counter() - start:.1f} s; device {device}; "
          f"torch threads {torch.get_num_threads()}")
    factor = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    size = int(pipe.unet.config.sample_size) * factor
    channels = int(pipe.vae.config.in_channels)
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.random((3, channels, size, size), dtype=np.float32))
    pre = np.zeros((3, size, size), dtype=bool)
    pre[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = True
    settings = RefineSettings(num_inference_steps=args.steps)

    def batch(timer=None) -> None:
        refine_masks(pipe, images, pre, seeds=[0, 1, 2], settings=settings, timer=timer)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    batch()  # warm-up (kernel selection, allocations)
    totals = []
    timer = Stopwatch()
    for _ in range(args.batches):
        t0 = time.perf_counter()
        batch(timer)
        totals.append(time.perf_counter() - t0)
    per = {k: v / args.batches for k, v in timer.seconds.items()}
    mean = float(np.mean(totals))
    print(f"image size {size}x{size}, {args.steps} DDIM steps, batch of 3: {mean:.3f} s per batch "
          f"(min {min(totals):.3f}, {args.batches} batches; paper: 7.5 s on one GPU)")
    for key in ("encode", "inpainting steps", "decode", "difference + GMM"):
        if key in per:
            print(f"  {key:18s} {per[key]:8.3f} s  ({100 * per[key] / mean:5.1f} %)")
    rest = mean - sum(per.values())
    print(f"  {'other':18s} {rest:8.3f} s  ({100 * rest / mean:5.1f} %)")


if __name__ == "__main__":
    main()
