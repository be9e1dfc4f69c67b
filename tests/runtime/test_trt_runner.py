"""TrtRunner: the checks before deserialization (real files, real cuda-python without a driver) and
contract tests of the named-tensor flow against fakes tied to the real lean bindings' names."""
from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from corese_edge.errors import MissingExtra, UserError
from corese_edge.runtime import ExpressionClassifier
from corese_edge.runtime.trt import TrtRunner, check_trt_version, PlanSidecar, sidecar_path
from tests.runtime import fakes
from tests.runtime.fakes import FakeCuda, FakeTrt, expected_logits, write_plan


def _runner(plan: Path, cuda: FakeCuda | None = None, trt: FakeTrt | None = None, **kw) -> TrtRunner:
    return TrtRunner(plan, cuda=cuda or FakeCuda(), trt=trt or FakeTrt(), **kw)


# -- checks before deserializing (no fakes needed for the file checks) ---------------------------
def test_truncated_plan_is_refused_before_deserializing(tmp_path):
    plan = write_plan(tmp_path)
    data = plan.read_bytes()
    plan.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"is \d+ bytes but its sidecar records \d+: the file is truncated"):
        TrtRunner(plan, trt=FakeTrt(), cuda=FakeCuda()).activate()


def test_replaced_plan_fails_the_sha256_check(tmp_path):
    plan = write_plan(tmp_path)
    data = bytearray(plan.read_bytes())
    data[-2] ^= 0x01  # same size, different content
    plan.write_bytes(bytes(data))
    with pytest.raises(UserError, match="sha256 .* differs from its sidecar"):
        _runner(plan).activate()


def test_missing_sidecar_and_missing_plan(tmp_path):
    plan = write_plan(tmp_path)
    sidecar_path(plan).unlink()
    with pytest.raises(UserError, match=r"model\.fp16\.plan\.json not found"):
        _runner(plan).activate()
    with pytest.raises(UserError, match="engine not found"):
        _runner(tmp_path / "nope.plan").activate()


def test_sidecar_without_required_keys(tmp_path):
    plan = write_plan(tmp_path)
    side = json.loads(sidecar_path(plan).read_text())
    del side["gpu_name"]
    sidecar_path(plan).write_text(json.dumps(side))
    with pytest.raises(UserError, match="incomplete plan sidecar.*gpu_name"):
        _runner(plan).activate()


def test_no_gpu_with_real_cuda_python(tmp_path):
    """This machine has no driver: cuda-python's cudaGetDeviceCount fails and we refuse cleanly."""
    pytest.importorskip("cuda.bindings.runtime")
    from corese_edge.runtime.cuda import CudaPythonApi

    api = CudaPythonApi()
    if api.device_count() > 0:
        pytest.skip("a GPU is present")
    plan = write_plan(tmp_path)
    trt = FakeTrt()
    FakeTrt.last_runtime = None
    with pytest.raises(UserError, match=r"no CUDA GPU found \(cudaError\w+ \(\d+\)"):
        TrtRunner(plan, cuda_backend="cuda-python", trt=trt).activate()
    assert FakeTrt.last_runtime is None  # nothing was deserialized


def test_no_gpu_reported_by_the_cuda_layer(tmp_path):
    plan = write_plan(tmp_path)
    FakeTrt.last_runtime = None
    with pytest.raises(UserError, match="no CUDA GPU found .*run the .onnx export instead"):
        _runner(plan, cuda=FakeCuda(count=0)).activate()
    assert FakeTrt.last_runtime is None


def test_sidecar_for_another_gpu_is_refused(tmp_path):
    plan = write_plan(tmp_path, gpu_name="NVIDIA A100-SXM4-80GB", cc="8.0")
    FakeTrt.last_runtime = None
    with pytest.raises(UserError, match=r"built for NVIDIA A100-SXM4-80GB \(compute capability 8\.0\) but this GPU is NVIDIA Orin \(8\.7\)"):
        _runner(plan, cuda=FakeCuda(gpu_name="NVIDIA Orin", cc="8.7")).activate()
    assert FakeTrt.last_runtime is None


def test_same_architecture_other_name_warns_but_loads(tmp_path, caplog):
    plan = write_plan(tmp_path, gpu_name="NVIDIA GeForce RTX 3090", cc="8.6")
    with _runner(plan, cuda=FakeCuda(gpu_name="NVIDIA RTX A6000", cc="8.6")) as r:
        assert r.is_active
    assert "same compute capability 8.6" in caplog.text


def test_hardware_compatible_plan_runs_on_newer_ampere_plus(tmp_path):
    plan = write_plan(tmp_path, gpu_name="NVIDIA A100", cc="8.0", hardware_compat="ampere+")
    with _runner(plan, cuda=FakeCuda(gpu_name="NVIDIA H100", cc="9.0")) as r:
        assert r.is_active
    with pytest.raises(UserError, match="outside that range"):
        _runner(plan, cuda=FakeCuda(gpu_name="Tesla T4", cc="7.5")).activate()


