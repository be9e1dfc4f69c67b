"""Exact resume after SIGKILL, DDP with a real torchrun process group (gloo, 2 CPU processes),
and the NaN guard."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from corese_edge.model import load_checkpoint
from corese_edge.train import TrainConfig, TrainingDiverged, train

pytestmark = pytest.mark.slow

TINY = dict(model="coresse-test", img_size=32, epochs=3, batch_size=16, lr=2e-3, warmup_epochs=1,
            pretrained="none", workers=0, seed=5, progress=False)
#: --swa-start 0: SWA averages from the end of the first epoch, so a kill after it interrupts a
#: run whose AveragedModel already holds a model (its state must survive the resume too)
SWA_FROM_FIRST = 0.0


def _cli_args(data, out, **extra):
    opts = {**TINY, **extra}
    args = ["--data", str(data), "--out", str(out), "--no-progress"]
    for k, v in opts.items():
        if k == "progress":
            continue
        args += [f"--{k.replace('_', '-')}", str(v)]
    return args


def _env():
    env = os.environ.copy()
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _rows(out: Path) -> int:
    m = out / "metrics.jsonl"
    return len(m.read_text().splitlines()) if m.exists() else 0


def test_resume_after_sigkill_ends_with_identical_weights(small_faces, tmp_path):
    """Killed after SWA has started (>= 1 model averaged), resumed: bit-identical to a run never killed."""
    # 1. the reference: an uninterrupted run of the same command, in its own process like the
    # killed one, so both runs start from the same clean interpreter.  (Full suite runs once died
    # with SIGSEGV at this test: OpenVINO's dangling signal stack, docs/ARCHITECTURE.md.)
    ref_out = tmp_path / "ref"
    ref_run = subprocess.run([sys.executable, "-m", "corese_edge", "train", *_cli_args(small_faces, ref_out, swa_start=SWA_FROM_FIRST)],
                             env=_env(), capture_output=True, text=True, timeout=900)
    assert ref_run.returncode == 0, ref_run.stderr[-3000:]
    ref_report = json.loads((ref_out / "report.json").read_text())

    # 2. the same run through the CLI, killed with SIGKILL once the first epoch is checkpointed
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "corese_edge", "train", *_cli_args(small_faces, out, swa_start=SWA_FROM_FIRST)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600
    while _rows(out) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "swa_final.pt").exists()
    killed = load_checkpoint(out / "checkpoints" / "last.pt")
    assert int(killed.train_state["swa_state_dict"]["n_averaged"]) == killed.epoch + 1 >= 1

    # 3. resume through the CLI
    res = subprocess.run(cmd + ["--resume"], env=_env(), capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]

    a = load_checkpoint(ref_out / "swa_final.pt").state_dict
    b = load_checkpoint(out / "swa_final.pt").state_dict
    assert a.keys() == b.keys()
    diffs = {k: (a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()}
    assert max(diffs.values()) == 0.0, sorted(diffs.items(), key=lambda kv: -kv[1])[:3]
    assert json.loads((out / "report.json").read_text())["swa_models"] == ref_report["swa_models"] == 3
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    ref_rows = [json.loads(l) for l in (ref_out / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in ref_rows]


def test_ddp_two_processes_gloo(small_faces, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "corese_edge", "train", *_cli_args(small_faces, out, epochs=2, batch_size=8), "--nproc", "2"]
    env = _env()
    env["OMP_NUM_THREADS"] = "1"
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["world_size"] == 2
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # written once, by rank 0
    n_train = report["dataset"]["train"]
    for r in rows:
        assert r["world_size"] == 2
        # every training image is seen once per epoch across both ranks (plus even-batch padding)
        assert n_train <= r["train_images"] <= n_train + 2 * 2
        assert r["steps"] == -(-(-(-n_train // 2)) // 8)
    assert load_checkpoint(out / "swa_final.pt").kind == "swa"
    assert not list(out.glob("**/*.tmp"))


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(synthetic_data, tmp_path, monkeypatch):
    """Failure injection: the loss turns NaN in the second epoch."""
    from corese_edge.train import trainer as trainer_mod

    real_forward = trainer_mod.SoftTargetCE.forward
    calls = {"n": 0}

    def poisoned(self, logits, target):
        calls["n"] += 1
        loss = real_forward(self, logits, target)
        return loss * float("nan") if trainer_mod.torch.is_grad_enabled() and calls["n"] > steps_per_epoch else loss

    steps_per_epoch = -(-(len(list((Path(synthetic_data)).glob("DATASET/train/*/*.jpg"))) * 9 // 10) // 16)
    monkeypatch.setattr(trainer_mod.SoftTargetCE, "forward", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(TrainConfig(data=str(synthetic_data), out=str(out), **TINY))
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last.epoch == 0
    assert all(torch.isfinite(v).all() for v in last.state_dict.values() if v.is_floating_point())
