"""`Localizer`: the public, notebook-sized entry point to cross-attention heat maps.

    loc = Localizer("path/to/diffusers-folder")           # the paper's defaults
    maps = loc.token_maps(image, "Small left pleural effusion.")  # (n_tokens, H, W)
    m = loc.word_map(image, "Small left pleural effusion.", ["pleural", "effusion"])

Maps come back at the size of the image passed in: model-size maps are upsampled bilinearly and
mapped through the preprocessing geometry (`cxr_fgbg.data.geometry`); what the centre crop cut away
is NaN. `word_map` is the weighted sum of the same latent token maps that `token_maps` returns, so
it equals the sum of `token_maps` over the word's token positions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cxr_fgbg.attention.heatmap import attention_token_maps, encode_latents, encode_prompts, select_timesteps
from cxr_fgbg.attention.settings import LocalizeSettings
from cxr_fgbg.attention.tokens import TokenizedPrompt, WordSpans, find_word_spans, tokenize_prompt
from cxr_fgbg.errors import ConfigError, InputDataError

__all__ = ["Localizer", "PreparedImage", "load_pipeline", "token_weights"]


@dataclass(frozen=True)
class PreparedImage:
    pixels: torch.Tensor  # (C, S, S) in [0, 1]
    geometry: Any  # cxr_fgbg.data.geometry.Geometry


def load_pipeline(model: str | os.PathLike[str], device: str | None = None, dtype: str = "float32") -> Any:
    """Load a diffusers folder offline (no safety checker; nothing is downloaded)."""
    from diffusers import StableDiffusionPipeline

    folder = os.fspath(model)
    if not os.path.isfile(os.path.join(folder, "model_index.json")):
        raise InputDataError(f"{folder}: not a diffusers model folder (model_index.json missing)")
    try:
        pipe = StableDiffusionPipeline.from_pretrained(
            folder, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
            torch_dtype=getattr(torch, dtype), local_files_only=True,
        )
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{folder}: cannot load the diffusion model ({exc})") from exc
    return pipe


def token_weights(spans: WordSpans, n_tokens: int, reduce: str = "sum") -> np.ndarray:
    """Weight of each token position in a word map: 1 per matched token (sum), or 1/len per occurrence
    (mean of the sub-words). Overlapping occurrences (a phrase and one of its words) count once."""
    weights = np.zeros(n_tokens, dtype=np.float64)
    if reduce == "sum":
        weights[list(spans.token_indices)] = 1.0
    elif reduce == "mean":
        for indices in dict.fromkeys(m.token_indices for m in spans.matches):
            weights[list(indices)] += 1.0 / len(indices)
    else:
        raise ConfigError(f"subword_reduce must be 'sum' or 'mean', got {reduce!r}")
    return weights


class Localizer:
    """Cross-attention heat maps of a text-to-image LDM (a diffusers folder or a loaded pipeline).

    `config` is a `LocalizeSettings`, a whole `PipelineConfig` (its `localize` section and master
    seed), or None for the paper's defaults (T = last 40 of 50 DDIM steps, one draw, all layers).
    """

    def __init__(self, model: Any, config: Any = None, *, seed: int | None = None) -> None:
        settings, master_seed = _settings_from(config)
        self.settings: LocalizeSettings = settings
        self.seed = int(seed if seed is not None else master_seed)
        device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if isinstance(model, (str, os.PathLike)):
            self.pipe = load_pipeline(model, device, settings.dtype)
        else:
            self.pipe = model
        for name in ("unet", "vae", "tokenizer", "text_encoder", "scheduler"):
            if getattr(self.pipe, name, None) is None:
                raise ConfigError(f"the model has no {name}: a Stable-Diffusion-style pipeline is needed")
        if settings.device is not None or isinstance(model, (str, os.PathLike)):
            self.pipe.to(device)
        self.timesteps = select_timesteps(settings, self.pipe.scheduler.config)

    # ------------------------------------------------------------------ model facts
    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.pipe.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        if self.settings.image_size is not None:
            return int(self.settings.image_size)
        sample = self.pipe.unet.config.sample_size
        sample = sample[0] if isinstance(sample, (tuple, list)) else sample
        return int(sample) * self.vae_scale_factor

    @property
    def channels(self) -> int:
        return int(self.pipe.vae.config.in_channels)

    # ------------------------------------------------------------------ text
    def tokenize(self, prompt: str) -> TokenizedPrompt:
        return tokenize_prompt(self.pipe.tokenizer, prompt)

    def word_spans(self, prompt: str, words: Sequence[str] | str) -> WordSpans:
        return find_word_spans(self.tokenize(prompt), words)

    # ------------------------------------------------------------------ images
    def prepare(self, image: Any, full_scale: float | None = None) -> PreparedImage:
        """PIL image, numpy array or tensor (grey or RGB) -> model-size pixels in [0, 1] + geometry."""
        from cxr_fgbg.data.transforms import preprocess_image

        array, detected = _as_array(image)
        tensor, geometry = preprocess_image(
            array, self.image_size, self.settings.intensity_percentiles, self.channels, self.settings.fit,
            full_scale if full_scale is not None else detected,
        )
        return PreparedImage(tensor, geometry)

    def to_image(self, latent_maps: torch.Tensor, geometry: Any) -> np.ndarray:
        """(..., h, w) latent-grid maps -> (..., H, W) float32 at the original image's size."""
        lead = latent_maps.shape[:-2]
        flat = latent_maps.reshape(1, -1, *latent_maps.shape[-2:]).float().cpu()
        size = tuple(geometry.model_hw)
        model = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)[0].numpy()
        out = geometry.map_to_original(np.moveaxis(model, 0, -1), "bilinear")
        out = out[..., None] if out.ndim == 2 else out
        return np.moveaxis(out, -1, 0).reshape(*lead, *out.shape[:2]).astype(np.float32)

    # ------------------------------------------------------------------ maps
    def latent_token_maps(
        self,
        pixels: torch.Tensor,
        prompts: Sequence[str],
        keys: Sequence[object],
        *,
        per_timestep: bool = False,
        timesteps: Sequence[int] | None = None,
        noise_draws: int | None = None,
        seed: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> torch.Tensor:
        """Batched: (B, C, S, S) pixels in [0, 1] + prompts -> (B, [|T|,] max_length, h, w) maps."""
        pipe = self.pipe
        latents = encode_latents(pipe.vae, pixels)
        embeddings = encode_prompts(pipe.tokenizer, pipe.text_encoder, prompts)
        return attention_token_maps(
            pipe.unet, pipe.scheduler, latents, embeddings, list(timesteps or self.timesteps), list(keys),
            self.seed if seed is None else int(seed), self.settings, per_timestep=per_timestep,
            noise_draws=noise_draws, progress=progress,
        )

    def token_maps(self, image: Any, prompt: str, *, key: object = "image", seed: int | None = None) -> np.ndarray:
        """(n_tokens, H, W): M-hat of every token of the tokenized prompt (start and end tokens included,
        padding not), at the image's size."""
        prepared = self.prepare(image)
        tokenized = self.tokenize(prompt)
        maps = self.latent_token_maps(prepared.pixels[None], [prompt], [key], seed=seed)[0]
        return self.to_image(maps[: tokenized.n_tokens], prepared.geometry)

    def word_map(
        self, image: Any, prompt: str, words: Sequence[str] | str, *, key: object = "image",
        seed: int | None = None, reduce: str | None = None,
    ) -> np.ndarray:
        """(H, W): the summed maps of every token of every whole-word occurrence of `words`.

        Raises InputDataError (with the reason) when no word occurs in the prompt or all were truncated.
        """
        tokenized = self.tokenize(prompt)
        spans = find_word_spans(tokenized, words)
        if spans.reason is not None:
            raise InputDataError(spans.reason)
        prepared = self.prepare(image)
        maps = self.latent_token_maps(prepared.pixels[None], [prompt], [key], seed=seed)[0]
        weights = token_weights(spans, tokenized.n_tokens, reduce or self.settings.subword_reduce)
        combined = torch.tensordot(torch.as_tensor(weights, dtype=torch.float32), maps[: tokenized.n_tokens], 1)
        return self.to_image(combined, prepared.geometry)


def _settings_from(config: Any) -> tuple[LocalizeSettings, int]:
    if config is None:
        return LocalizeSettings(), 0
    if isinstance(config, LocalizeSettings):
        return config, 0
    localize = getattr(config, "localize", None)
    if isinstance(localize, LocalizeSettings):
        return localize, int(getattr(config, "seed", 0))
    if isinstance(config, dict):
        return LocalizeSettings.model_validate(config), 0
    raise ConfigError(f"Localizer config must be LocalizeSettings or PipelineConfig, got {type(config).__name__}")


def _as_array(image: Any) -> tuple[np.ndarray, float | None]:
    """Any image -> float32 (H, W) or (H, W, 3), and its full-scale value when the dtype tells it."""
    full: float | None = None
    if hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        image = np.asarray(image.convert("L") if image.mode in {"1", "L", "LA", "P"} else image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
            image = np.moveaxis(image, 0, -1)  # channel-first tensor
    arr = np.asarray(image)
    if arr.dtype == np.uint8:
        full = 255.0
    elif arr.dtype == np.uint16:
        full = 65535.0
    arr = arr.astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise InputDataError(f"expected a grey (H, W) or colour (H, W, 3) image, got shape {arr.shape}")
    return arr, full
