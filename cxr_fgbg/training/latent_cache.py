"""Optional pre-computed VAE posteriors: encode every training image once, sample a latent each step.

The VAE is frozen, so its posterior (mean, std) per image never changes during fine-tuning; storing it
saves the encoder pass every step, and sampling mean + std * noise keeps the same randomness as
`latent_dist.sample()`. One file per image (written atomically), so an interrupted build resumes, and
a `meta.json` fingerprint (VAE config, resolution, images) invalidates a stale cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from cxr_fgbg.io import atomic_path, write_json_atomic

__all__ = ["CachedLatentDataset", "LatentCache"]

LOG = logging.getLogger(__name__)


class LatentCache:
    """A folder of `{index:08d}.pt` files holding the VAE posterior `mean` and `std` of one image each."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, index: int) -> Path:
        return self.folder / f"{index:08d}.pt"

    def load(self, index: int) -> dict[str, torch.Tensor]:
        return torch.load(self.path(index), map_location="cpu", weights_only=True)

    def build(self, dataset: Any, vae: Any, accelerator: Any, fingerprint: dict[str, Any], batch_size: int = 8) -> None:
        """Encode the images this process owns (index % processes == rank) that are not cached yet."""
        meta = self.folder / "meta.json"
        digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()
        if accelerator.is_main_process:
            if meta.is_file() and json.loads(meta.read_text()).get("fingerprint") != digest:
                LOG.warning("latent cache %s was built for another model or data set: rebuilding it", self.folder)
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(meta, {"fingerprint": digest, "count": len(dataset)})
        accelerator.wait_for_everyone()
        todo = [
            i for i in range(accelerator.process_index, len(dataset), accelerator.num_processes)
            if not self.path(i).is_file()
        ]
        load = getattr(dataset, "load_pixels", None) or (lambda i: dataset[i]["pixel_values"])
        dtype = next(vae.parameters()).dtype
        bar = tqdm(total=len(todo), desc="latent cache", disable=not accelerator.is_local_main_process)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            pixels = torch.stack([load(i) for i in chunk]).to(accelerator.device, dtype)
            with torch.no_grad():
                dist = vae.encode(pixels).latent_dist
            for i, mean, std in zip(chunk, dist.mean.float().cpu(), dist.std.float().cpu(), strict=True):
                with atomic_path(self.path(i)) as tmp:
                    torch.save({"mean": mean.clone(), "std": std.clone()}, tmp)
            bar.update(len(chunk))
        bar.close()
        accelerator.wait_for_everyone()


class CachedLatentDataset(torch.utils.data.Dataset):
    """`base` with `pixel_values` replaced by the cached posterior (`latent_mean`, `latent_std`).

    Uses `base.text_item(key)` when the dataset offers it, so the image is not even read.
    """

    def __init__(self, base: Any, cache: LatentCache) -> None:
        self.base, self.cache = base, cache
        self.base_takes_keys = getattr(base, "accepts_keys", False)

    accepts_keys = True

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int) -> dict[str, Any]:
        row = key % len(self.base)
        text_item = getattr(self.base, "text_item", None)
        if text_item is not None:
            item = dict(text_item(key if self.base_takes_keys else row))
        else:
            item = dict(self.base[key if self.base_takes_keys else row])
        item.pop("pixel_values", None)
        posterior = self.cache.load(row)
        item["latent_mean"], item["latent_std"] = posterior["mean"], posterior["std"]
        return item
