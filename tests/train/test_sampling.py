"""Epoch-seeded sampling and even batches (Mixup needs pairs; no image is dropped)."""
from __future__ import annotations

import numpy as np
import pytest

from corese_edge.train.sampling import EpochSampler, EvenBatchSampler


@pytest.mark.parametrize("n,batch", [(37, 8), (33, 16), (32, 16), (1, 4)])
def test_even_batches_cover_every_image(n, batch):
    s = EpochSampler(np.zeros(n, dtype=int), seed=0)
    batches = list(EvenBatchSampler(s, batch))
    assert all(len(b) % 2 == 0 and len(b) <= batch + 1 for b in batches)
    assert sorted({i for b in batches for i in b}) == list(range(n))
    assert len(batches) == len(EvenBatchSampler(s, batch))


def test_order_is_a_function_of_seed_and_epoch():
    labels = np.arange(50) % 5
    a, b = EpochSampler(labels, seed=1), EpochSampler(labels, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert list(EpochSampler(labels, seed=2)) != list(EpochSampler(labels, seed=1))


def test_ranks_partition_the_epoch():
    labels = np.zeros(41, dtype=int)
    shards = [list(EpochSampler(labels, seed=0, rank=r, world=2)) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 21
    assert set(shards[0]) | set(shards[1]) == set(range(41))


def test_balanced_sampler_evens_out_classes():
    labels = np.array([0] * 900 + [1] * 100)
    s = EpochSampler(labels, seed=0, balanced=True)
    drawn = labels[list(s)]
    assert 0.4 < drawn.mean() < 0.6  # ~half minority despite 10 % prevalence
