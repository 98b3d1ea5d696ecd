"""A data order that is a pure function of (seed, step): the same on resume and on any process count.

The global stream of sample keys is the concatenation of one seeded permutation per epoch
(key = epoch * N + row, so a dataset can seed per-epoch draws from the key). Micro-batch m takes the
next `batch * processes` keys of the stream and process r takes its own `batch` of them. Resuming at
optimiser step s simply starts at micro-batch s * accumulation: no sampler state to save.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from cxr_fgbg.seeding import numpy_rng

__all__ = ["KeyedDataset", "StreamBatchSampler"]


class StreamBatchSampler(torch.utils.data.Sampler[list[int]]):
    def __init__(
        self, size: int, batch_size: int, num_processes: int, rank: int, seed: int, start: int, stop: int
    ) -> None:
        if size < 1:
            raise ValueError("the training set is empty")
        self.size, self.batch_size = size, batch_size
        self.num_processes, self.rank, self.seed = num_processes, rank, seed
        self.start, self.stop = start, stop
        self._perms: dict[int, np.ndarray] = {}

    def _key(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch not in self._perms:
            self._perms = {epoch: numpy_rng(self.seed, "data-order", epoch).permutation(self.size)}
        return epoch * self.size + int(self._perms[epoch][offset])

    def micro_batch(self, index: int) -> list[int]:
        first = (index * self.num_processes + self.rank) * self.batch_size
        return [self._key(p) for p in range(first, first + self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        for index in range(self.start, self.stop):
            yield self.micro_batch(index)

    def __len__(self) -> int:
        return self.stop - self.start


class KeyedDataset(torch.utils.data.Dataset):
    """Lets a plain dataset take stream keys: key -> row key % N."""

    accepts_keys = True

    def __init__(self, base: Any) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: int) -> Any:
        return self.base[key % len(self.base)]

    def __getattr__(self, name: str) -> Any:
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)
