"""The CUDA layer: real cuda-python without a driver, a driver too old for cuda-python, CUDA-graph
capture clean-up, and pycuda's error translation and per-thread contexts (contract)."""
from __future__ import annotations

import inspect
import sys
import threading
import types

import pytest

from corese_edge.errors import MissingExtra, UserError
from corese_edge.runtime.cuda import CudaError, CudaPythonApi, PyCudaApi, cuda_api, import_cudart


def test_real_cuda_python_reports_no_device_cleanly():
    cudart = pytest.importorskip("cuda.bindings.runtime")
    api = CudaPythonApi()
    count = api.device_count()
    if count:
        pytest.skip("a GPU is present")
    assert "cudaError" in api.no_device_reason  # e.g. cudaErrorInsufficientDriver (35)
    if api.driver_cuda() == 0:  # no driver at all (this machine): "no GPU", not "driver too old"
        from corese_edge.runtime.cuda import probe_gpu

        assert "no NVIDIA driver is loaded" in api.no_device_reason
        assert probe_gpu("cuda-python").status == "no-gpu"
    # every other call's return code is checked and becomes a one-line CudaError
    with pytest.raises(CudaError, match=r"CUDA call cudaMalloc\(1024\) failed: cudaError\w+ \(\d+\)"):
        api.device_buffer(1024)
    assert api.runtime_version().count(".") == 1
    err = cudart.cudaError_t.cudaErrorInvalidValue
    with pytest.raises(CudaError, match="CUDA call cudaThing failed: cudaErrorInvalidValue"):
        api.check((err, None), "cudaThing")
    assert api.check((cudart.cudaError_t.cudaSuccess, 5), "ok") == 5


def test_legacy_cuda_python_import(monkeypatch):
    """cuda-python 11.x / early 12.x exposed ``from cuda import cudart``."""
    legacy = types.ModuleType("cuda.cudart")
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.cudart", legacy)
    mod, how = import_cudart()
    assert mod is legacy and how == "cuda.cudart"
    monkeypatch.setitem(sys.modules, "cuda.cudart", None)
    with pytest.raises(MissingExtra, match=r"corese-edge\[trt-cu12\]'.*older than 580.*corese-edge\[trt-cu13\]'"):
        import_cudart()


def test_backend_choice(monkeypatch):
    with pytest.raises(UserError, match="--cuda-backend must be one of"):
        cuda_api("opencl")
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    with pytest.raises(MissingExtra, match="pycuda is not installed"):
        cuda_api("pycuda")


class _FakePyCudaDriver:
    class Error(Exception):
        pass

    def init(self):
        raise self.Error("cuInit failed: no CUDA-capable device is detected")

    def mem_alloc(self, n):
        raise self.Error("cuMemAlloc failed: out of memory")


@pytest.mark.contract
def test_pycuda_errors_become_cuda_errors():
    api = PyCudaApi(_FakePyCudaDriver())
    assert api.device_count() == 0 and "no CUDA-capable device" in api.no_device_reason
    with pytest.raises(CudaError, match=r"cuMemAlloc\(64\) failed \(pycuda\): cuMemAlloc failed: out of memory"):
        api.device_buffer(64)
    with pytest.raises(UserError, match="CUDA graphs need cuda-python"):
        api.begin_capture(None)


# -- a driver too old for the installed cuda-python (cudaErrorInsufficientDriver, 35) -------------
def _fake_cudart(monkeypatch, **kw):
    """Make import_cudart (and so cuda_api / probe_gpu) find a FakeCudart."""
    from tests.runtime.fakes import FakeCudart
    import corese_edge.runtime.cuda as cuda_mod

    fake = FakeCudart(**kw)
    monkeypatch.setattr(cuda_mod, "import_cudart", lambda: (fake, "cuda.bindings.runtime"))
    return fake


def _no_pycuda(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)


@pytest.mark.contract
@pytest.mark.parametrize("driver, fix", [
    (12020, r"pip install 'corese-edge\[trt-cu12\]' \(cuda-python 12.x: drivers older than 580, JetPack 6.x\)"),
    (11040, r"update the NVIDIA driver \(or JetPack\)"),
])
def test_a_driver_too_old_for_cuda_python_is_not_no_gpu(monkeypatch, driver, fix):
    """JetPack 6.0's CUDA 12.2 driver under cuda-python 13: one line naming both versions and the fix."""
    _fake_cudart(monkeypatch, driver=driver, runtime=13050)
    _no_pycuda(monkeypatch)
    from corese_edge.runtime.cuda import DriverTooOld, probe_gpu

    with pytest.raises(DriverTooOld) as info:
        cuda_api("auto")
    message = str(info.value)
    assert "\n" not in message
    version = f"{driver // 1000}.{driver % 1000 // 10}"
    assert f"the NVIDIA driver supports CUDA {version}, older than the CUDA 13.5 that cuda-python" in message
    assert "(cudaErrorInsufficientDriver, 35)" in message
    assert __import__("re").search(fix, message), message
    with pytest.raises(DriverTooOld):  # an explicit backend reports it too, at device_count
        cuda_api("cuda-python").device_count()
    probe = probe_gpu()
    assert probe.status == "driver-too-old" and probe.driver_cuda == driver and probe.gpu is None


@pytest.mark.contract
def test_no_driver_at_all_is_no_gpu(monkeypatch):
    """cuda-bindings returns the same 35 without any driver; cudaDriverGetVersion then says 0."""
    _fake_cudart(monkeypatch, driver=0)
    _no_pycuda(monkeypatch)
    from corese_edge.runtime.cuda import probe_gpu

    api = cuda_api("auto")
    assert api.device_count() == 0 and "no NVIDIA driver is loaded" in api.no_device_reason
    probe = probe_gpu()
    assert probe.status == "no-gpu" and probe.driver_cuda == 0 and probe.suggested_extra is None


