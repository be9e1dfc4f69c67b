"""The CUDA layer: real cuda-python without a driver, and pycuda's error translation (contract)."""
from __future__ import annotations

import sys
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
    with pytest.raises(MissingExtra, match=r"corese-edge\[trt\]"):
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
