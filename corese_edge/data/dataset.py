"""torch Datasets and loaders over a :class:`~corese_edge.data.layouts.DatasetIndex` split.

Augmentation randomness is a pure function of ``(seed, epoch, index)``: every item reseeds the
albumentations pipeline, so a resumed run replays exactly the same images whatever the number of
loader workers.  The training loader asks for items as ``(epoch, index)`` pairs
(:class:`~corese_edge.train.sampling.EvenBatchSampler` with ``with_epoch=True``), so workers that
live across epochs (``persistent_workers``) hold no epoch of their own that could go stale.

Worker processes (docs/ARCHITECTURE.md, "Loader workers"): :func:`make_loader` starts them with
:data:`WORKER_START_METHOD` (``forkserver`` on Linux), never by forking the training process.
"""
from __future__ import annotations

import multiprocessing
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from corese_edge.images import read_rgb
from corese_edge.data.transforms import to_chw


#: ``cache="auto"`` keeps decoded images in memory up to this many bytes (RAF-DB's 15,339 crops at
#: 100 px take 0.46 GB; at 224 px, 2.3 GB, which auto leaves on disk).
CACHE_AUTO_LIMIT = 1 << 30


class ImageCache:
    """Every image of a split decoded once and resized to the training size: one uint8 tensor
    ``(N, S, S, 3)``, in shared memory when loader workers will read it (a worker then maps the
    same pages instead of receiving a copy).

    The resize is albumentations' own (``geometric.functional.resize``, the train and eval
    transforms' first step), and that step returns an image already at its size unchanged, so a
    cached item is bit-identical to one decoded from disk (``tests/train/test_loader_workers.py``).
    """

    def __init__(self, images: torch.Tensor, size: int) -> None:
        self.images, self.size = images, int(size)

    @staticmethod
    def nbytes_for(count: int, size: int) -> int:
        return int(count) * int(size) * int(size) * 3

    @classmethod
    def build(cls, samples: Sequence, size: int, interpolation: int, shared: bool = False,
              progress: bool = False) -> "ImageCache":
        from albumentations.augmentations.geometric.functional import resize

        images = torch.empty((len(samples), size, size, 3), dtype=torch.uint8)
        it = enumerate(samples)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(samples), desc=f"caching images at {size} px", leave=False)
        for i, sample in it:
            images[i] = torch.from_numpy(np.ascontiguousarray(resize(read_rgb(sample.path), (size, size), interpolation)))
        if shared:
            images.share_memory_()
        return cls(images, size)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.images[i].numpy()


class FERDataset(Dataset):
    """Items are ``(CHW float32 tensor, label)``; labels are class indices.  ``cache``: an
    :class:`ImageCache` of ``samples`` (same order), read instead of the files."""

    def __init__(self, samples: Sequence, transform: Callable, seed: int = 0, cache: ImageCache | None = None) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        if cache is not None and len(cache.images) != len(self.samples):
            raise ValueError(f"the image cache holds {len(cache.images)} images for {len(self.samples)} samples")
        self.cache = cache

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.asarray([s.label for s in self.samples], dtype=np.int64)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        """``dataset[i]`` (augmented as epoch :attr:`epoch`) or ``dataset[epoch, i]``."""
        epoch, i = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (self.epoch, int(key))
        sample = self.samples[i]
        # a copy: the transforms may write into their input, and the cache is shared
        image = self.cache[i].copy() if self.cache is not None else read_rgb(sample.path)
        if hasattr(self.transform, "set_random_seed"):
            self.transform.set_random_seed(_item_seed(self.seed, epoch, i))
        out = self.transform(image=image)["image"]
        return torch.from_numpy(to_chw(out)), int(sample.label)


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


#: How loader worker processes start.  ``forkserver``: each worker is forked from a small server
#: process that was started fresh (fork + exec) and imported only torch and this module, so no
#: worker inherits the training process's state: its OpenMP, oneTBB (OpenVINO) and OpenCV thread
#: pools, locks held mid-call by their threads, or CUDA.  Plain ``fork`` copies all of that
#: (docs/ARCHITECTURE.md, "Loader workers").  Where forkserver does not exist (macOS, Windows)
#: torch's platform default (``spawn``) is used.
WORKER_START_METHOD: str | None = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else None


def _worker_init(_worker_id: int) -> None:
    """One OpenCV thread per worker: the workers already run in parallel (torch sets its own
    intra-op threads to 1 in a worker)."""
    import cv2

    cv2.setNumThreads(1)


def make_loader(dataset: Dataset, workers: int, *, batch_sampler=None, batch_size: int | None = None,
                persistent: bool = False, pin_memory: bool = False) -> DataLoader:
    """The one place a corese-edge ``DataLoader`` is built.

    ``workers`` processes (0: load in this process).  ``persistent``: keep the workers between
    epochs (for a loader iterated once per epoch, so their start-up, a few seconds each, is paid
    once); only the training loader is persistent, and it requests ``(epoch, index)`` items, so
    the workers' copy of the dataset never needs :meth:`FERDataset.set_epoch`.
    """
    # Its own generator: every new iterator (each epoch, unless persistent) draws a base seed from
    # the loader's generator, which by default is torch's global one, so the number of workers and
    # persistence would shift the global stream that dropout reads.  Items do not use the base seed
    # (their augmentation is seeded per item), so a fixed private generator changes nothing else.
    kw: dict = dict(num_workers=int(workers), pin_memory=pin_memory, generator=torch.Generator().manual_seed(0))
    if workers > 0:
        kw.update(multiprocessing_context=WORKER_START_METHOD, worker_init_fn=_worker_init,
                  persistent_workers=persistent)
    if batch_sampler is not None:
        return DataLoader(dataset, batch_sampler=batch_sampler, **kw)
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **kw)
