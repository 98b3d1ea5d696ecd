"""The supplement's analyses of M-hat, each a table plus a plot.

- `token_auroc` (Fig. 3): pixel AUROC of the map of EVERY token of the prompt, target words marked.
- `draws_auroc` (Fig. 2): AUROC and its spread over seeds as a function of the Monte-Carlo draws N (eq. 1).
- `t0_auroc`: AUROC as a function of T0, the number of lowest grid timesteps summed. The per-timestep
  maps are computed once: noise is seeded per (sample, t), so the sum over the T0 lowest timesteps is
  exactly what a run with that T0 gives.
- `prompt_sensitivity` (Fig. 5): the same image under two prompts; IoU of the two preliminary masks and
  the mean absolute difference of the min-max normalised maps.
- `conditioning_vs_attention` (ours, a diagnostic): the finding words' M-hat beside the map of where the
  prompt changes the denoiser's prediction (`attention.conditioning`), both scored against the boxes. A model
  whose conditioning map follows the finding while M-hat does not binds the report to the image but not
  through the finding's tokens: the read-out, not the fine-tuning, is then what fails.

AUROC here is the pixel AUROC of the map against the union of the MS-CXR boxes, in original image
pixels, over the valid (finite) pixels, with the evaluation stage's box rasterisation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cxr_fgbg.attention.batch import _boxes, _plan, read_index
from cxr_fgbg.attention.localizer import Localizer, token_weights
from cxr_fgbg.attention.tokens import find_word_spans
from cxr_fgbg.attention.vocabulary import build_vocabulary
from cxr_fgbg.errors import InputDataError
from cxr_fgbg.io import SkippedLog
from cxr_fgbg.masks.gmm import binarize_gmm

__all__ = [
    "AnalysisSample", "conditioning_vs_attention", "draws_auroc", "load_samples", "pixel_auroc",
    "prompt_sensitivity", "summarise_conditioning", "t0_auroc", "token_auroc",
]


@dataclass
class AnalysisSample:
    sample_id: str
    category_name: str
    prompt: str
    tokens: tuple[str, ...]
    weights: np.ndarray
    pixels: torch.Tensor
    geometry: Any
    boxes: np.ndarray


def pixel_auroc(heatmap: np.ndarray, boxes: np.ndarray) -> float:
    """AUROC of the map's finite pixels against the union of boxes; NaN when one class is absent."""
    from cxr_fgbg.evaluation.boxes import boxes_to_mask
    from cxr_fgbg.evaluation.metrics import pixel_auroc as auroc

    return auroc(heatmap, boxes_to_mask(boxes, heatmap.shape))


def load_samples(
    localizer: Localizer, index_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
    prompt_source: str = "phrase", limit: int | None = 20, splits: Sequence[str] | None = None,
) -> list[AnalysisSample]:
    """The first `limit` usable samples of the index, of `splits` only when given (skips in OUT/skipped.csv)."""
    from cxr_fgbg.data.transforms import preprocess_file

    rows, root = read_index(index_dir, prompt_source)
    if splits:
        rows = [row for row in rows if row.get("split") in set(splits)]
    skipped = SkippedLog(Path(out_dir) / "skipped.csv")
    vocabulary = build_vocabulary(localizer.settings.vocabulary, localizer.settings.replace_vocabulary)
    samples: list[AnalysisSample] = []
    for position, row in enumerate(rows):
        if limit is not None and len(samples) >= limit:
            break
        job = _plan(localizer, row, vocabulary, position, skipped)
        if job is None:
            continue
        try:
            pixels, geometry = preprocess_file(
                root / row["image_path"], localizer.image_size, localizer.settings.intensity_percentiles,
                localizer.channels, localizer.settings.fit,
            )
        except InputDataError as exc:
            skipped.add(row["image_path"], f"unreadable image: {exc}", sample_id=row["sample_id"])
            continue
        samples.append(AnalysisSample(row["sample_id"], row["category_name"], job.prompt, job.tokens,
                                      job.weights, pixels, geometry, _boxes(row)))
    skipped.write()
    if not samples:
        where = f" of split(s) {', '.join(splits)}" if splits else ""
        raise InputDataError(f"{index_dir}: no usable sample{where} to analyse (see {skipped.path})")
    return samples


