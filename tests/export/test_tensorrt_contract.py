"""CONTRACT TESTS: the TensorRT builder against fake ``tensorrt`` modules (see fake_tensorrt.py).

TensorRT cannot be installed on the machines corese-edge is built on, so these tests pin our builder
to NVIDIA's documented Python API of each supported line (8.6, 10.x, 11.x): which network flag it
uses, which builder flags it sets, that it never touches an API removed in 11.x, how it survives the
documented failures (a mismatched timing cache, no timing cache, a failed build, parser errors),
and what the sidecar records.  They do not prove a real engine builds; the ``trt`` marker's tests
do that where TensorRT exists.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from corese_edge.errors import UserError
from corese_edge.export import tensorrt as T
from corese_edge.runtime.trt import PlanSidecar, check_plan_file
from tests.export.fake_tensorrt import (
    BUILDER_ONLY_ENUMS_11, ENUMS_11, enum_tables, fake_timing_cache, make_fake_tensorrt,
)

pytestmark = pytest.mark.contract

ORIN = T.GpuInfo("Orin (nvgpu)", "8.7", integrated=True)  # what cudaGetDeviceProperties reports on a Jetson
L4 = T.GpuInfo("NVIDIA L4 (fake)", "8.9")
T4 = T.GpuInfo("Tesla T4 (fake)", "7.5")
LINES = {"8.6.1": "8.6", "10.3.0": "10.x", "10.13.0": "10.x", "11.4.0": "11.x"}
PRECISIONS = ("fp32", "fp16", "int8")


@pytest.fixture(scope="module")
def onnx_files(tiny_export):
    return {p: tiny_export.artifacts[f"onnx-{p}"] for p in PRECISIONS}


def _side(built) -> dict:
    return json.loads(built.sidecar.read_text())


@pytest.mark.parametrize("version", list(LINES))
@pytest.mark.parametrize("precision", PRECISIONS)
def test_each_line_builds_each_precision_the_documented_way(version, precision, onnx_files, tmp_path):
    trt = make_fake_tensorrt(version)
    built = T.build_engine(onnx_files[precision], tmp_path / "model.plan", 1, 4, 16, trt=trt, gpu=ORIN)
    line = LINES[version]
    (flags,) = [c[1] for c in trt.calls if c[0] == "create_network"]
    set_flags = [c[1] for c in trt.calls if c[0] == "set_flag"]
    if line == "8.6":
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        assert set_flags == {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
    elif line == "10.x":
        assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert set_flags == []
    else:
        assert flags == 0 and set_flags == []
    assert ("set_shape", "input", (1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32)) in trt.calls
    assert ("set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 4 << 30) in trt.calls
    assert built.plan.read_bytes().startswith(b"FAKEPLAN:" + line.encode())
    assert built.sidecar.name == "model.plan.json"
    side = _side(built)
    assert side["schema"] == T.PLAN_SCHEMA
    assert side["precision"] == precision and side["trt_version"] == version and side["tensorrt_line"] == line
    assert side["gpu_name"] == ORIN.name and side["compute_capability"] == "8.7" and side["gpu_integrated"] is True
    assert side["plan_size"] == built.plan.stat().st_size
    assert side["profile"] == {"input": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}}
    assert side["inputs"] == [{"name": "input", "mode": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]}]
    assert side["outputs"][0]["name"] == "logits" and side["outputs"][0]["dtype"] == "float32"
    assert len(side["class_names"]) == 7 and side["preprocessing"]["size"] == 32
    from corese_edge.model.checkpoint import file_sha256

    assert side["onnx_sha256"] == file_sha256(onnx_files[precision])
    # the runtime's TrtRunner reads this sidecar: it must parse and vouch for the plan file
    parsed = PlanSidecar.read(built.sidecar)
    assert parsed.trt_version == version and parsed.precision == precision and len(parsed.class_names) == 7
    assert check_plan_file(built.plan, parsed) == built.plan.read_bytes()


def test_on_8_6_a_qdq_graph_gets_fp16_between_its_qdq_pairs(onnx_files, tmp_path):
    """Weak typing: INT8 alone leaves LayerNorm/GELU/Add between the Q/DQ pairs in FP32 (NvInfer.h v8.6.1)."""
    trt = make_fake_tensorrt("8.6.1")
    built = T.build_engine(onnx_files["int8"], tmp_path / "m.plan", trt=trt, gpu=ORIN)
    assert built.plan.read_bytes().endswith(b":between-qdq=fp16")
    assert _side(built)["build"]["builder_flags"] == ["INT8", "FP16"]


def test_8_6_parses_the_weakly_typed_form_of_the_int8_artifact(onnx_files, tmp_path):
    """8.6's parser reads Q/DQ scales as float32 and stops at opset 17 (onnx-tensorrt tag 8.6-GA);
    the INT8 artifact has FP16 scales at opset 19, so 8.6 must get the widened opset-17 form while
    10.x / 11.x parse the file itself."""
    import onnx

    artifact = onnx_files["int8"]
    raw = artifact.read_bytes()
    proto = onnx.load_from_string(raw)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 19
    # the fake 8.6 parser refuses the artifact as it is, as the real one would
    trt = make_fake_tensorrt("8.6.1")
    network = trt.Builder(trt.Logger()).create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, trt.Logger())
    assert not parser.parse(raw) and "FLOAT" in str(parser.get_error(0))

    trt = make_fake_tensorrt("8.6.1")
    T.build_engine(artifact, tmp_path / "86.plan", trt=trt, gpu=ORIN)
    (parsed_len,) = [c[1] for c in trt.calls if c[0] == "parse"]
    weak = T.network_bytes(proto, T.tensorrt_line("8.6.1"), artifact)
    assert parsed_len == len(weak) != len(raw)
    weak_proto = onnx.load_from_string(weak)
    assert max(o.version for o in weak_proto.opset_import if o.domain in ("", "ai.onnx")) == 17
    assert not any(t.data_type == onnx.TensorProto.FLOAT16 for t in weak_proto.graph.initializer)
    for version in ("10.3.0", "11.4.0"):
        trt = make_fake_tensorrt(version)
        T.build_engine(artifact, tmp_path / f"{version}.plan", trt=trt, gpu=L4)
        assert [c[1] for c in trt.calls if c[0] == "parse"] == [len(raw)]


def test_the_11x_fake_really_lacks_the_removed_api():
    trt = make_fake_tensorrt("11.4.0")
    for removed in ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                    "PREFER_PRECISION_CONSTRAINTS"):
        assert not hasattr(trt.BuilderFlag, removed)
    assert hasattr(trt.BuilderFlag, "DIRECT_IO")  # deprecated in 10.7, still bound in 11.x (pyCore.cpp v11.1)
    assert not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    builder = trt.Builder(trt.Logger())
    assert not hasattr(builder, "platform_has_fast_fp16") and not hasattr(builder, "platform_has_fast_int8")
    config = builder.create_builder_config()
    with pytest.raises(AttributeError):
        config.int8_calibrator = None
    assert hasattr(make_fake_tensorrt("10.3.0").BuilderFlag, "FP16")
    assert not hasattr(make_fake_tensorrt("8.6.1").NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    # members arrive with the minor version that added them (pyCore.cpp v10.8.0 vs v10.9.0)
    assert not hasattr(make_fake_tensorrt("10.3.0").HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY")
    assert hasattr(make_fake_tensorrt("10.13.0").HardwareCompatibilityLevel, "SAME_COMPUTE_CAPABILITY")


def test_the_11x_fake_enums_equal_the_real_lean_bindings():
    """Issue 8 §2: BuilderFlag, DataType, MemoryPoolType, TensorIOMode of the fake 11.x == tensorrt_lean 11.4."""
    lean = pytest.importorskip("tensorrt_lean_bindings")
    assert lean.__version__.startswith("11.")
    fake = make_fake_tensorrt(lean.__version__)
    for name in ("BuilderFlag", "DataType", "MemoryPoolType", "TensorIOMode", "HardwareCompatibilityLevel"):
        real = {k: int(v) for k, v in getattr(lean, name).__members__.items()}
        assert {k: int(v) for k, v in getattr(fake, name).__members__.items()} == real, name
        assert ENUMS_11[name] == real, name
    # every other enum of the fake is one the lean runtime does not bind, listed (with its source) as builder-only
    fake_enums = set(enum_tables(lean.__version__))
    assert fake_enums - set(ENUMS_11) == set(BUILDER_ONLY_ENUMS_11)
    for name in BUILDER_ONLY_ENUMS_11:
        assert not hasattr(lean, name), f"{name} is bound by the lean runtime: compare it instead"
    assert not hasattr(lean, "Builder") and hasattr(lean, "Runtime")


def test_the_fakes_reject_the_documented_misuses(onnx_files):
    import onnx

    trt = make_fake_tensorrt("8.6.1")  # 8.6: a Q/DQ graph without BuilderFlag.INT8 does not build
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    weak = T.network_bytes(onnx.load(onnx_files["int8"]), T.tensorrt_line("8.6.1"), onnx_files["int8"])
    assert trt.OnnxParser(network, trt.Logger()).parse(weak)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("input", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is None
    config.set_flag(trt.BuilderFlag.INT8)
    assert builder.build_serialized_network(network, config).endswith(b"between-qdq=fp32")
    implicit = builder.create_network(0)  # 8.6's ONNX parser needs explicit batch
    parser = trt.OnnxParser(implicit, trt.Logger())
    assert not parser.parse(onnx_files["fp32"].read_bytes())
    assert parser.num_errors == 1 and str(parser.get_error(0)).startswith("In node -1 with name:")
    explicit = trt.OnnxParser(builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)),
                              trt.Logger())
    assert not explicit.parse(b"not an onnx file")
    assert str(explicit.get_error(0)).startswith("(parse): MODEL_DESERIALIZE_FAILED: failed to parse ONNX model")
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


def test_the_fake_timing_cache_fails_like_the_documented_one():
    trt = make_fake_tensorrt("10.3.0", device="Orin")
    config = trt.Builder(trt.Logger()).create_builder_config()
    assert config.get_timing_cache() is None  # "None if no timing cache is set"
    foreign = config.create_timing_cache(fake_timing_cache(trt, device="RTX 4090 / TensorRT 10.3.0"))
    assert config.set_timing_cache(foreign, ignore_mismatch=False) is False
    assert config.get_timing_cache() is None  # a refused cache is not attached
    assert config.set_timing_cache(config.create_timing_cache(b"garbage"), ignore_mismatch=False) is False
    assert config.set_timing_cache(foreign, ignore_mismatch=True) is True
    own = config.create_timing_cache(b"")
    assert config.set_timing_cache(own, ignore_mismatch=False) is True and config.get_timing_cache() is own


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.4.0"])
def test_portability_options_and_a_reused_timing_cache(version, onnx_files, tmp_path):
    trt = make_fake_tensorrt(version)
    cache = tmp_path / "trt.cache"
    stored = fake_timing_cache(trt, timings=b"[earlier timings]")
    cache.write_bytes(stored)
    # a copy, so the default plan path lands in tmp_path, not beside the shared tiny_export's files
    onnx_int8 = tmp_path / onnx_files["int8"].name
    shutil.copyfile(onnx_files["int8"], onnx_int8)
    built = T.build_engine(onnx_int8, None, 1, 8, 32, 2.0, cache, "ampere+", True, trt=trt, gpu=L4)
    assert built.plan == onnx_int8.with_name("model.int8.plan")
    assert ("create_timing_cache", stored) in trt.calls and ("set_timing_cache", False) in trt.calls
    assert cache.read_bytes() == stored + f"[timings {LINES[version]}]".encode()  # updated, not replaced
    assert ("set_flag", "VERSION_COMPATIBLE") in trt.calls
    side = _side(built)
    assert side["hardware_compat"] == "ampere+" and side["version_compatible"] is True
    assert "VERSION_COMPATIBLE" in side["build"]["builder_flags"] and side["build"]["timing_cache_note"] is None


@pytest.mark.parametrize("stale", ["another device", "unreadable"])
def test_a_stale_timing_cache_is_set_aside_and_the_plan_still_gets_its_sidecar(stale, onnx_files, tmp_path, caplog):
    """Issue 7 §3/§4: set_timing_cache returns False; get_timing_cache is then None; never None.serialize()."""
    trt = make_fake_tensorrt("10.3.0", device="Orin after a JetPack upgrade")
    cache = tmp_path / "trt.cache"
    blob = fake_timing_cache(trt, device="Orin before the upgrade") if stale == "another device" else b"\x00junk"
    cache.write_bytes(blob)
    with caplog.at_level(logging.WARNING, logger="corese_edge.export.tensorrt"):
        built = T.build_engine(onnx_files["fp16"], tmp_path / "m.plan", timing_cache=cache, trt=trt, gpu=ORIN)
    assert "timing cache" in caplog.text and "empty cache" in caplog.text
    assert ("create_timing_cache", b"") in trt.calls  # started over
    assert cache.read_bytes() == fake_timing_cache(trt, timings=b"[timings 10.x]")  # now this device's cache
    assert "another GPU or TensorRT version" in _side(built)["build"]["timing_cache_note"]
    assert check_plan_file(built.plan, PlanSidecar.read(built.sidecar))


def test_a_timing_cache_tensorrt_cannot_create_is_set_aside(onnx_files, tmp_path, monkeypatch):
    trt = make_fake_tensorrt("11.4.0")
    cache = tmp_path / "trt.cache"
    cache.write_bytes(b"\x00junk")
    made = []

    def create(self, blob):  # the binding returns the C++ nullptr as None
        made.append(bytes(blob))
        return None

    monkeypatch.setattr(type(trt.Builder(trt.Logger()).create_builder_config()), "create_timing_cache", create)
    built = T.build_engine(onnx_files["fp32"], tmp_path / "m.plan", timing_cache=cache, trt=trt, gpu=L4)
    assert made == [b"\x00junk", b""]
    assert cache.read_bytes() == b"\x00junk"  # nothing to write back: no cache was attached
    assert "built without one" in _side(built)["build"]["timing_cache_note"]


def test_a_failed_build_raises_one_line_and_keeps_the_previous_plan(onnx_files, tmp_path):
    trt = make_fake_tensorrt("10.3.0")
    first = T.build_engine(onnx_files["fp16"], tmp_path / "m.plan", trt=trt, gpu=L4)
    before = (first.plan.read_bytes(), first.sidecar.read_bytes())
    failing = make_fake_tensorrt("10.3.0")
    failing.Builder.build_serialized_network = lambda self, network, config: None  # "None on failure"
    with pytest.raises(T.EngineBuildError, match=r"failed to build .*model.fp16.onnx") as info:
        T.build_engine(onnx_files["fp16"], tmp_path / "m.plan", 2, 4, 8, trt=failing, gpu=L4)
    assert "\n" not in str(info.value)
    assert (first.plan.read_bytes(), first.sidecar.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.plan", "m.plan.json"]


def test_if_the_sidecar_cannot_be_written_no_plan_is_left(onnx_files, tmp_path, monkeypatch):
    """Plan and sidecar are committed together or neither (issue 7 §4)."""
    trt = make_fake_tensorrt("10.3.0")
    target = tmp_path / "m.plan"
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".plan.json"):
            raise PermissionError(13, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(PermissionError):
        T.build_engine(onnx_files["fp16"], target, trt=trt, gpu=L4)
    assert list(tmp_path.iterdir()) == []  # no plan, no sidecar, no temporary files


def test_the_export_reads_engine_facts_from_the_sidecar_as_written(onnx_files, tmp_path):
    """export.json's TensorRT version comes from the sidecar through PlanSidecar.read, the runner's reader."""
    from corese_edge.export.results import EngineResult

    built = T.build_engine(onnx_files["fp16"], tmp_path / "m.plan", trt=make_fake_tensorrt("10.13.0"), gpu=L4)
    assert EngineResult({"fp16": built}).trt_version == "10.13.0"
    assert EngineResult().trt_version is None
    written = PlanSidecar.read(built.sidecar)
    assert written.to_dict() == _side(built) == built.info  # what is read is exactly what was written
    assert written.gpu_name == L4.name and written.hardware_compat == "none" and written.path == built.sidecar


def test_commit_refuses_a_sidecar_that_does_not_vouch_for_its_plan(tmp_path):
    info = {"schema": T.PLAN_SCHEMA, "plan_size": 4, "plan_sha256": "0" * 64}
    with pytest.raises(ValueError, match="size and sha256"):
        T.commit_plan(tmp_path / "m.plan", b"PLAN", info)
    assert list(tmp_path.iterdir()) == []


def test_a_crash_between_plan_and_sidecar_is_refused_by_the_runner(onnx_files, tmp_path):
    """SIGKILL after the new plan is in place but before its sidecar: the runner's sha256 check refuses the pair."""
    trt = make_fake_tensorrt("10.3.0")
    T.build_engine(onnx_files["fp16"], tmp_path / "m.plan", trt=trt, gpu=L4)
    code = textwrap.dedent(f"""
        import os, signal
        from corese_edge.export import tensorrt as T
        from tests.export.fake_tensorrt import make_fake_tensorrt
        real = os.replace
        def replace(src, dst):
            if str(dst).endswith(".plan.json"):
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)
        os.replace = replace
        T.build_engine({str(onnx_files["fp16"])!r}, {str(tmp_path / "m.plan")!r}, version_compatible=True,
                       trt=make_fake_tensorrt("10.3.0"), gpu=T.GpuInfo("NVIDIA L4 (fake)", "8.9"))
    """)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert res.returncode == -9, res.stderr
    assert b"VERSION_COMPATIBLE" in (tmp_path / "m.plan").read_bytes()  # the new plan landed ...
    sidecar = PlanSidecar.read(tmp_path / "m.plan.json")
    assert sidecar.version_compatible is False  # ... beside the old sidecar
    with pytest.raises(UserError, match="sidecar"):
        check_plan_file(tmp_path / "m.plan", sidecar)


