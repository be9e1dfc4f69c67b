"""CONTRACT TESTS: the TensorRT builder against fake ``tensorrt`` modules (see fake_tensorrt.py).

TensorRT cannot be installed on the machines corese-edge is built on, so these tests pin our builder
to NVIDIA's documented Python API of each supported line (8.6, 10.x, 11.x): which network flag it
uses, which builder flags it sets, that it never touches an API removed in 11.x, and what the
sidecar records.  They do not prove a real engine builds; the ``trt`` marker's tests do that where
TensorRT exists.
"""
from __future__ import annotations

import json
import sys

import pytest

from corese_edge.errors import UserError
from corese_edge.export import tensorrt as T
from tests.export.fake_tensorrt import make_fake_tensorrt

pytestmark = pytest.mark.contract

GPU = T.GpuInfo("NVIDIA Jetson AGX Orin (fake)", "8.7")
LINES = {"8.6.1": "8.6", "10.3.0": "10.x", "10.13.0": "10.x", "11.4.0": "11.x"}
PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="module")
def onnx_files(tiny_export):
    return {p: tiny_export.artifacts[f"onnx-{p}"] for p in PRECISIONS}


@pytest.mark.parametrize("version", list(LINES))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_line_builds_each_precision_the_documented_way(version, precision, onnx_files, tmp_path):
    trt = make_fake_tensorrt(version)
    built = T.build_engine(onnx_files[precision], tmp_path / "model.plan", 1, 4, 16, trt=trt, gpu=GPU)
    line = LINES[version]
    (flags,) = [c[1] for c in trt.calls if c[0] == "create_network"]
    set_flags = [c[1] for c in trt.calls if c[0] == "set_flag"]
    if line == "8.6":
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        assert set_flags == {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}[precision]
    elif line == "10.x":
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert set_flags == []
    else:
        assert flags == 0 and set_flags == []
    assert ("set_shape", "input", (1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32)) in trt.calls
    assert ("set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 4 << 30) in trt.calls
    assert built.plan.read_bytes().startswith(b"FAKEPLAN:" + line.encode())
    assert built.sidecar.name == "model.plan.json"
    side = json.loads(built.sidecar.read_text())
    assert side["schema"] == T.PLAN_SCHEMA
    assert side["precision"] == precision and side["trt_version"] == version and side["tensorrt_line"] == line
    assert side["gpu_name"] == GPU.name and side["compute_capability"] == "8.7"
    assert side["plan_size"] == built.plan.stat().st_size
    assert side["profile"] == {"input": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}}
    assert side["inputs"] == [{"name": "input", "mode": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]}]
    assert side["outputs"][0]["name"] == "logits" and side["outputs"][0]["dtype"] == "float32"
    assert len(side["class_names"]) == 7 and side["preprocessing"]["size"] == 32
    from corese_edge.model.checkpoint import file_sha256

    assert side["onnx_sha256"] == file_sha256(onnx_files[precision])
    # the runtime's TrtRunner reads this sidecar: it must parse and vouch for the plan file
    from corese_edge.runtime.trt import PlanSidecar, check_plan_file

    parsed = PlanSidecar.read(built.sidecar)
    assert parsed.trt_version == version and parsed.precision == precision and len(parsed.class_names) == 7
    assert check_plan_file(built.plan, parsed) == built.plan.read_bytes()


def test_the_11x_fake_really_lacks_the_removed_api():
    trt = make_fake_tensorrt("11.4.0")
    for removed in ("FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", "DIRECT_IO"):
        assert not hasattr(trt.BuilderFlag, removed)
    assert not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    builder = trt.Builder(trt.Logger())
    assert not hasattr(builder, "platform_has_fast_fp16") and not hasattr(builder, "platform_has_fast_int8")
    config = builder.create_builder_config()
    with pytest.raises(AttributeError):
        config.int8_calibrator = None
    assert hasattr(make_fake_tensorrt("10.3.0").BuilderFlag, "FP16")
    assert not hasattr(make_fake_tensorrt("8.6.1").NetworkDefinitionCreationFlag, "STRONGLY_TYPED")


