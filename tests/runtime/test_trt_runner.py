"""TrtRunner: the checks before deserialization (real files, real cuda-python without a driver) and
contract tests of the named-tensor flow, CUDA graphs, shared context memory and threads on the
asynchronous fakes of tests/runtime/fakes.py (their names and signatures are checked against the
real lean bindings in test_trt_bindings_contract.py)."""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from corese_edge.errors import MissingExtra, UserError
from corese_edge.runtime import ExpressionClassifier
from corese_edge.runtime.trt import TrtRunner, check_trt_version, PlanSidecar, sidecar_path
from tests.runtime import fakes
from tests.runtime.fakes import KERNEL_MS, FakeCuda, FakeTrt, expected_logits, write_plan


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


@pytest.mark.parametrize("gpu, cc, integrated", [
    ("Orin", "8.7", None),              # Jetson AGX Orin: 8.7 >= 8.0, but integrated
    ("NVIDIA Thor", "11.0", None),       # Jetson Thor (CUDA 13 numbering)
    ("NVIDIA GB10", "12.1", True),       # any GPU whose integrated property is set
])
def test_hardware_compatible_plan_is_refused_on_integrated_gpus(tmp_path, gpu, cc, integrated):
    """NVIDIA supports hardware compatibility on discrete GPUs only; Orin's 8.7 must not pass as Ampere+."""
    plan = write_plan(tmp_path, gpu_name="NVIDIA A100", cc="8.0", hardware_compat="ampere+")
    FakeTrt.last_runtime = None
    with pytest.raises(UserError, match=r"only on discrete GPUs; this GPU, .* is integrated \(Jetson\): rebuild"):
        _runner(plan, cuda=FakeCuda(gpu_name=gpu, cc=cc, integrated=integrated)).activate()
    assert FakeTrt.last_runtime is None  # refused before deserializing


@pytest.mark.parametrize(
    "built, installed, module, vc, ok",
    [
        ("10.3.0.30", "10.3.0.30", "tensorrt", False, True),
        ("10.3.0.26", "10.3.0.30", "tensorrt", False, False),    # ...build number included
        ("8.6.2.3", "8.6.2.3", "tensorrt", False, True),
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


# -- CUDA graphs, memory and threads on the asynchronous fakes ------------------------------------
SEQUENCE = (32, 32, 7, 32, 1)


def _batches(seed: int, size: int = 8):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (b, 3, size, size)).astype(np.float32) for b in SEQUENCE]


@pytest.mark.contract
def test_graphs_on_and_off_identical_over_32_32_7_32_1(tmp_path, caplog):
    """One context per captured graph: going back to batch 32 after 7 replays a graph whose context
    was never reshaped (the fake refuses a replay after its context's shape changed)."""
    plan = write_plan(tmp_path, max_batch=32, size=8)
    outs = {}
    for graph in (False, True):
        cuda = FakeCuda()
        with caplog.at_level(logging.WARNING), _runner(plan, cuda=cuda, cuda_graph=graph) as r:
            outs[graph] = [r.infer({"input": x})["logits"] for x in _batches(3)]
            if graph:
                assert [r.has_graph(b) for b in (32, 7, 1)] == [True, True, True]
        assert (cuda.graph_launches == len(SEQUENCE)) is graph
    assert "capture" not in caplog.text
    for x, off, on in zip(_batches(3), outs[False], outs[True]):
        np.testing.assert_array_equal(off, on)
        np.testing.assert_allclose(on, expected_logits(x), rtol=1e-5, atol=1e-6)