def _maps(localizer: Localizer, batch: Sequence[AnalysisSample], **kwargs: Any) -> torch.Tensor:
    return localizer.latent_token_maps(torch.stack([s.pixels for s in batch]), [s.prompt for s in batch],
                                       [s.sample_id for s in batch], **kwargs)


def _word(localizer: Localizer, sample: AnalysisSample, latent: torch.Tensor) -> np.ndarray:
    n = len(sample.weights)
    combined = torch.tensordot(torch.as_tensor(sample.weights, dtype=torch.float32), latent[:n].cpu(), 1)
    return localizer.to_image(combined, sample.geometry)


def _batches(samples: Sequence[AnalysisSample], size: int):
    for start in range(0, len(samples), size):
        yield samples[start:start + size]


def token_auroc(localizer: Localizer, samples: Sequence[AnalysisSample]):
    """One row per (sample, token): the AUROC of that token's map; `is_target` marks the finding's words."""
    import pandas as pd

    rows = []
    for batch in _batches(samples, localizer.settings.batch_size):
        maps = _maps(localizer, batch)
        for sample, latent in zip(batch, maps, strict=True):
            images = localizer.to_image(latent[: len(sample.tokens)], sample.geometry)
            for index, token in enumerate(sample.tokens):
                rows.append({"sample_id": sample.sample_id, "category_name": sample.category_name,
                             "token_index": index, "token": token, "is_target": bool(sample.weights[index] > 0),
                             "auroc": pixel_auroc(images[index], sample.boxes)})
            rows.append({"sample_id": sample.sample_id, "category_name": sample.category_name,
                         "token_index": -1, "token": "<finding words>", "is_target": True,
                         "auroc": pixel_auroc(_word(localizer, sample, latent), sample.boxes)})
    return pd.DataFrame(rows)


def draws_auroc(localizer: Localizer, samples: Sequence[AnalysisSample], draws: Sequence[int],
                seeds: Sequence[int]):
    """One row per (N, seed, sample). Draws are seeded per (seed, sample, t, n): N = 4 extends N = 2."""
    import pandas as pd

    rows = []
    for seed in seeds:
        for n in draws:
            for batch in _batches(samples, localizer.settings.batch_size):
                maps = _maps(localizer, batch, noise_draws=n, seed=seed)
                for sample, latent in zip(batch, maps, strict=True):
                    rows.append({"n_draws": n, "seed": seed, "sample_id": sample.sample_id,
                                 "category_name": sample.category_name,
                                 "auroc": pixel_auroc(_word(localizer, sample, latent), sample.boxes)})
    return pd.DataFrame(rows)


def t0_auroc(localizer: Localizer, samples: Sequence[AnalysisSample], t0s: Sequence[int]):
    """One row per (T0, sample), from per-timestep maps of the whole grid, lowest timesteps first."""
    import pandas as pd

    from cxr_fgbg.attention.heatmap import select_timesteps

    grid_settings = localizer.settings.model_copy(update={"t0": localizer.settings.num_inference_steps,
                                                          "preset": "paper", "timesteps": None})
    grid = select_timesteps(grid_settings, localizer.pipe.scheduler.config)  # highest first
    wanted = sorted({int(t) for t in t0s if 1 <= int(t) <= len(grid)})
    lowest_first = list(reversed(grid))
    rows = []
    for sample in samples:  # one at a time: per-timestep sums hold |grid| slots per sample
        per_t = _maps(localizer, [sample], per_timestep=True, timesteps=lowest_first)[0]
        running = torch.cumsum(per_t, dim=0)
        for t0 in wanted:
            rows.append({"t0": t0, "max_timestep": lowest_first[t0 - 1], "sample_id": sample.sample_id,
                         "category_name": sample.category_name,
                         "auroc": pixel_auroc(_word(localizer, sample, running[t0 - 1]), sample.boxes)})
    return pd.DataFrame(rows)


