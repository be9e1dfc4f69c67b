"""The CUDA memory layer of the TensorRT runner: devices, streams, events, buffers, CUDA graphs.

Two interchangeable backends, chosen by :func:`cuda_api` (``--cuda-backend auto|cuda-python|pycuda``):

``cuda-python`` (the default, and what NVIDIA's TensorRT samples use since 8.6)
    imported as ``from cuda.bindings import runtime`` (cuda-python >= 12.x / 13, the samples'
    spelling from TensorRT 10.13.3 on) or the legacy ``from cuda import cudart`` (cuda-python
    11.x / early 12.x).  Only the runtime API is used.  Every call returns ``(err, value...)``; every
    ``err`` is checked and turned into :class:`CudaError` naming the call.
``pycuda`` (the JetPack habit; it must be built on the device)
    raises ``pycuda.driver.Error`` itself, which is translated into :class:`CudaError`.
    CUDA-graph capture needs cuda-python.

Memory is owned by objects with an explicit ``free()`` (TensorRT samples' ``common_runtime.py``
style): :class:`DeviceBuffer` (``cudaMalloc``) and :class:`HostBuffer` (pinned ``cudaMallocHost``,
exposed as a numpy array).  ``free()`` is idempotent.

Without an NVIDIA driver, :meth:`CudaApi.device_count` returns 0 and keeps the reason (for example
``cudaErrorInsufficientDriver (35)``) so callers can refuse cleanly instead of crashing.
"""
from __future__ import annotations

import ctypes
import importlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from corese_edge.errors import MissingExtra, UserError

log = logging.getLogger(__name__)

CUDA_BACKENDS = ("auto", "cuda-python", "pycuda")


class CudaError(UserError):
    """A CUDA call failed; the message names the call and CUDA's error name."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.7"
    total_memory_mb: int
    driver_version: str  # "12.6" (CUDA driver API version) or the pycuda equivalent

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "compute_capability": self.compute_capability,
            "total_memory_mb": self.total_memory_mb,
            "driver_version": self.driver_version,
        }


def _cuda_version_str(v: int) -> str:
    """CUDA's integer versions (12060) -> ``"12.6"``."""
    return f"{v // 1000}.{(v % 1000) // 10}" if v else "none"


class DeviceBuffer:
    """``nbytes`` of device memory at ``ptr`` (an int).  Call :meth:`free` when done."""

    def __init__(self, api: "CudaApi", ptr: int, nbytes: int, handle: Any = None) -> None:
        self._api, self.ptr, self.nbytes, self._handle = api, int(ptr), int(nbytes), handle

    def free(self) -> None:
        if self._api is not None:
            api, self._api = self._api, None
            api._free_device(self)


class HostBuffer:
    """Pinned (page-locked) host memory viewed as a numpy array ``array`` of ``shape`` / ``dtype``."""

    def __init__(self, api: "CudaApi", ptr: int, array: np.ndarray, handle: Any = None) -> None:
        self._api, self.ptr, self.array, self._handle = api, int(ptr), array, handle
        self.nbytes = int(array.nbytes)

    def free(self) -> None:
        if self._api is not None:
            api, self._api = self._api, None
            self.array = np.empty(0, dtype=self.array.dtype)  # drop the view before the memory goes
            api._free_host(self)