@pytest.mark.contract
def test_each_graph_has_its_own_context_captured_after_a_warm_up_enqueue(tmp_path, caplog):
    """trtexec's order: inputs in, one plain enqueue at the shape, synchronise, then capture (the
    fake invalidates a capture whose context has not enqueued at its current shape)."""
    plan = write_plan(tmp_path, max_batch=8, size=8)
    trt = FakeTrt()
    with caplog.at_level(logging.WARNING), _runner(plan, trt=trt, cuda_graph=True) as r:
        for b in (4, 2, 4):
            r.infer({"input": np.ones((b, 3, 8, 8), np.float32)})
        assert r.has_graph(4) and r.has_graph(2) and "capture" not in caplog.text
        graph_contexts = [entry.context for entry in r._graphs.values()]
        assert len({id(c) for c in graph_contexts + [r._context]}) == 3  # plain + one per batch
        for ctx in graph_contexts:
            assert ctx._enqueues == 1  # exactly the warm-up; every later run is the graph
            assert ctx._shape[0] in (2, 4)
        # every context, plain or captured, runs on the one shared scratch allocation
        engine = FakeTrt.last_engine
        assert {c._memory for c in engine._contexts} == {r._scratch.ptr}
        assert all(c._user_managed for c in engine._contexts)


@pytest.mark.contract
@pytest.mark.parametrize("graph", [False, True])
def test_gpu_compute_time_never_includes_the_capture(tmp_path, graph):
    """The fake's device clock charges KERNEL_MS per enqueue: a query's compute is one enqueue, its
    first query included (warm-up and capture happen before the query's events)."""
    plan = write_plan(tmp_path, max_batch=8, size=8)
    with _runner(plan, cuda_graph=graph) as r:
        for b in (8, 8, 3, 8):
            r.infer({"input": np.zeros((b, 3, 8, 8), np.float32)})
            assert r.last_timings["gpu_compute_ms"] == pytest.approx(KERNEL_MS)
            assert r.last_timings["latency_ms"] == pytest.approx(
                r.last_timings["h2d_ms"] + KERNEL_MS + r.last_timings["d2h_ms"])


@pytest.mark.contract
def test_outputs_are_read_after_the_stream_is_synchronised(tmp_path):
    """The fake's device-to-host copy lands only at cudaStreamSynchronize: reading earlier would
    return the previous query's logits."""
    plan = write_plan(tmp_path, max_batch=4, size=8)
    rng = np.random.default_rng(5)
    with _runner(plan) as r:
        for _ in range(3):
            x = rng.uniform(-1, 1, (4, 3, 8, 8)).astype(np.float32)
            np.testing.assert_allclose(r.infer({"input": x})["logits"], expected_logits(x), rtol=1e-5, atol=1e-6)
        # benchmarks fill the pinned input once and call execute(): it returns synchronised too
        x = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
        r.host_input("input")[:2] = x
        r.execute(2)
        np.testing.assert_allclose(r._host_buffers["logits"].array[:2], expected_logits(x), rtol=1e-5, atol=1e-6)


def _assert_nothing_left(cuda: FakeCuda) -> None:
    cudart = cuda.cudart
    assert not cudart.graphs and not cudart.graph_execs  # no graph, no executable graph
    assert all(s.capture is None for s in cudart.streams.values())  # no stream still capturing


@pytest.mark.contract
@pytest.mark.parametrize("failure", ["capture invalidated", "instantiate fails"])
def test_a_failed_capture_falls_back_to_plain_enqueue_and_leaks_nothing(tmp_path, caplog, failure):
    plan = write_plan(tmp_path, max_batch=8, size=8)
    cuda = FakeCuda(fail_instantiate=failure == "instantiate fails")
    trt = FakeTrt(capture_breaks=failure == "capture invalidated")
    rng = np.random.default_rng(7)
    with caplog.at_level(logging.WARNING), _runner(plan, cuda=cuda, trt=trt, cuda_graph=True) as r:
        for b in (8, 8, 3):
            x = rng.uniform(-1, 1, (b, 3, 8, 8)).astype(np.float32)
            np.testing.assert_allclose(r.infer({"input": x})["logits"], expected_logits(x), rtol=1e-5, atol=1e-6)
            _assert_nothing_left(cuda)
        assert not r.has_graph(8) and not r.has_graph(3) and cuda.graph_launches == 0
        warnings = [rec.getMessage() for rec in caplog.records if "CUDA graph capture" in rec.getMessage()]
        assert len(warnings) == 2  # once per batch size, not per query
        assert ("invalidated" if failure == "capture invalidated" else "cudaGraphInstantiate failed") in warnings[0]
        assert cuda.cudart.last_error == 0  # the capture's error was cleared (cudaGetLastError)
    assert cuda.live == {}