def test_the_sidecar_carries_the_onnx_precision_census(onnx_files, tmp_path):
    census = pytest.importorskip("corese_edge.export.census")
    built = T.build_engine(onnx_files["int8"], tmp_path / "m.plan", trt=make_fake_tensorrt("10.3.0"), gpu=L4)
    expected = json.loads(json.dumps(census.precision_census(onnx_files["int8"]).to_dict()))
    assert _side(built)["census"] == expected


def test_a_failing_census_never_fails_the_build(onnx_files, tmp_path, monkeypatch, caplog):
    census = pytest.importorskip("corese_edge.export.census")

    def broken(*args, **kwargs):
        raise RuntimeError("census exploded")

    monkeypatch.setattr(census, "precision_census", broken)
    with caplog.at_level(logging.WARNING, logger="corese_edge.export.tensorrt"):
        built = T.build_engine(onnx_files["int8"], tmp_path / "m.plan", trt=make_fake_tensorrt("11.4.0"), gpu=L4)
    assert _side(built)["census"] is None and "census exploded" in caplog.text
    assert check_plan_file(built.plan, PlanSidecar.read(built.sidecar))


@pytest.mark.parametrize("gpu, message", [
    (ORIN, "integrated .*Jetson.* not on JetPack"),
    (T.GpuInfo("Orin", "8.7"), "integrated"),  # no integrated flag (torch without is_integrated): Orin's 8.7
    (T4, "Ampere or newer"),
])
def test_hardware_compat_is_refused_where_nvidia_does_not_support_it(gpu, message, onnx_files, tmp_path):
    trt = make_fake_tensorrt("10.13.0")
    with pytest.raises(UserError, match=message):
        T.build_engine(onnx_files["fp16"], tmp_path / "m.plan", hardware_compat="ampere+", trt=trt, gpu=gpu)
    assert not any(c[0] == "build_serialized_network" for c in trt.calls)
    assert list(tmp_path.iterdir()) == []
    built = T.build_engine(onnx_files["fp16"], tmp_path / "m.plan", trt=trt, gpu=gpu)  # without it: fine
    assert _side(built)["hardware_compat"] == "none"


