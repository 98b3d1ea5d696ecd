"""Training-step overhead of `cxr_fgbg.training` against a bare diffusers loop on the tiny model.

Prints our step time / the bare loop's step time (target <= 1.10) and steps per second of both. The
bare loop is the textbook one: VAE encode, noise, U-Net, MSE, backward, AdamW step. Ours adds CFG
dropout, seeded per-step generators, (masked) per-sample loss, gradient clipping and the LR schedule.
Blocks of steps alternate between the two so a shared, busy machine slows both alike; medians are used.

    .venv/bin/python benchmarks/finetune_step.py [--batch 4] [--steps 10] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build(batch: int):
    from cxr_fgbg.models.tokenizer import train_tokenizer

    texts = ["Small left pleural effusion.", "No pneumothorax.", "Moderate cardiomegaly with mild edema."] * 20
    tokenizer = train_tokenizer(texts, vocab_size=150, max_length=32)
    ids = tokenizer(texts[:batch], padding="max_length", truncation=True, max_length=32,
                    return_tensors="pt").input_ids
    pixels = torch.rand(batch, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return tokenizer, {"pixel_values": pixels, "input_ids": ids}


def bare_step_fn(tokenizer, batch):
    """The plain diffusers training step (train_text_to_image.py without the extras)."""
    from diffusers import DDPMScheduler

    from cxr_fgbg.models.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(tokenizer, seed=0)
    vae, text_encoder, unet = pipe.vae, pipe.text_encoder, pipe.unet
    vae.requires_grad_(False)
    text_encoder.requires_grad_(False)
    unet.train()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=5e-5)

    def step() -> None:
        with torch.no_grad():
            latents = vae.encode(batch["pixel_values"]).latent_dist.sample() * vae.config.scaling_factor
            hidden = text_encoder(batch["input_ids"])[0]
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],))
        pred = unet(scheduler.add_noise(latents, noise, t), t, hidden).sample
        loss = torch.nn.functional.mse_loss(pred.float(), noise.float())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def our_step_fn(tokenizer, batch):
    from accelerate import Accelerator

    from cxr_fgbg.models.tiny import build_tiny_pipeline
    from cxr_fgbg.training.loop import FinetuneTrainer
    from cxr_fgbg.training.settings import FinetuneSettings

    trainer = FinetuneTrainer(FinetuneSettings(), build_tiny_pipeline(tokenizer, seed=0), Accelerator(), seed=0)
    counter = iter(range(10**9))
    return lambda: trainer.train_step([batch], next(counter))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10, help="Steps per timed block.")
    parser.add_argument("--repeats", type=int, default=5, help="Alternating blocks per loop.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 avoids contention on shared CPUs).")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokenizer, batch = build(args.batch)
    loops = {"bare diffusers": bare_step_fn(tokenizer, batch), "cxr_fgbg": our_step_fn(tokenizer, batch)}
    for step in loops.values():  # warm-up
        for _ in range(3):
            step()
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.repeats):
        for name, step in loops.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                step()
            times[name].append((time.perf_counter() - start) / args.steps)
    bare, ours = statistics.median(times["bare diffusers"]), statistics.median(times["cxr_fgbg"])
    print(f"tiny model, batch {args.batch}, {args.threads} thread(s), {args.repeats} x {args.steps} steps each")
    print(f"bare diffusers loop: {bare * 1000:.1f} ms/step = {1 / bare:.2f} steps/s")
    print(f"cxr_fgbg trainer:    {ours * 1000:.1f} ms/step = {1 / ours:.2f} steps/s")
    print(f"ratio ours / bare:   {ours / bare:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