@pytest.mark.contract
@pytest.mark.parametrize("version, api", [("8.6.2.3", "8.6"), ("10.0.1.6", "10.0"), ("10.3.0.30", "11"), ("11.4.0.106", "11")])
def test_every_api_line_shares_one_scratch_memory(tmp_path, version, api):
    """8.6: create_execution_context_without_device_memory + device_memory; 10.0: USER_MANAGED +
    device_memory; 10.1+: USER_MANAGED + set_device_memory(memory, size)."""
    plan = write_plan(tmp_path, max_batch=4, size=8, trt_version=version, version_compatible=False)
    trt = FakeTrt("tensorrt", version, api=api)
    with _runner(plan, trt=trt, cuda_graph=True) as r:
        for b in (4, 1, 4):
            x = np.full((b, 3, 8, 8), 0.5, np.float32)
            np.testing.assert_allclose(r.infer({"input": x})["logits"], expected_logits(x), rtol=1e-5)
        contexts = FakeTrt.last_engine._contexts
        assert len(contexts) == 3 and {c._memory for c in contexts} == {r._scratch.ptr}
    assert type(FakeTrt.last_engine).__name__ == {"8.6": "FakeEngine86", "10.0": "FakeEngine100", "11": "FakeEngine"}[api]


@pytest.mark.contract
def test_a_runner_called_from_another_thread_stays_on_its_gpu(tmp_path):
    """cudaSetDevice is per host thread: every CUDA call of GPU 1's runner, from whichever thread,
    runs with device 1 current."""
    plan = write_plan(tmp_path, gpu_name="NVIDIA L4", cc="8.9", max_batch=2, size=8)
    cuda = FakeCuda(count=2, gpu_name="NVIDIA L4", cc="8.9")
    r = _runner(plan, cuda=cuda, device=1, cuda_graph=True).activate()
    start = len(cuda.cudart.calls)
    done = []
    t = threading.Thread(target=lambda: done.append(r.infer({"input": np.ones((2, 3, 8, 8), np.float32)})))
    t.start()
    t.join()
    assert done
    calls = cuda.cudart.calls[start:]
    assert calls and {device for _name, _thread, device in calls if _name != "cudaSetDevice"} == {1}
    r.close()
    assert cuda.live == {}


@pytest.mark.contract
@pytest.mark.parametrize("capture_breaks", [False, True])
def test_bench_with_cuda_graphs_times_replays_only_and_says_whether_it_captured(tmp_path, capture_breaks):
    from corese_edge.timing import BenchSettings, benchmark_runner

    plan = write_plan(tmp_path, max_batch=4, size=8)
    settings = BenchSettings(warmup_ms=0, iterations=5, cuda_graph=True)
    with _runner(plan, trt=FakeTrt(capture_breaks=capture_breaks)) as r:  # bench switches graphs on itself
        res = benchmark_runner(r, 4, settings)
        again = benchmark_runner(r, 1, settings)
    for result in (res, again):
        assert result["cuda_graph"] is True and result["cuda_graph_captured"] is (not capture_breaks)
        assert result["gpu_compute_ms"]["max"] == pytest.approx(KERNEL_MS)  # the capture is in no sample


@pytest.mark.contract
def test_end_to_end_bench_writes_each_querys_preprocessed_frames_into_the_pinned_input(tmp_path):
    from corese_edge.timing import BenchSettings, benchmark_runner

    class Marked(TrtRunner):
        """Its "preprocessing" gives a value the random bench feed never holds."""

        def frame_preprocessor(self):
            spec = self.inputs[0]
            return lambda frames: np.full((len(frames),) + spec.shape[1:], 0.5, dtype=spec.dtype)

    plan = write_plan(tmp_path, max_batch=4, size=8)
    with Marked(plan, cuda=FakeCuda(), trt=FakeTrt()) as r:
        res = benchmark_runner(r, 3, BenchSettings(warmup_ms=0, iterations=3, end_to_end=True, frame_size=16))
        assert np.all(r.host_input(r.inputs[0].name)[:3] == 0.5)
    assert res["end_to_end_ms"]["median"] > 0 and "gpu_compute_ms" in res
