"""The PyTorch (and ONNX Runtime CUDA) parts on a real GPU; TensorRT is not needed.

Skipped (with the reason) without a CUDA GPU; see tests/gpu/conftest.py.  Nothing here has run on
the machines corese-edge is developed on.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


def test_training_steps_with_bf16_and_channels_last(torch_cuda, gpu_data, tmp_path):
    """``corese-edge train --amp bf16 --channels-last --device cuda`` runs, learns and writes its run.

    The demo's data and learning rate, 5 epochs (220 optimizer steps): enough for the loss to fall
    clearly below its first-epoch value (ln 7 = 1.95 at chance), which a broken bf16 / channels-last
    path (no optimizer steps, NaN-free garbage) would not do.
    """
    if not torch_cuda.cuda.is_bf16_supported():
        pytest.skip(f"{torch_cuda.cuda.get_device_name(0)} does not support bf16")
    from corese_edge.cli import cli
    from corese_edge.model.checkpoint import load_checkpoint

    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "train", "--data", str(gpu_data), "--model", "coresse-lite", "--img-size", "64", "--epochs", "5",
        "--batch-size", "32", "--lr", "3e-3", "--warmup-epochs", "1", "--pretrained", "none", "--workers", "2",
        "--amp", "bf16", "--channels-last", "--device", "cuda", "--out", str(out), "--no-progress",
    ])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["amp"], config["channels_last"], config["device"]) == ("bf16", True, "cuda")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in rows if "train_loss" in r]
    assert len(losses) == 5 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0], f"bf16 training did not reduce the loss: {losses}"
    ckpt = load_checkpoint(out / "swa_final.pt")
    assert all(bool(torch_cuda.isfinite(v).all()) for v in ckpt.state_dict.values() if v.is_floating_point())


def test_cuda_fp16_torch_runner_matches_cpu_fp32(torch_cuda, gpu_run, eval_samples):
    from corese_edge.runtime.classifier import ExpressionClassifier

    paths = [s.path for s in eval_samples[:128]]
    with ExpressionClassifier.from_artifact(gpu_run.swa_path, device="cuda", half=True) as half, \
            ExpressionClassifier.from_artifact(gpu_run.swa_path, device="cpu") as full:
        assert half.runner.precision == "fp16" and half.runner.device == "cuda"
        fp16, fp32 = half.logits(paths), full.logits(paths)
    assert fp16.dtype == np.float32 and fp16.shape == fp32.shape == (128, 7)
    assert float(np.mean(fp16.argmax(1) == fp32.argmax(1))) >= 0.98
    # FP16 keeps ~3 significant digits per op; over the network the logits stay within a few % of their range
    assert float(np.abs(fp16 - fp32).max()) <= 0.05 * float(np.abs(fp32).max()) + 1e-3


def test_bench_checkpoint_on_cuda_in_fp16(torch_cuda, gpu_run, tmp_path):
    from corese_edge.cli import cli

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(cli, ["bench", "--checkpoint", str(gpu_run.swa_path), "--device", "cuda", "--fp16",
                                      "--batch", "1,8", "--warmup-ms", "50", "--duration-s", "0.3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["device"]["gpus"]
    assert [(r["backend"], r["precision"], r["batch"]) for r in doc["results"]] == [("torch", "fp16", 1), ("torch", "fp16", 8)]
    for r in doc["results"]:
        assert r["iterations"] >= 10 and 0 < r["latency_ms"]["min"] <= r["latency_ms"]["median"] <= r["latency_ms"]["max"]


def test_onnx_runtime_cuda_provider_matches_cpu(torch_cuda, gpu_run, eval_samples, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu)")
    from corese_edge.export.onnx_fp32 import export_onnx
    from corese_edge.runtime.classifier import ExpressionClassifier

    onnx_path = export_onnx(gpu_run.swa_path, tmp_path / "model.onnx")
    paths = [s.path for s in eval_samples[:64]]
    with ExpressionClassifier.from_artifact(onnx_path, providers="cuda") as on_gpu, \
            ExpressionClassifier.from_artifact(onnx_path, providers="cpu") as on_cpu:
        assert on_gpu.runner.providers[0] == "CUDAExecutionProvider"
        gpu, cpu = on_gpu.logits(paths), on_cpu.logits(paths)
    # FP32 on both; cuDNN may use TF32 for convolutions on Ampere and newer
    assert float(np.mean(gpu.argmax(1) == cpu.argmax(1))) >= 0.98
    assert float(np.abs(gpu - cpu).max()) <= 0.01 * float(np.abs(cpu).max()) + 1e-3