class CudaApi:
    """The operations :class:`~corese_edge.runtime.trt.TrtRunner` needs; see the two subclasses."""

    name = "?"
    supports_graphs = False

    def device_count(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    #: why ``device_count()`` returned 0, e.g. "cudaErrorInsufficientDriver (35)"
    no_device_reason: str = ""

    def version(self) -> str:
        return "unknown"


# ------------------------------------------------------------------------------------------------
# cuda-python
# ------------------------------------------------------------------------------------------------
def import_cudart() -> tuple[Any, str]:
    """``(cudart module, how it was imported)``: ``cuda.bindings.runtime`` first, then legacy ``cuda.cudart``."""
    try:
        return importlib.import_module("cuda.bindings.runtime"), "cuda.bindings.runtime"
    except ImportError:
        pass
    try:
        return importlib.import_module("cuda.cudart"), "cuda.cudart"
    except ImportError:
        raise MissingExtra(
            "cuda-python is not installed (TensorRT buffers and streams): pip install 'corese-edge[trt]'"
        ) from None


class CudaPythonApi(CudaApi):
    """cuda-python runtime API with every return code checked."""

    name = "cuda-python"
    supports_graphs = True

    def __init__(self, cudart: Any | None = None) -> None:
        if cudart is None:
            cudart, self.module_name = import_cudart()
        else:
            self.module_name = getattr(cudart, "__name__", "cudart")
        self.rt = cudart
        self._success = cudart.cudaError_t.cudaSuccess

    # every cuda-python call returns (err, *values)
    def check(self, result: Any, what: str) -> Any:
        if isinstance(result, tuple):
            err, values = result[0], result[1:]
        else:
            err, values = result, ()
        if err != self._success:
            raise CudaError(f"CUDA call {what} failed: {self.error_text(err)}")
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def error_text(self, err: Any) -> str:
        try:
            name = self.rt.cudaGetErrorName(err)[1]
            text = self.rt.cudaGetErrorString(err)[1]
            name = name.decode() if isinstance(name, bytes) else str(name)
            text = text.decode() if isinstance(text, bytes) else str(text)
            return f"{name} ({int(err)}): {text}"
        except Exception:  # the error functions themselves failing must not hide the original
            return f"error {err!r}"

    def version(self) -> str:
        try:
            import importlib.metadata as md

            for dist in ("cuda-python", "cuda-bindings"):
                try:
                    return md.version(dist)
                except md.PackageNotFoundError:
                    continue
        except Exception:
            pass
        return "unknown"

    def runtime_version(self) -> str:
        return _cuda_version_str(int(self.check(self.rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")))

    def driver_version(self) -> str:
        return _cuda_version_str(int(self.check(self.rt.cudaDriverGetVersion(), "cudaDriverGetVersion")))

    def device_count(self) -> int:
        err, *rest = self.rt.cudaGetDeviceCount()
        if err != self._success:
            self.no_device_reason = self.error_text(err)
            return 0
        count = int(rest[0])
        if count == 0:
            self.no_device_reason = "cudaGetDeviceCount reports 0 devices"
        return count

    def device_info(self, index: int = 0) -> GpuInfo:
        prop = self.check(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = prop.name
        name = name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)
        return GpuInfo(
            index=index,
            name=name.strip(),
            compute_capability=f"{prop.major}.{prop.minor}",
            total_memory_mb=int(prop.totalGlobalMem) // (1 << 20),
            driver_version=self.driver_version(),
        )

    def set_device(self, index: int) -> None:
        self.check(self.rt.cudaSetDevice(index), "cudaSetDevice")

    # streams and events
    def create_stream(self) -> Any:
        return self.check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def synchronize(self, stream: Any) -> None:
        self.check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def destroy_stream(self, stream: Any) -> None:
        self.check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def create_event(self) -> Any:
        return self.check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def record_event(self, event: Any, stream: Any) -> None:
        self.check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self.check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def destroy_event(self, event: Any) -> None:
        self.check(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    # memory
    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        ptr = self.check(self.rt.cudaMalloc(max(int(nbytes), 1)), f"cudaMalloc({nbytes})")
        return DeviceBuffer(self, int(ptr), nbytes)

    def _free_device(self, buf: DeviceBuffer) -> None:
        self.check(self.rt.cudaFree(buf.ptr), "cudaFree")

    def host_buffer(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        ptr = int(self.check(self.rt.cudaMallocHost(max(nbytes, 1)), f"cudaMallocHost({nbytes})"))
        raw = (ctypes.c_byte * max(nbytes, 1)).from_address(ptr)
        array = np.frombuffer(raw, dtype=np.uint8, count=nbytes).view(dtype).reshape(shape)
        return HostBuffer(self, ptr, array)

    def _free_host(self, buf: HostBuffer) -> None:
        self.check(self.rt.cudaFreeHost(buf.ptr), "cudaFreeHost")

    def htod_async(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self.check(self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, int(nbytes), kind, stream), "cudaMemcpyAsync(H2D)")

    def dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self.check(self.rt.cudaMemcpyAsync(dst.ptr, src.ptr, int(nbytes), kind, stream), "cudaMemcpyAsync(D2H)")

    # CUDA graphs (TensorRT developer guide, "CUDA Graphs": enqueue once, then capture)
    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self.check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: Any) -> "CudaGraph":
        graph = self.check(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            result = self.rt.cudaGraphInstantiate(graph, 0)
        except TypeError:  # cuda-python 11.x: (graph, logBuffer, bufferSize); use the flags variant
            result = self.rt.cudaGraphInstantiateWithFlags(graph, 0)
        instantiated = self.check(result, "cudaGraphInstantiate")
        exec_ = instantiated[0] if isinstance(instantiated, tuple) else instantiated
        return CudaGraph(self, graph, exec_)

    def launch_graph(self, graph: "CudaGraph", stream: Any) -> None:
        self.check(self.rt.cudaGraphLaunch(graph.exec_, stream), "cudaGraphLaunch")

    def _free_graph(self, graph: "CudaGraph") -> None:
        self.check(self.rt.cudaGraphExecDestroy(graph.exec_), "cudaGraphExecDestroy")
        self.check(self.rt.cudaGraphDestroy(graph.graph), "cudaGraphDestroy")


class CudaGraph:
    """An instantiated CUDA graph; ``free()`` destroys it."""

    def __init__(self, api: CudaApi, graph: Any, exec_: Any) -> None:
        self._api, self.graph, self.exec_ = api, graph, exec_

    def launch(self, stream: Any) -> None:
        self._api.launch_graph(self, stream)  # type: ignore[attr-defined]

    def free(self) -> None:
        if self._api is not None:
            api, self._api = self._api, None
            api._free_graph(self)  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------------------------
# pycuda
# ------------------------------------------------------------------------------------------------
class PyCudaApi(CudaApi):
    """pycuda (``pycuda.driver``) with its exceptions translated to :class:`CudaError`.

    pycuda needs a current context: :meth:`set_device` retains the device's primary context (the
    one the CUDA runtime, and so TensorRT, uses) and makes it current for this thread.
    """

    name = "pycuda"
    supports_graphs = False

    def __init__(self, driver: Any | None = None) -> None:
        if driver is None:
            try:
                driver = importlib.import_module("pycuda.driver")
            except ImportError:
                raise MissingExtra(
                    "pycuda is not installed; build it on the device (pip install pycuda) "
                    "or use --cuda-backend cuda-python"
                ) from None
        self.drv = driver
        self._ctx = None

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self.drv.Error as exc:
            raise CudaError(f"CUDA call {what} failed (pycuda): {exc}") from None

    def version(self) -> str:
        try:
            import pycuda

            return str(getattr(pycuda, "VERSION_TEXT", "unknown"))
        except Exception:
            return "unknown"

    def device_count(self) -> int:
        try:
            self.drv.init()
            count = int(self.drv.Device.count())
        except self.drv.Error as exc:
            self.no_device_reason = f"pycuda: {exc}"
            return 0
        if count == 0:
            self.no_device_reason = "pycuda reports 0 devices"
        return count

    def driver_version(self) -> str:
        return _cuda_version_str(int(self._call("cuDriverGetVersion", self.drv.get_driver_version)))

    def device_info(self, index: int = 0) -> GpuInfo:
        dev = self._call("cuDeviceGet", self.drv.Device, index)
        major, minor = self._call("cuDeviceComputeCapability", dev.compute_capability)
        return GpuInfo(
            index=index,
            name=str(self._call("cuDeviceGetName", dev.name)).strip(),
            compute_capability=f"{major}.{minor}",
            total_memory_mb=int(self._call("cuDeviceTotalMem", dev.total_memory)) // (1 << 20),
            driver_version=self.driver_version(),
        )

    def set_device(self, index: int) -> None:
        self._call("cuInit", self.drv.init)
        dev = self._call("cuDeviceGet", self.drv.Device, index)
        self._ctx = self._call("cuDevicePrimaryCtxRetain", dev.retain_primary_context)
        self._call("cuCtxPushCurrent", self._ctx.push)

    def release(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            self._call("cuCtxPopCurrent", self.drv.Context.pop)
            del ctx

    def create_stream(self) -> Any:
        return self._call("cuStreamCreate", self.drv.Stream)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        self._call("cuStreamSynchronize", stream.synchronize)

    def destroy_stream(self, stream: Any) -> None:
        pass  # pycuda destroys streams when they are garbage-collected

    def create_event(self) -> Any:
        return self._call("cuEventCreate", self.drv.Event)

    def record_event(self, event: Any, stream: Any) -> None:
        self._call("cuEventRecord", event.record, stream)

    def elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._call("cuEventElapsedTime", start.time_till, end))

    def destroy_event(self, event: Any) -> None:
        pass

    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        alloc = self._call(f"cuMemAlloc({nbytes})", self.drv.mem_alloc, max(int(nbytes), 1))
        return DeviceBuffer(self, int(alloc), nbytes, handle=alloc)

    def _free_device(self, buf: DeviceBuffer) -> None:
        self._call("cuMemFree", buf._handle.free)

    def host_buffer(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer:
        array = self._call("cuMemHostAlloc", self.drv.pagelocked_empty, tuple(shape), np.dtype(dtype))
        return HostBuffer(self, array.ctypes.data, array, handle=array.base)

    def _free_host(self, buf: HostBuffer) -> None:
        self._call("cuMemFreeHost", buf._handle.free)

    def htod_async(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int, stream: Any) -> None:
        flat = src.array.reshape(-1).view(np.uint8)[: int(nbytes)]
        self._call("cuMemcpyHtoDAsync", self.drv.memcpy_htod_async, dst.ptr, flat, stream)

    def dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int, stream: Any) -> None:
        flat = dst.array.reshape(-1).view(np.uint8)[: int(nbytes)]
        self._call("cuMemcpyDtoHAsync", self.drv.memcpy_dtoh_async, flat, src.ptr, stream)

    def begin_capture(self, stream: Any) -> None:
        raise UserError("CUDA graphs need cuda-python: use --cuda-backend cuda-python or --no-cuda-graph")

    def end_capture(self, stream: Any) -> CudaGraph:  # pragma: no cover - begin_capture refuses first
        raise UserError("CUDA graphs need cuda-python")


def cuda_api(backend: str = "auto") -> CudaApi:
    """The CUDA layer: ``auto`` tries cuda-python, then pycuda; a missing one is :class:`MissingExtra`."""
    if backend not in CUDA_BACKENDS:
        raise UserError(f"--cuda-backend must be one of {', '.join(CUDA_BACKENDS)}, got {backend!r}")
    if backend == "cuda-python":
        return CudaPythonApi()
    if backend == "pycuda":
        return PyCudaApi()
    try:
        return CudaPythonApi()
    except MissingExtra:
        pass
    try:
        return PyCudaApi()
    except MissingExtra:
        raise MissingExtra(
            "neither cuda-python nor pycuda is installed (TensorRT buffers and streams): "
            "pip install 'corese-edge[trt]'"
        ) from None