def test_the_fakes_reject_the_documented_misuses(onnx_files):
    trt = make_fake_tensorrt("8.6.1")  # 8.6: a Q/DQ graph without BuilderFlag.INT8 does not build
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    assert trt.OnnxParser(network, trt.Logger()).parse(onnx_files["int8"].read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is None
    config.set_flag(trt.BuilderFlag.INT8)
    assert builder.build_serialized_network(network, config) is not None
    implicit = builder.create_network(0)  # 8.6's ONNX parser needs explicit batch
    assert not trt.OnnxParser(implicit, trt.Logger()).parse(onnx_files["fp32"].read_bytes())
    trt10 = make_fake_tensorrt("10.3.0")  # 10.x: no precision flags on a strongly typed network
    b10 = trt10.Builder(trt10.Logger())
    n10 = b10.create_network(1 << int(trt10.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    trt10.OnnxParser(n10, trt10.Logger()).parse(onnx_files["fp16"].read_bytes())
    c10 = b10.create_builder_config()
    p10 = b10.create_optimization_profile()
    p10.set_shape("input", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))
    c10.add_optimization_profile(p10)
    c10.set_flag(trt10.BuilderFlag.FP16)
    assert b10.build_serialized_network(n10, c10) is None


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.4.0"])
def test_portability_options_and_the_timing_cache(version, onnx_files, tmp_path):
    trt = make_fake_tensorrt(version)
    cache = tmp_path / "trt.cache"
    cache.write_bytes(b"old")
    built = T.build_engine(onnx_files["int8"], None, 1, 8, 32, 2.0, cache, "ampere+", True, trt=trt, gpu=GPU)
    assert built.plan == onnx_files["int8"].with_name("model.int8.plan")
    assert ("create_timing_cache", b"old") in trt.calls and ("set_timing_cache", False) in trt.calls
    assert cache.read_bytes() == b"old+fake-timings"
    assert ("set_flag", "VERSION_COMPATIBLE") in trt.calls
    side = json.loads(built.sidecar.read_text())
    assert side["hardware_compat"] == "ampere+" and side["version_compatible"] is True
    assert "VERSION_COMPATIBLE" in side["build"]["builder_flags"]


@pytest.mark.parametrize("version, message", [("8.5.2", "JetPack 5"), ("8.4.1", "too old"), ("9.2.0", "9.x preview")])
def test_unsupported_tensorrt_gets_a_clear_message(version, message, onnx_files, tmp_path):
    with pytest.raises(T.EngineUnavailable, match=message):
        T.build_engine(onnx_files["fp32"], tmp_path / "m.plan", trt=_fake_with_version(version), gpu=GPU)


def _fake_with_version(version):
    trt = make_fake_tensorrt("8.6.1" if version.startswith("8") else "10.3.0")
    trt.__version__ = version
    return trt


def test_parser_errors_are_reported(onnx_files, tmp_path):
    trt = make_fake_tensorrt("10.3.0")

    def broken(self, model, path=None):
        self.errors.append("In node 12 (Conv): unsupported attribute")
        return False

    trt.OnnxParser.parse = broken
    with pytest.raises(T.EngineBuildError, match="unsupported attribute"):
        T.build_engine(onnx_files["fp32"], tmp_path / "m.plan", trt=trt, gpu=GPU)
    assert not (tmp_path / "m.plan").exists()


def test_missing_tensorrt_lean_runtime_and_missing_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(T.EngineUnavailable, match="TensorRT is not installed"):
        T.engine_environment()
    lean = make_fake_tensorrt("11.4.0")
    del lean.Builder
    monkeypatch.setitem(sys.modules, "tensorrt", lean)
    with pytest.raises(T.EngineUnavailable, match="lean or dispatch runtime"):
        T.engine_environment()
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.3.0"))
    monkeypatch.setattr(T, "gpu_info", lambda: None)
    with pytest.raises(T.EngineUnavailable, match="no CUDA GPU"):
        T.engine_environment()


def test_build_engine_command_is_runnable_text(tmp_path):
    cmd = T.build_engine_command(tmp_path / "my model.int8.onnx", tmp_path / "m.plan", 1, 8, 32)
    assert cmd.startswith("corese-edge build-engine ") and "'" in cmd  # the space is quoted
    assert cmd.endswith("--min-batch 1 --opt-batch 8 --max-batch 32")
    with pytest.raises(UserError):
        T.build_engine(tmp_path / "missing.onnx", trt=make_fake_tensorrt("10.3.0"), gpu=GPU)
