"""DDP really averages gradients across ranks (README: "DDP with gloo").

A real torchrun group of 2 CPU processes (gloo) trains on the two shards of the training split.
Each rank keeps its final parameters through the trainer's ``on_epoch_end`` hook. DDP must leave
both ranks with identical parameters that differ from what each rank reaches alone on its shard;
"alone" is the same launch with the DDP wrapper replaced by the bare model (same shards, same
seeds, no gradient averaging), which is exactly the broken variant this test guards against.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent('''
    import os
    import sys

    import torch
    from torch import nn

    from corese_edge.train import TrainConfig, train

    mode, data, out = sys.argv[1:4]
    if mode == "alone":
        nn.parallel.DistributedDataParallel = lambda module, **kwargs: module
    cfg = TrainConfig(data=data, out=out, model="coresse-test", img_size=32, epochs=1, batch_size=8, lr=2e-3,
                      pretrained="none", workers=0, seed=3, progress=False)
    final = {}

    def keep(epoch, model):
        if epoch == cfg.epochs - 1:
            final.update({n: p.detach().clone() for n, p in model.named_parameters()})

    train(cfg, on_epoch_end=keep)
    torch.save(final, os.path.join(out, f"params-rank{os.environ['RANK']}.pt"))
''')


def _launch(mode: str, data, tmp_path) -> tuple[dict, dict]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / mode
    env = os.environ.copy()
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), mode, str(data), str(out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    return tuple(torch.load(out / f"params-rank{r}.pt", weights_only=True) for r in (0, 1))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys() and a
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_ddp_ranks_hold_identical_parameters_that_neither_shard_reaches_alone(small_faces, tmp_path):
    ddp0, ddp1 = _launch("ddp", small_faces, tmp_path)
    alone0, alone1 = _launch("alone", small_faces, tmp_path)

    assert _max_diff(ddp0, ddp1) == 0.0
    # the shards differ, so ranks alone end apart; DDP's shared gradient matches neither of them
    assert _max_diff(alone0, alone1) > 1e-4
    assert _max_diff(ddp0, alone0) > 1e-4
    assert _max_diff(ddp0, alone1) > 1e-4