@pytest.mark.parametrize(
    "built, installed, module, vc, ok",
    [
        ("10.3.0.30", "10.3.0.30", "tensorrt", False, True),
        ("10.3.0.30", "10.13.0.35", "tensorrt", False, False),   # plain plans need the same version
        ("10.3.0.30", "10.13.0.35", "tensorrt", True, True),     # version-compatible: same major, newer
        ("10.13.0.35", "10.3.0.30", "tensorrt", True, False),    # ...but not older
        ("10.13.0.35", "11.4.0.106", "tensorrt_lean_bindings", True, True),  # 10 -> 11 step
        ("8.6.2", "11.4.0.106", "tensorrt_lean", True, False),   # 8 -> 11 is not a documented step
        ("11.4.0.106", "11.4.0.106", "tensorrt_lean_bindings", False, False),  # lean needs VC plans
    ],
)
def test_trt_version_rules(tmp_path, built, installed, module, vc, ok):
    plan = write_plan(tmp_path, trt_version=built, version_compatible=vc)
    sidecar = PlanSidecar.read(sidecar_path(plan))
    if ok:
        check_trt_version(plan, sidecar, installed, module)
    else:
        with pytest.raises(UserError, match="TensorRT|version-compatible"):
            check_trt_version(plan, sidecar, installed, module)


def test_version_mismatch_refused_before_deserializing(tmp_path):
    plan = write_plan(tmp_path, trt_version="10.3.0.30", version_compatible=False)
    FakeTrt.last_runtime = None
    with pytest.raises(UserError, match="built with TensorRT 10.3.0.30 but TensorRT 10.13.0.35 is installed"):
        _runner(plan, trt=FakeTrt("tensorrt", "10.13.0.35")).activate()
    assert FakeTrt.last_runtime is None


def test_missing_tensorrt_names_the_fix(tmp_path, monkeypatch):
    import sys

    for name in ("tensorrt", "tensorrt_lean", "tensorrt_lean_bindings"):
        monkeypatch.setitem(sys.modules, name, None)
    plan = write_plan(tmp_path)
    with pytest.raises(MissingExtra, match="TensorRT is not installed.*tensorrt-lean-cu13-bindings"):
        TrtRunner(plan, cuda=FakeCuda()).activate()


# -- contract tests: the named-tensor flow on fakes ----------------------------------------------
@pytest.mark.contract
def test_infer_matches_the_engine_and_reports_trtexec_timings(tmp_path):
    plan = write_plan(tmp_path, max_batch=8, size=16)
    cuda = FakeCuda()
    rng = np.random.default_rng(0)
    with _runner(plan, cuda=cuda) as r:
        assert r.input_names == ["input"] and r.output_names == ["logits"]
        assert r.input_shapes["input"] == (None, 3, 16, 16)
        assert r.output_dtypes["logits"] == np.float32
        assert r.max_batch == 8 and r.precision == "fp16"
        assert FakeTrt.last_runtime.engine_host_code_allowed is True  # version-compatible plan
        for batch in (1, 5, 8, 2):
            x = rng.uniform(-1, 1, (batch, 3, 16, 16)).astype(np.float32)
            y = r.infer({"input": x})["logits"]
            np.testing.assert_allclose(y, expected_logits(x), rtol=1e-5, atol=1e-6)
        t = r.last_timings
        assert set(t) == {"h2d_ms", "gpu_compute_ms", "d2h_ms", "enqueue_ms", "latency_ms"}
        assert t["latency_ms"] == pytest.approx(t["h2d_ms"] + t["gpu_compute_ms"] + t["d2h_ms"])
        assert r.last_inference_time > 0
        buffers = len(cuda.live)
        r.infer({"input": x})
        assert len(cuda.live) == buffers  # allocated once, never per call
        with pytest.raises(UserError, match="exceeds the maximum batch 8"):
            r.infer({"input": np.zeros((9, 3, 16, 16), np.float32)})
    assert cuda.live == {} and cuda.streams_destroyed == 1  # close() freed everything


@pytest.mark.contract
def test_cuda_graph_is_captured_once_per_batch_and_replayed(tmp_path):
    plan = write_plan(tmp_path, max_batch=4, size=8)
    cuda = FakeCuda()
    rng = np.random.default_rng(1)
    with _runner(plan, cuda=cuda, cuda_graph=True) as r:
        for _ in range(3):
            x = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
            np.testing.assert_allclose(r.infer({"input": x})["logits"], expected_logits(x), rtol=1e-5, atol=1e-6)
        assert cuda.graph_launches == 3 and len(r._graphs) == 1
        x = rng.uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32)
        np.testing.assert_allclose(r.infer({"input": x})["logits"], expected_logits(x), rtol=1e-5, atol=1e-6)
        assert sorted(r._graphs) == [2, 3]


