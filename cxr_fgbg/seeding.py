"""Seeds: every random draw in the toolkit takes its seed from the config, through these helpers."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators (for libraries that use them implicitly)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def derive_seed(seed: int, *keys: object) -> int:
    """A stable child seed for one item (e.g. an image id), independent of processing order.

    Uses CRC32 rather than `hash()`, which is salted per process for strings.
    """
    text = "/".join(str(k) for k in (seed, *keys))
    return zlib.crc32(text.encode("utf-8"))


def numpy_rng(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *keys) if keys else seed)


def torch_generator(seed: int, *keys: object, device: str | torch.device = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *keys) if keys else seed)
    return generator
