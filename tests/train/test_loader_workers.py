"""Loader worker processes: started from a fresh forkserver, persistent across epochs, and
bit-exact against loading in the training process."""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.data import Dataset

from corese_edge.data.dataset import WORKER_START_METHOD, make_loader


class _WhoLoads(Dataset):
    """Each item names the process that loaded it and that process's parent."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i):
        return torch.tensor([os.getpid(), os.getppid()])


@pytest.mark.skipif(WORKER_START_METHOD != "forkserver", reason="forkserver is the Linux start method")
def test_workers_are_not_forked_from_the_training_process():
    """A forked worker's parent is this process; a forkserver worker's parent is the server."""
    pids = torch.cat(list(make_loader(_WhoLoads(), 2, batch_size=2))).view(-1, 2)
    assert (pids[:, 0] != os.getpid()).all()  # loaded in worker processes
    assert (pids[:, 1] != os.getpid()).all(), "a worker's parent is the training process: it was forked from it"


def _run(data, out, workers, cache="off"):
    from corese_edge.train import TrainConfig, train

    cfg = TrainConfig(data=str(data), model="coresse-test", img_size=32, epochs=2, batch_size=16, lr=3e-3,
                      warmup_epochs=1, pretrained="none", workers=workers, seed=3, out=str(out), progress=False,
                      face_template_images=0, swa_start=0.5, cache=cache)
    return train(cfg)


@pytest.mark.slow
def test_two_persistent_workers_train_bit_exactly_like_none(tmp_path):
    """The same run with 2 worker processes (kept across both epochs) reading the shared in-memory
    image cache, and with none reading the files, gives the same weights: each item's augmentation
    comes from (seed, epoch, index), the epoch travels with the request, not in the workers' stale
    copy of the dataset, and a cached image is the decoded file resized as the transform would."""
    from corese_edge.data.synthetic import generate
    from corese_edge.model.checkpoint import load_checkpoint

    data = generate(tmp_path / "data", train_per_class=10, test_per_class=2, size=48, seed=1, progress=False)
    a = load_checkpoint(_run(data, tmp_path / "w0", 0).last_path).state_dict
    b = load_checkpoint(_run(data, tmp_path / "w2", 2, cache="on").last_path).state_dict
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"{len(diff)} tensors differ between workers=0 and workers=2, e.g. {diff[:3]}"


@pytest.mark.parametrize("interpolation", ["area", "linear"])
def test_cached_items_equal_items_read_from_disk(synthetic_data, interpolation):
    """Train (augmented, epoch 3) and eval items from the cache equal those decoded from the files,
    bit for bit, upscaled and downscaled; the cache is one shared uint8 block."""
    import numpy as np

    from corese_edge.data.dataset import FERDataset, ImageCache
    from corese_edge.data.layouts import load_index
    from corese_edge.data.transforms import eval_transform, train_transform
    from corese_edge.preprocessing import Preprocessing

    samples = load_index(synthetic_data).split("train")[:12]
    for size in (40, 96):  # the synthetic images are 64 px: down and up
        prep = Preprocessing(size=size, interpolation=interpolation)
        cache = ImageCache.build(samples, size, prep.cv2_interpolation, shared=True)
        assert cache.images.dtype == torch.uint8 and tuple(cache.images.shape) == (12, size, size, 3)
        assert cache.images.is_shared()
        for transform in (train_transform(prep), eval_transform(prep)):
            disk, mem = FERDataset(samples, transform, seed=5), FERDataset(samples, transform, seed=5, cache=cache)
            for i in range(len(samples)):
                a, b = disk[3, i][0].numpy(), mem[3, i][0].numpy()
                assert np.array_equal(a, b), (size, i)
        before = cache.images.clone()
        FERDataset(samples, train_transform(prep), cache=cache)[0]
        assert torch.equal(before, cache.images)  # the transforms never write into the cache
