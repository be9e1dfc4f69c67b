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


def _run(data, out, workers):
    from corese_edge.train import TrainConfig, train

    cfg = TrainConfig(data=str(data), model="coresse-lite", img_size=32, epochs=2, batch_size=16, lr=3e-3,
                      warmup_epochs=1, pretrained="none", workers=workers, seed=3, out=str(out), progress=False,
                      face_template_images=0, swa_start=0.5)
    return train(cfg)


@pytest.mark.slow
def test_two_persistent_workers_train_bit_exactly_like_none(tmp_path):
    """The same run with 2 worker processes (kept across both epochs) and with none gives the same
    weights: each item's augmentation comes from (seed, epoch, index), and the epoch travels with
    the request, not in the workers' stale copy of the dataset."""
    from corese_edge.data.synthetic import generate
    from corese_edge.model.checkpoint import load_checkpoint

    data = generate(tmp_path / "data", train_per_class=10, test_per_class=2, size=48, seed=1, progress=False)
    a = load_checkpoint(_run(data, tmp_path / "w0", 0).last_path).state_dict
    b = load_checkpoint(_run(data, tmp_path / "w2", 2).last_path).state_dict
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, f"{len(diff)} tensors differ between workers=0 and workers=2, e.g. {diff[:3]}"