@pytest.mark.contract
def test_execute_without_transfers_reports_compute_only(tmp_path):
    plan = write_plan(tmp_path)
    with _runner(plan) as r:
        t = r.execute(4, transfers=False)
    assert set(t) == {"gpu_compute_ms", "enqueue_ms", "latency_ms"}
    assert t["latency_ms"] == t["gpu_compute_ms"]


@pytest.mark.contract
def test_one_runner_is_not_shared_between_threads(tmp_path):
    plan = write_plan(tmp_path)
    with _runner(plan) as r:
        r._lock.acquire()  # another thread is inside infer()
        errors = []
        t = threading.Thread(target=lambda: errors.append(_catch(lambda: r.infer({"input": np.zeros((1, 3, 16, 16), np.float32)}))))
        t.start()
        t.join()
        r._lock.release()
    assert errors and "one TrtRunner per thread" in errors[0]


def _catch(fn):
    try:
        fn()
    except UserError as exc:
        return str(exc)
    return None


@pytest.mark.contract
def test_classifier_on_a_plan(tmp_path):
    plan = write_plan(tmp_path, size=16, max_batch=4)
    runner = _runner(plan)
    clf = ExpressionClassifier(runner)
    assert clf.batch_size == 4 and clf.class_names == tuple(fakes.CLASSES)
    frames = list(np.random.default_rng(2).integers(0, 256, (10, 20, 20, 3), dtype=np.uint8))
    preds = clf.predict(frames)  # 10 images through a max-batch-4 engine: 4 + 4 + 2
    x = clf.preprocessor(frames)
    assert [p.index for p in preds] == list(expected_logits(x).argmax(1))
    clf.close()


@pytest.mark.contract
def test_every_tensorrt_name_we_use_exists_in_the_real_lean_bindings(tmp_path):
    """Run the whole flow (VC plan, graph capture, close) on the fakes, then check each recorded
    attribute, and each TensorRT attribute named in trt.py's source, on tensorrt_lean_bindings."""
    tlb = pytest.importorskip("tensorrt_lean_bindings")
    fakes.USED.clear()
    plan = write_plan(tmp_path, max_batch=4, size=8)
    with _runner(plan, cuda_graph=True) as r:
        r.infer({"input": np.zeros((2, 3, 8, 8), np.float32)})
        r.infer({"input": np.zeros((2, 3, 8, 8), np.float32)})
    classes = {"module": tlb, "Runtime": tlb.Runtime, "ICudaEngine": tlb.ICudaEngine,
               "IExecutionContext": tlb.IExecutionContext, "Logger": tlb.Logger}
    assert {"Runtime", "ICudaEngine", "IExecutionContext", "module"} <= set(fakes.USED)
    for kind, names in fakes.USED.items():
        missing = sorted(n for n in names if not hasattr(classes[kind], n))
        assert not missing, f"{kind} lacks {missing}"
    assert hasattr(tlb.TensorIOMode, "INPUT") and hasattr(tlb.TensorIOMode, "OUTPUT")
    assert hasattr(tlb.Logger, "WARNING")

    # every attribute trt.py calls on the engine / context / runtime, also on paths the run skipped
    import corese_edge.runtime.trt as trt_mod

    source = Path(trt_mod.__file__).read_text()
    targets = {
        r"self\._engine\.(\w+)": tlb.ICudaEngine,
        r"(?:self\._context|ctx)\.(\w+)": tlb.IExecutionContext,
        r"self\._runtime\.(\w+)": tlb.Runtime,
        r"\btrt\.(\w+)": tlb,
    }
    for pattern, cls in targets.items():
        names = set(re.findall(pattern, source))
        assert names, pattern
        missing = sorted(n for n in names if not hasattr(cls, n))
        assert not missing, f"{cls.__name__} lacks {missing}"


def test_open_runner_routes_options_by_format(tmp_path):
    from corese_edge.runtime import OrtRunner, TorchRunner, open_runner

    plan = write_plan(tmp_path)
    r = open_runner(plan, device="cuda:1", providers="cpu", threads=2, cuda_graph=True)
    assert isinstance(r, TrtRunner) and r.device == 1 and r.cuda_graph is True
    assert open_runner(plan, device="2").device == 2
    with pytest.raises(UserError, match="--device takes a GPU index"):
        open_runner(plan, device="cpu")
    o = open_runner(tmp_path / "m.onnx", device="cuda:1", providers="cpu", threads=2)
    assert isinstance(o, OrtRunner) and o.threads == 2 and o.requested_providers == "cpu"
    t = open_runner(tmp_path / "m.pt", device="1", providers="cpu")
    assert isinstance(t, TorchRunner) and t.device == "cuda:1"
    assert open_runner(tmp_path / "m.pt").device == "cpu"
