"""``corese-edge build-engine`` as a user runs it: the batch profile reaches the builder in order,
and bad input is one ``error:`` line with exit status 2.

The builder underneath is real; TensorRT is the contract fake of fake_tensorrt.py (it cannot run
here), so the profile is read from the fake's recorded ``IOptimizationProfile.set_shape`` call.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.export import tensorrt as T
from tests.export.fake_tensorrt import make_fake_tensorrt


@pytest.fixture
def fake_device(monkeypatch):
    """A fake TensorRT 10.13 as ``import tensorrt`` and a GPU for engine_environment() to find."""
    trt = make_fake_tensorrt("10.13.0")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    gpu = {"info": T.GpuInfo("NVIDIA L4 (fake)", "8.9")}
    monkeypatch.setattr(T, "gpu_info", lambda: gpu["info"])
    return trt, gpu


@pytest.mark.contract
def test_min_opt_and_max_batch_reach_the_builder_in_that_order(tiny_onnx, tmp_path, fake_device):
    """Issue 8: a swap of --opt-batch and --max-batch anywhere between click and set_shape is caught."""
    trt, _ = fake_device
    plan = tmp_path / "m.plan"
    res = CliRunner().invoke(cli, ["build-engine", str(tiny_onnx), "--out", str(plan),
                                   "--min-batch", "2", "--opt-batch", "5", "--max-batch", "9"])
    assert res.exit_code == 0, res.output
    assert f"wrote {plan} (fp32, TensorRT 10.13.0, NVIDIA L4 (fake)) and {plan}.json" in res.output
    (call,) = [c for c in trt.calls if c[0] == "set_shape"]
    assert call == ("set_shape", "input", (2, 3, 32, 32), (5, 3, 32, 32), (9, 3, 32, 32))
    profile = json.loads((tmp_path / "m.plan.json").read_text())["profile"]["input"]
    assert [profile[k][0] for k in ("min", "opt", "max")] == [2, 5, 9]


@pytest.mark.contract
def test_hardware_compat_on_a_jetson_is_one_line(tiny_onnx, tmp_path, fake_device):
    _, gpu = fake_device
    gpu["info"] = T.GpuInfo("Orin (nvgpu)", "8.7", integrated=True)
    res = CliRunner().invoke(cli, ["build-engine", str(tiny_onnx), "--out", str(tmp_path / "m.plan"),
                                   "--hardware-compat", "ampere+"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: --hardware-compat ampere+ is not supported on Orin (nvgpu), an integrated (Jetson) GPU: NVIDIA "
        "supports hardware-compatible engines only on discrete Ampere-or-newer GPUs, not on JetPack; "
        "build without --hardware-compat on each Jetson"]
    assert list(tmp_path.iterdir()) == []


def _bad_inputs(tmp_path, tiny_onnx):
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    return {
        "missing file": ([str(tmp_path / "nope.onnx")], f"error: ONNX model not found: {tmp_path / 'nope.onnx'}"),
        "not ONNX": ([str(not_onnx)], f"error: {not_onnx} is not an ONNX model (DecodeError); build-engine takes "
                                      "the .onnx files that corese-edge export writes"),
        "min > opt": ([str(tiny_onnx), "--min-batch", "8", "--opt-batch", "4"],
                      "error: batch profile must satisfy 1 <= min <= opt <= max, got 8/4/32"),
    }


@pytest.mark.parametrize("case", ["missing file", "not ONNX", "min > opt"])
def test_bad_input_is_one_line_with_exit_status_2(case, tiny_onnx, tmp_path):
    """Run as a user does (a subprocess, no TensorRT here): refused before TensorRT is even looked for."""
    args, line = _bad_inputs(tmp_path, tiny_onnx)[case]
    res = subprocess.run([sys.executable, "-m", "corese_edge", "build-engine", *args],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines() == [line]
    assert not list(tmp_path.glob("*.plan*"))