def _normalised(values: np.ndarray) -> np.ndarray:
    low, high = np.nanmin(values), np.nanmax(values)
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def prompt_sensitivity(localizer: Localizer, first: Sequence[AnalysisSample], second: Sequence[AnalysisSample],
                       seed: int = 0):
    """Pairs the samples present in both lists (same sample_id); one row per image."""
    import pandas as pd

    by_id = {s.sample_id: s for s in second}
    pairs = [(a, by_id[a.sample_id]) for a in first if a.sample_id in by_id]
    rows = []
    for a, b in pairs:
        maps = _maps(localizer, [a, b])
        map_a, map_b = _word(localizer, a, maps[0]), _word(localizer, b, maps[1])
        mask_a = binarize_gmm(map_a, seed=seed).mask
        mask_b = binarize_gmm(map_b, seed=seed).mask
        union = np.logical_or(mask_a, mask_b).sum()
        rows.append({
            "sample_id": a.sample_id, "category_name": a.category_name, "prompt_a": a.prompt, "prompt_b": b.prompt,
            "auroc_a": pixel_auroc(map_a, a.boxes), "auroc_b": pixel_auroc(map_b, b.boxes),
            "mask_iou": float(np.logical_and(mask_a, mask_b).sum() / union) if union else float("nan"),
            "mean_abs_diff": float(np.nanmean(np.abs(_normalised(map_a) - _normalised(map_b)))),
        })
    return pd.DataFrame(rows)


def conditioning_vs_attention(localizer: Localizer, samples: Sequence[AnalysisSample]):
    """One row per sample: pixel AUROC and side accuracy of M-hat (the finding's words) and of the
    conditioning map, on the same timesteps and noise."""
    import pandas as pd

    from cxr_fgbg.attention.conditioning import conditioning_maps
    from cxr_fgbg.attention.heatmap import attention_token_maps, encode_latents, encode_prompts
    from cxr_fgbg.evaluation.metrics import side_accuracy

    pipe, settings = localizer.pipe, localizer.settings
    empty = encode_prompts(pipe.tokenizer, pipe.text_encoder, [""])
    rows = []
    for batch in _batches(samples, settings.batch_size):
        latents = encode_latents(pipe.vae, torch.stack([s.pixels for s in batch]))
        embeddings = encode_prompts(pipe.tokenizer, pipe.text_encoder, [s.prompt for s in batch])
        keys = [s.sample_id for s in batch]
        attention = attention_token_maps(pipe.unet, pipe.scheduler, latents, embeddings, localizer.timesteps, keys,
                                         localizer.seed, settings)
        conditioning = conditioning_maps(pipe.unet, pipe.scheduler, latents, embeddings, empty, localizer.timesteps,
                                         keys, localizer.seed, settings.noise_draws, settings.batch_size)
        for sample, latent, cond in zip(batch, attention, conditioning, strict=True):
            word = _word(localizer, sample, latent)
            text = localizer.to_image(cond, sample.geometry)
            rows.append({
                "sample_id": sample.sample_id, "category_name": sample.category_name,
                "auroc_attention": pixel_auroc(word, sample.boxes),
                "auroc_conditioning": pixel_auroc(text, sample.boxes),
                "side_attention": side_accuracy(word, sample.boxes),
                "side_conditioning": side_accuracy(text, sample.boxes),
            })
    return pd.DataFrame(rows)


CONDITIONING_COLUMNS = ("auroc_attention", "auroc_conditioning", "side_attention", "side_conditioning")


def summarise_conditioning(frame):
    """Per-class means of `conditioning_vs_attention`, then their macro mean (side accuracy where defined)."""
    import pandas as pd

    columns = list(CONDITIONING_COLUMNS)
    per_class = frame.groupby("category_name")[columns].mean().reset_index()
    macro = pd.DataFrame([{"category_name": "macro (mean of classes)", **per_class[columns].mean().to_dict()}])
    return pd.concat([per_class, macro], ignore_index=True)


def summarise(frame, by: str):
    """Mean AUROC per `by` value, with the spread over seeds when the table has seeds."""
    if "seed" in frame.columns:
        per_seed = frame.groupby([by, "seed"])["auroc"].mean().reset_index()
        out = per_seed.groupby(by)["auroc"].agg(["mean", "std", "count"]).reset_index()
        return out.rename(columns={"mean": "auroc_mean", "std": "auroc_std_over_seeds", "count": "seeds"})
    out = frame.groupby(by)["auroc"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": "auroc_mean", "std": "auroc_std", "count": "n"})


def spans_for(localizer: Localizer, prompt: str, words: Sequence[str]):
    """Convenience for notebooks: the token positions `word_map` sums for these words."""
    spans = find_word_spans(localizer.tokenize(prompt), words)
    return spans, token_weights(spans, localizer.tokenize(prompt).n_tokens, localizer.settings.subword_reduce)
