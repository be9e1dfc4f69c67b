"""corese-edge predict / env through click, and the runtime's torch-free imports."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.runtime import ExpressionClassifier
from tests.runtime.test_faces_video import write_video
from corese_edge.runtime.openvino import shared_core


def _images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        cv2.imwrite(str(p), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
        paths.append(p)
    return paths


def test_predict_json_equals_the_library_call(tiny_onnx, tmp_path):
    paths = _images(tmp_path / "faces" / "sub", 3)
    single = _images(tmp_path / "one", 1, seed=1)[0]
    video = write_video(tmp_path / "clip.avi", [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)])
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "faces"), str(single), str(video),
                                      "--model", str(tiny_onnx), "--json", "--every", "2"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema"] == "corese-edge/predictions/1" and len(doc["class_names"]) == 7
    rows = doc["predictions"]
    images = [r for r in rows if r["frame"] is None]
    frames = [r for r in rows if r["frame"] is not None]
    assert [Path(r["input"]).name for r in images] == ["img0.png", "img1.png", "img2.png", "img0.png"]
    assert [r["frame"] for r in frames] == [0, 2]
    with ExpressionClassifier.from_artifact(tiny_onnx) as clf:
        direct = clf.predict(paths + [single])
    assert [r["label"] for r in images] == [p.label for p in direct]
    for r, p in zip(images, direct):
        assert r["probs"][p.label] == pytest.approx(float(p.probs[p.index]), abs=1e-6)


def test_predict_table_output(tiny_onnx, tmp_path):
    [img] = _images(tmp_path, 1)
    result = CliRunner().invoke(cli, ["predict", str(img), "--model", str(tiny_onnx)])
    assert result.exit_code == 0, result.output
    header, row = result.output.strip().splitlines()
    assert header.split()[:4] == ["input", "frame", "label", "conf"]
    assert row.startswith(str(img))


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.jpg", "input not found: .*missing.jpg"),
    (lambda d: (d / "notes.txt").write_text("hi") and d / "notes.txt", "notes.txt: not an image or video file"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "empty: folder holds no images"),
])
def test_predict_bad_inputs_print_one_line(tiny_onnx, tmp_path, make, message):
    bad = make(tmp_path)
    result = CliRunner().invoke(cli, ["predict", str(bad), "--model", str(tiny_onnx)])
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    import re

    assert re.search(message, result.output), result.output


def test_predict_unknown_model_format(tmp_path):
    [img] = _images(tmp_path, 1)
    result = CliRunner().invoke(cli, ["predict", str(img), "--model", str(tmp_path / "m.bin")])
    assert result.exit_code == 2 and "unknown model format '.bin'" in result.output


def test_help_shows_examples():
    for cmd in ("predict", "env", "bench"):
        out = CliRunner().invoke(cli, [cmd, "--help"]).output
        assert "Examples:" in out and f"corese-edge {cmd}" in out


def test_env_reports_and_survives_missing_torch(monkeypatch):
    from corese_edge.env_report import collect_env, format_env

    for name in ("torch", "timm", "onnxruntime", "tensorrt", "tensorrt_lean", "tensorrt_lean_bindings"):
        monkeypatch.setitem(sys.modules, name, None)  # import now raises ImportError
    report = collect_env()
    assert report["libraries"]["torch"]["status"] == "missing"
    assert report["tensorrt"]["status"] == "missing"
    text = format_env(report)
    assert "torch         missing" in text
    rows = {c["command"]: c for c in report["commands"]}
    assert not rows["train"]["ok"] and "pip install 'corese-edge[train]'" in rows["train"]["missing"]
    assert not rows["predict / bench with .onnx"]["ok"] and "corese-edge[export]" in rows["predict / bench with .onnx"]["missing"]
    assert "TensorRT runtime" in rows["predict / bench with .plan"]["missing"]


def test_env_command_here():
    result = CliRunner().invoke(cli, ["env", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["schema"] == "corese-edge/env/1"
    import onnxruntime

    assert doc["libraries"]["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in doc["libraries"]["onnxruntime"]["providers"]
    assert doc["gpus"] or doc["no_gpu_reason"]
    plain = CliRunner().invoke(cli, ["env"])
    assert "commands:" in plain.output and "predict / bench with .onnx" in plain.output


def test_runtime_never_imports_torch(tiny_onnx):
    code = f"""