@pytest.mark.parametrize("version, message", [("8.5.2", "JetPack 5"), ("8.4.1", "too old"), ("9.2.0", "9.x preview")])
def test_unsupported_tensorrt_gets_a_clear_message(version, message, onnx_files, tmp_path):
    with pytest.raises(T.EngineUnavailable, match=message):
        T.build_engine(onnx_files["fp32"], tmp_path / "m.plan", trt=_fake_with_version(version), gpu=L4)


def _fake_with_version(version):
    trt = make_fake_tensorrt("8.6.1" if version.startswith("8") else "10.3.0")
    trt.__version__ = version
    return trt


def test_parser_errors_are_reported_in_one_line(onnx_files, tmp_path):
    trt = make_fake_tensorrt("10.3.0")

    def broken(self, model, path=None):
        self.errors.append(trt.ParserError("UNSUPPORTED_NODE", "unsupported attribute", 12, "/stem/conv", "Conv",
                                           "importConv"))
        self.errors.append(trt.ParserError("INVALID_NODE", "bad input", 13, "/stem/act", "Erf", "importErf"))
        return False

    trt.OnnxParser.parse = broken
    with pytest.raises(T.EngineBuildError,
                       match=r"could not parse .*In node 12 with name: /stem/conv and operator: Conv "
                             r"\(importConv\): UNSUPPORTED_NODE: unsupported attribute; In node 13 .*bad input") as info:
        T.build_engine(onnx_files["fp32"], tmp_path / "m.plan", trt=trt, gpu=L4)
    assert "\n" not in str(info.value)
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


