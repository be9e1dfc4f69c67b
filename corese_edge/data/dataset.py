"""torch Datasets and loaders over a :class:`~corese_edge.data.layouts.DatasetIndex` split.

Augmentation randomness is a pure function of ``(seed, epoch, index)``: every item reseeds the
albumentations pipeline, so a resumed run replays exactly the same images whatever the number of
loader workers.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from corese_edge.images import read_rgb
from corese_edge.data.transforms import to_chw


class FERDataset(Dataset):
    """Items are ``(CHW float32 tensor, label)``; labels are class indices."""

    def __init__(self, samples: Sequence, transform: Callable, seed: int = 0) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([s.label for s in self.samples], dtype=np.int64)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[i]
        image = read_rgb(sample.path)
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(_item_seed(self.seed, self.epoch, i))
        out = self.transform(image=image)["image"]
        return torch.from_numpy(to_chw(out)), int(sample.label)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])