import sys, numpy as np
import corese_edge
from corese_edge import ExpressionClassifier, Prediction
import corese_edge.runtime, corese_edge.runtime.trt, corese_edge.runtime.cuda, corese_edge.runtime.faces
import corese_edge.bench, corese_edge.bench.jetson, corese_edge.bench.machine
clf = ExpressionClassifier.from_artifact({str(tiny_onnx)!r})
clf.predict(np.zeros((40, 40, 3), np.uint8))
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm', 'albumentations'))
print('LOADED', bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout


@pytest.mark.parametrize("driver, extra, fits", [(12020, "trt-cu12", False), (13000, "trt-cu13", True)])
def test_env_names_the_driver_cuda_version_and_the_extra_that_fits(monkeypatch, driver, extra, fits):
    """JetPack 6.0's CUDA 12.2 driver with cuda-python 13.5 installed: env names the driver's CUDA,
    the extra to install, and says the GPU is hidden by the mismatch rather than absent."""
    import corese_edge.runtime.cuda as cuda_mod
    from corese_edge.env_report import collect_env, format_env
    from tests.runtime.fakes import FakeCudart

    fake = FakeCudart(driver=driver, runtime=13050, gpu_name="NVIDIA L4", cc="8.9")
    monkeypatch.setattr(cuda_mod, "import_cudart", lambda: (fake, "cuda.bindings.runtime"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    report = collect_env()
    version = f"{driver // 1000}.{driver % 1000 // 10}"
    assert report["cuda_driver"] == {"cuda_version": version, "extra": extra, "cuda_python_cuda": "13.5", "fits": fits}
    text = format_env(report)
    line = next(l for l in text.splitlines() if l.startswith("cuda driver"))
    assert f"CUDA {version} (fits corese-edge[{extra}])" in line
    plan_row = {c["command"]: c for c in report["commands"]}["predict / bench with .plan"]
    if fits:
        assert report["gpus"][0]["name"] == "NVIDIA L4" and "cannot use it" not in line
        assert "cuda-python" not in plan_row["missing"]
    else:
        assert "the installed cuda-python is built for CUDA 13.5 and cannot use it" in line
        assert not report["gpus"] and "older than the CUDA 13.5" in report["no_gpu_reason"]
        assert f"pip install 'corese-edge[{extra}]'" in plan_row["missing"]
        assert "an NVIDIA GPU" not in plan_row["missing"]  # the GPU is there; the CUDA layer does not fit


def test_openvino_runner_never_imports_torch(tmp_path):
    """Importing and running the OpenVINO runner, and the classifier on an IR, loads no torch
    (OpenVINO's Python package can import torch for its PyTorch frontend; the runtime must not)."""
    pytest.importorskip("openvino")
    from tests.runtime.test_openvino_runner import ir_from, write_tiny_onnx

    xml = ir_from(write_tiny_onnx(tmp_path / "tiny.onnx"), tmp_path / "tiny.xml")
    code = f"""
import sys, numpy as np
from corese_edge.runtime.openvino import OpenVinoRunner
from corese_edge.runtime import ExpressionClassifier, open_runner
with open_runner({str(xml)!r}) as r:
    r.infer({{"input": np.zeros((1, 3, 16, 16), np.float32)}})
    print('BACKEND', r.backend)
clf = ExpressionClassifier.from_artifact({str(xml)!r})
clf.predict(np.zeros((40, 40, 3), np.uint8))
bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm', 'albumentations', 'nncf'))
print('LOADED', bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "BACKEND openvino" in out.stdout and "LOADED []" in out.stdout, out.stdout


def test_env_reports_openvino_and_its_devices(monkeypatch):
    from corese_edge.env_report import collect_env, format_env

    ov = pytest.importorskip("openvino")
    report = collect_env()
    lib = report["libraries"]["openvino"]
    assert lib["status"] == "ok" and lib["version"] == ov.get_version()
    assert lib["devices"] == list(shared_core().available_devices) and "CPU" in lib["devices"]
    line = next(l for l in format_env(report).splitlines() if l.startswith("openvino"))
    assert f"(devices: {', '.join(lib['devices'])})" in line
    rows = {c["command"]: c for c in report["commands"]}
    assert rows["predict / bench with .xml (OpenVINO)"]["ok"]

    monkeypatch.setitem(sys.modules, "openvino", None)
    missing = collect_env()
    assert missing["libraries"]["openvino"]["status"] == "missing"
    row = {c["command"]: c for c in missing["commands"]}["predict / bench with .xml (OpenVINO)"]
    assert not row["ok"] and "pip install 'corese-edge[openvino]'" in row["missing"]
    assert "openvino      missing" in format_env(missing)