@pytest.mark.contract
def test_auto_falls_back_to_pycuda_when_the_driver_is_too_old(monkeypatch, caplog):
    _fake_cudart(monkeypatch, driver=12020, runtime=13050)
    driver = FakePyCudaDriver()
    monkeypatch.setitem(sys.modules, "pycuda", types.ModuleType("pycuda"))
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    api = cuda_api("auto")
    assert isinstance(api, PyCudaApi) and api.drv is driver
    assert "using pycuda instead" in caplog.text and "CUDA 12.2" in caplog.text


@pytest.mark.contract
def test_a_fitting_driver_gives_the_gpu(monkeypatch):
    _fake_cudart(monkeypatch, driver=12060, runtime=12090, gpu_name="Orin", cc="8.7", integrated=True)
    from corese_edge.runtime.cuda import extra_for_driver, is_integrated, probe_gpu

    probe = probe_gpu()
    assert probe.status == "ok" and probe.gpu.name == "Orin" and probe.gpu.compute_capability == "8.7"
    assert probe.gpu.integrated and is_integrated(probe.gpu)
    assert probe.driver_cuda_version == "12.6" and probe.suggested_extra == "trt-cu12"
    assert [extra_for_driver(v) for v in (11080, 12020, 12090, 13000, 13020)] == [
        None, "trt-cu12", "trt-cu12", "trt-cu13", "trt-cu13"]


@pytest.mark.contract
def test_the_fake_cudart_has_the_real_signatures():
    """FakeCudart's functions carry cuda.bindings.runtime's names and parameters (and the runner
    tests bind every call against the real signature)."""
    real = pytest.importorskip("cuda.bindings.runtime")
    from tests.runtime.fakes import FakeCudart

    names = [n for n in vars(FakeCudart) if n.startswith("cuda") and callable(vars(FakeCudart)[n])]
    assert len(names) > 25
    for name in names:
        fake = [p for p in inspect.signature(vars(FakeCudart)[name]).parameters if p != "self"]
        assert fake == list(inspect.signature(getattr(real, name)).parameters), name
    assert int(real.cudaError_t.cudaErrorInsufficientDriver) == 35
    assert int(real.cudaError_t.cudaErrorStreamCaptureInvalidated) == 901


@pytest.mark.contract
def test_end_capture_destroys_the_graph_when_the_enqueue_failed():
    from corese_edge.runtime.cuda import GraphCaptureError
    from tests.runtime.fakes import FakeCudart

    rt = FakeCudart()
    api = CudaPythonApi(rt)
    stream = api.create_stream()
    api.begin_capture(stream)
    with pytest.raises(GraphCaptureError, match="enqueue failed while capturing"):
        api.end_capture(stream, enqueue_ok=False)
    assert not rt.graphs and not rt.graph_execs and rt.streams[stream].capture is None
    api.begin_capture(stream)  # the stream is usable again
    graph = api.end_capture(stream)
    assert not rt.graphs and len(rt.graph_execs) == 1  # only the executable graph is kept
    graph.free()
    assert not rt.graph_execs


# -- pycuda: the context is pushed and popped on one thread, and detached on release --------------
class FakePyCudaDriver(types.ModuleType):
    """pycuda.driver's context handling as pycuda implements it (src/cpp/cuda.hpp): the context
    stack is per thread; ``Context.pop`` on a thread whose stack is empty raises "cannot pop
    non-current context"; ``detach`` of a context that is not current from a thread other than the
    one that retained it does nothing (the reference leaks); driver calls need a current context
    (CUDA_ERROR_INVALID_CONTEXT)."""

    class Error(Exception):
        pass

    def __init__(self):
        super().__init__("pycuda.driver")
        self.local = threading.local()
        self.retained = 0
        drv = self

        class Context:
            def __init__(self):
                self.thread = threading.get_ident()

            def push(self):
                drv.stack().append(self)

            @staticmethod
            def pop():
                if not drv.stack():
                    raise drv.Error("context::pop failed: invalid context - cannot pop non-current context")
                drv.stack().pop()

            def detach(self):
                if self in drv.stack() or self.thread == threading.get_ident():
                    drv.retained -= 1

        class Device:
            def __init__(self, index):
                self.index = index

            @staticmethod
            def count():
                return 1

            def retain_primary_context(self):
                drv.retained += 1
                return Context()

        self.Context, self.Device = Context, Device
        self.device_attribute = types.SimpleNamespace(INTEGRATED="INTEGRATED")

    def stack(self):
        if not hasattr(self.local, "stack"):
            self.local.stack = []
        return self.local.stack

    def init(self):
        pass

    def get_driver_version(self):
        return 12020

    def mem_alloc(self, n):
        if not self.stack():
            raise self.Error("cuMemAlloc failed: invalid device context")
        return types.SimpleNamespace(free=lambda: None, __int__=lambda: 1)


@pytest.mark.contract
def test_pycuda_pushes_and_pops_on_the_calling_thread_and_detaches():
    drv = FakePyCudaDriver()
    api = PyCudaApi(drv)
    api.set_device(0)  # retains the primary context; pushes nothing
    assert drv.retained == 1 and drv.stack() == []
    errors = []

    def work():
        try:
            with api.scope():
                drv.mem_alloc(16)  # a driver call needs the context current on this thread
            assert drv.stack() == []
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for _ in range(2):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    assert errors == []
    with api.scope():
        drv.mem_alloc(16)
    assert drv.stack() == []
    api.release()
    assert drv.retained == 0  # detached: the primary-context reference is given back
    api.release()  # idempotent
    assert drv.retained == 0