def test_gpu_info_reads_the_integrated_attribute(monkeypatch):
    """cudaDeviceProp.integrated is 1 on Jetsons (cuda-python's runtime binding)."""
    from tests.runtime.test_cuda import _fake_cudart

    _fake_cudart(monkeypatch, driver=12060, runtime=12090, gpu_name="Orin", cc="8.7", integrated=True)
    assert T.gpu_info() == T.GpuInfo("Orin", "8.7", integrated=True)
    _fake_cudart(monkeypatch, driver=12060, runtime=12090, gpu_name="NVIDIA L4", cc="8.9", integrated=False)
    assert T.gpu_info().integrated is False


def test_a_driver_too_old_is_not_no_gpu_for_the_builder(monkeypatch):
    """Error 35 with a driver present names the fix instead of "no CUDA GPU is visible"."""
    from tests.runtime.test_cuda import _fake_cudart, _no_pycuda

    _fake_cudart(monkeypatch, driver=12020, runtime=13050)
    _no_pycuda(monkeypatch)
    with pytest.raises(T.EngineUnavailable, match=r"CUDA 12\.2.*trt-cu12"):
        T.gpu_info()
    _fake_cudart(monkeypatch, driver=0, runtime=13050)  # no driver at all: simply no GPU
    assert T.gpu_info() is None


def test_build_engine_command_is_runnable_text(tmp_path):
    cmd = T.build_engine_command(tmp_path / "my model.int8.onnx", tmp_path / "m.plan", 1, 8, 32)
    assert cmd.startswith("corese-edge build-engine ") and "'" in cmd  # the space is quoted
    assert cmd.endswith("--min-batch 1 --opt-batch 8 --max-batch 32")
    with pytest.raises(UserError):
        T.build_engine(tmp_path / "missing.onnx", trt=make_fake_tensorrt("10.3.0"), gpu=L4)
