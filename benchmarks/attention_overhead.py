"""Cost of reading M-hat out of the U-Net, against plain U-Net passes on the same model and batch.

Prints time(M-hat over T timesteps) / time(T plain forward passes with the default processor), the
target being <= 1.15, and the peak memory of each (CUDA: max_memory_allocated; CPU: the torch
profiler's allocation trace), for T = 1 and T = the chosen number, to show that memory does not
grow with the number of timesteps.

    .venv/bin/python benchmarks/attention_overhead.py                 # tiny random model, CPU
    .venv/bin/python benchmarks/attention_overhead.py --model DIR --batch 4 --timesteps 40
"""

from __future__ import annotations

import argparse
import time

import torch


def _tiny_pipeline(image_size: int):
    from cxr_fgbg.models.settings import TinyBundleSettings
    from cxr_fgbg.models.tiny import build_tiny_pipeline
    from cxr_fgbg.models.tokenizer import train_tokenizer

    texts = ["small left pleural effusion", "no pneumothorax", "moderate cardiomegaly", "mild edema"] * 20
    tokenizer = train_tokenizer(texts, vocab_size=120, max_length=32)
    return build_tiny_pipeline(tokenizer, TinyBundleSettings(image_size=image_size), seed=0)


def _sd_shaped(latent: int):
    """SD 1.x U-Net architecture (860 M parameters, 16 cross-attention layers), random weights."""
    from diffusers import UNet2DConditionModel

    from cxr_fgbg.models.tiny import build_scheduler

    pipe = _tiny_pipeline(64)
    unet = UNet2DConditionModel(sample_size=latent, cross_attention_dim=pipe.text_encoder.config.hidden_size,
                                attention_head_dim=8)
    pipe.register_modules(unet=unet, scheduler=build_scheduler())
    return pipe


def _peak(fn, device: torch.device) -> tuple[float, int]:
    """(seconds, peak bytes allocated by torch during fn)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    # Leaf ops carry their own allocations, "[memory]" records the frees: their running sum is the
    # torch heap over time (parents' cpu_memory_usage is inclusive, so they are left out).
    events = sorted((e for e in prof.events() if not e.cpu_children), key=lambda e: e.time_range.start)
    current = peak = 0
    for event in events:
        current += event.cpu_memory_usage
        peak = max(peak, current)
    return float("nan"), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="diffusers folder (default: a tiny random model)")
    parser.add_argument("--image-size", type=int, default=64, help="tiny model's image size")
    parser.add_argument("--arch", choices=["tiny", "sd"], default="tiny",
                        help="sd: a randomly initialised U-Net of Stable Diffusion 1.x's architecture")
    parser.add_argument("--latent", type=int, default=32, help="latent size for --arch sd (SD 1.x: 64)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--timesteps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    from cxr_fgbg.attention.heatmap import attention_token_maps, select_timesteps
    from cxr_fgbg.attention.localizer import load_pipeline
    from cxr_fgbg.attention.settings import LocalizeSettings

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.arch == "sd":
        pipe = _sd_shaped(args.latent)
    else:
        pipe = load_pipeline(args.model) if args.model else _tiny_pipeline(args.image_size)
    pipe.to(device)
    unet = pipe.unet
    settings = LocalizeSettings(batch_size=args.batch, t0=args.timesteps)
    steps = select_timesteps(settings, pipe.scheduler.config)
    sample_size = unet.config.sample_size
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(args.batch, unet.config.in_channels, sample_size, sample_size, generator=g).to(device)
    ids = pipe.tokenizer(["small left pleural effusion"] * args.batch, padding="max_length",
                         max_length=pipe.tokenizer.model_max_length, return_tensors="pt").input_ids.to(device)
    with torch.no_grad():
        context = pipe.text_encoder(ids)[0]

    def plain(n_steps):
        def run():
            with torch.no_grad():
                for t in steps[:n_steps]:
                    unet(latents, torch.full((args.batch,), t, device=device), encoder_hidden_states=context)
        return run

    def mhat(n_steps):
        def run():
            attention_token_maps(unet, pipe.scheduler, latents, context, steps[:n_steps],
                                 list(range(args.batch)), 0, settings)
        return run

    plain(1)()
    mhat(1)()  # warm-up
    # Interleaved repeats, best of each: a shared machine's load hits both sides alike.
    t_plain = t_mhat = float("inf")
    for _ in range(args.repeats):
        for which, fn in (("plain", plain(len(steps))), ("mhat", mhat(len(steps)))):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - start
            if which == "plain":
                t_plain = min(t_plain, elapsed)
            else:
                t_mhat = min(t_mhat, elapsed)
    params = sum(p.numel() for p in unet.parameters())
    print(f"device={device} batch={args.batch} timesteps={len(steps)} unet_params={params:,}")
    print(f"plain U-Net passes: {t_plain:.3f} s   M-hat: {t_mhat:.3f} s   "
          f"ratio: {t_mhat / t_plain:.3f} (target <= 1.15)")
    for n in (1, len(steps)):
        _, mem_plain = _peak(plain(n), device)
        _, mem_mhat = _peak(mhat(n), device)
        print(f"peak memory, T={n:>2}: plain {mem_plain / 2**20:.1f} MiB   M-hat {mem_mhat / 2**20:.1f} MiB   "
              f"ratio {mem_mhat / max(mem_plain, 1):.2f}")


if __name__ == "__main__":
    main()
