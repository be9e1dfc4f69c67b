"""Epoch-seeded samplers and even batching.

The order of every epoch is a pure function of ``(seed, epoch)``, so a resumed run replays it.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Shuffled (or class-balanced, with replacement) indices, sharded over ``world`` ranks like
    ``DistributedSampler`` (padded so every rank gets the same count)."""

    def __init__(self, labels: Sequence[int], seed: int, balanced: bool = False, rank: int = 0, world: int = 1) -> None:
        self.labels = np.asarray(labels, dtype=np.int64)
        self.seed, self.balanced, self.rank, self.world = int(seed), balanced, rank, world
        self.epoch = 0
        self.per_rank = -(-len(self.labels) // world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, self.epoch, 7]).generate_state(1)[0]))
        n = len(self.labels)
        if self.balanced:
            counts = np.bincount(self.labels)
            weights = 1.0 / counts[self.labels]
            order = torch.multinomial(torch.as_tensor(weights, dtype=torch.double), n, replacement=True, generator=g).tolist()
        else:
            order = torch.randperm(n, generator=g).tolist()
        total = self.per_rank * self.world
        order += order[: total - n]
        return order[self.rank : total : self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank


class EvenBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` (even); a final odd batch borrows the epoch's first index, so no
    image is dropped and every batch can be mixed pairwise.

    ``with_epoch``: yield ``(epoch, index)`` pairs, the epoch read from the sampler's ``epoch``, so
    a dataset copy in a persistent loader worker augments each item for the epoch that asked.
    """

    def __init__(self, sampler: Sampler[int], batch_size: int, with_epoch: bool = False) -> None:
        if batch_size % 2:
            raise ValueError("batch_size must be even")
        self.sampler, self.batch_size, self.with_epoch = sampler, batch_size, with_epoch

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            if len(batch) % 2:
                batch.append(order[0] if start else batch[0])
            if self.with_epoch:
                epoch = int(getattr(self.sampler, "epoch"))
                yield [(epoch, i) for i in batch]
            else:
                yield batch

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)
