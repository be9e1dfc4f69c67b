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

A driver that is present but older than the CUDA major cuda-python was built for is *not* "no GPU":
the runtime answers ``cudaGetDeviceCount`` with the same ``cudaErrorInsufficientDriver`` (35), but
``cudaDriverGetVersion`` (which needs no device context) then reports a non-zero driver version.
That case raises :class:`DriverTooOld`, one line naming the driver's CUDA version, the cuda-python
version and the extra that fits (``trt-cu12`` for drivers < 580 and JetPack 6.x, ``trt-cu13`` for
580+ and JetPack 7); :func:`cuda_api` ``("auto")`` first falls back to pycuda when it is installed.

Threads: CUDA's current device (runtime API) and current context (driver API, pycuda) belong to the
calling thread.  Every CUDA call of a runner is made inside :meth:`CudaApi.scope`, which makes the
device current on the calling thread and, for pycuda, pushes the retained primary context on entry
and pops it on exit, on the same thread.
"""
from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from corese_edge.errors import MissingExtra, UserError
from corese_edge.versions import parse_version

log = logging.getLogger(__name__)

CUDA_BACKENDS = ("auto", "cuda-python", "pycuda")


class CudaError(UserError):
    """A CUDA call failed; the message names the call and CUDA's error name."""


class DriverTooOld(CudaError):
    """The NVIDIA driver is older than the CUDA major cuda-python was built for (error 35 with a driver)."""


class GraphCaptureError(CudaError):
    """A CUDA-graph capture could not produce an executable graph.  Raised only after the capture
    was ended and every graph object it made was destroyed, so the caller can fall back to plain
    enqueue (trtexec's ``endCaptureOnError``)."""


#: cudaError_t values the CUDA runtime API documents (CUDA Runtime API, "Data types": cudaError)
CUDA_ERROR_INSUFFICIENT_DRIVER = 35
CUDA_ERROR_STREAM_CAPTURE_INVALIDATED = 901

#: the first driver branch of the CUDA 13 line: CUDA 12.x runs on drivers >= 525 (minor-version
#: compatibility up to < 580), CUDA 13.x needs >= 580
#: (https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html, Table 1)
CUDA13_MIN_DRIVER_BRANCH = 580

#: compute capabilities that exist only as integrated (Tegra / Jetson) GPUs: Nano 5.3, TX2 6.2,
#: Xavier 7.2, Orin 8.7, Thor 10.1 (CUDA 12.x) / 11.0 (CUDA 13 renumbering).  Used when the
#: device's ``integrated`` property is not available.
TEGRA_COMPUTE_CAPABILITIES = frozenset({"5.3", "6.2", "7.2", "8.7", "10.1", "11.0"})


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA GPU, as the runner and the engine builder see it.

    The CUDA layers fill every field; the builder's fallback through torch (no cuda-python, no
    pycuda) knows only the name, the compute capability and whether the GPU is integrated.
    """

    name: str
    compute_capability: str  # "8.7"
    integrated: bool = False  # cudaDeviceProp.integrated: a Tegra (Jetson) GPU sharing host memory
    index: int = 0
    total_memory_mb: int = 0
    driver_version: str = ""  # "12.6" (CUDA driver API version) or the pycuda equivalent

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "compute_capability": self.compute_capability,
            "total_memory_mb": self.total_memory_mb,
            "driver_version": self.driver_version,
            "integrated": self.integrated,
        }


def is_integrated(gpu: GpuInfo) -> bool:
    """True for an integrated (Jetson / Tegra) GPU: its ``integrated`` property, or a Tegra-only
    compute capability.  NVIDIA does not support hardware-compatible plans on these."""
    return bool(gpu.integrated) or gpu.compute_capability in TEGRA_COMPUTE_CAPABILITIES


#: the oldest architecture a hardware-compatible (``AMPERE_PLUS``) plan is built or run on
AMPERE = (8, 0)


def hardware_compat_refusal(gpu: GpuInfo) -> str | None:
    """Why ``gpu`` may not build or run an Ampere-plus hardware-compatible plan, or None when it may.

    The one rule for the builder and the runner (docs/ARCHITECTURE.md, "Plan sidecar"): the
    TensorRT developer guide ("Hardware Compatibility", 8.6 onwards) supports hardware
    compatibility only on Ampere and later *discrete* GPUs, not on JetPack or DRIVE OS; ``kAMPERE_PLUS``
    "is only supported for engines built on NVIDIA Ampere and later GPUs" (include/NvInfer.h, tag
    v10.16).  Returns ``"integrated"`` for a Jetson (:func:`is_integrated`: Orin's 8.7 is above 8.0
    but integrated) and ``"pre-ampere"`` below compute capability 8.0.
    """
    if is_integrated(gpu):
        return "integrated"
    if parse_version(gpu.compute_capability) < AMPERE:
        return "pre-ampere"
    return None


def _cuda_version_str(v: int) -> str:
    """CUDA's integer versions (12060) -> ``"12.6"``."""
    return f"{v // 1000}.{(v % 1000) // 10}" if v else "none"


cuda_version_str = _cuda_version_str


def extra_for_driver(driver_cuda: int) -> str | None:
    """The corese-edge extra whose cuda-python runs on a driver of CUDA version ``driver_cuda``
    (``cudaDriverGetVersion``'s integer, e.g. 12020): ``trt-cu12`` for the CUDA 12 line (drivers
    < 580, JetPack 6.x), ``trt-cu13`` for CUDA 13 and newer (580+, JetPack 7); None below 12 or 0."""
    major = int(driver_cuda) // 1000
    if major >= 13:
        return "trt-cu13"
    if major == 12:
        return "trt-cu12"
    return None


def driver_fix(driver_cuda: int) -> str:
    """What to install for a driver of CUDA version ``driver_cuda`` (one clause, for messages)."""
    extra = extra_for_driver(driver_cuda)
    if extra == "trt-cu12":
        return ("pip install 'corese-edge[trt-cu12]' (cuda-python 12.x: drivers older than "
                f"{CUDA13_MIN_DRIVER_BRANCH}, JetPack 6.x)")
    if extra == "trt-cu13":
        return (f"pip install 'corese-edge[trt-cu13]' (cuda-python 13.x: drivers {CUDA13_MIN_DRIVER_BRANCH} "
                "or newer, JetPack 7)")
    return ("update the NVIDIA driver (or JetPack): corese-edge's TensorRT runner needs a CUDA 12 "
            "or newer driver")


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

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Make the device chosen by ``set_device`` current on the calling thread for the block."""
        yield

    def release(self) -> None:
        """Give back what ``set_device`` took (pycuda: the primary-context reference)."""


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
            "cuda-python is not installed (TensorRT buffers and streams): pip install 'corese-edge[trt-cu12]' "
            "(drivers older than 580, JetPack 6.x) or 'corese-edge[trt-cu13]' (580 or newer, JetPack 7)"
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
        self._device: int | None = None

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
        """The installed cuda-bindings (what is imported; cuda-python >= 12.6 is a metapackage over
        it), else cuda-python."""
        try:
            import importlib.metadata as md

            for dist in ("cuda-bindings", "cuda-python"):
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
        return _cuda_version_str(self.driver_cuda())

    def driver_cuda(self) -> int:
        """``cudaDriverGetVersion``: the newest CUDA the driver supports (12020 = 12.2), 0 without a
        driver.  Needs no device context, so it works when the driver is too old for cuda-python."""
        return int(self.check(self.rt.cudaDriverGetVersion(), "cudaDriverGetVersion"))

    def runtime_cuda(self) -> int:
        """``cudaRuntimeGetVersion``: the CUDA version cuda-python was built for (13050 = 13.5)."""
        return int(self.check(self.rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))

    def driver_too_old_message(self, driver_cuda: int) -> str:
        runtime = self.runtime_cuda()
        return (
            f"the NVIDIA driver supports CUDA {_cuda_version_str(driver_cuda)}, older than the CUDA "
            f"{_cuda_version_str(runtime)} that cuda-python {self.version()} is built for "
            f"(cudaErrorInsufficientDriver, {CUDA_ERROR_INSUFFICIENT_DRIVER}): {driver_fix(driver_cuda)}, "
            "or install pycuda and use --cuda-backend pycuda"
        )

    def device_count(self) -> int:
        """The number of CUDA devices; 0 (reason in :attr:`no_device_reason`) without a GPU or driver.

        Raises :class:`DriverTooOld` when a driver is present but too old for this cuda-python.
        """
        err, *rest = self.rt.cudaGetDeviceCount()
        if err != self._success:
            text = self.error_text(err)
            if int(err) == CUDA_ERROR_INSUFFICIENT_DRIVER:
                driver = self.driver_cuda()
                if driver > 0:
                    raise DriverTooOld(self.driver_too_old_message(driver))
                text += "; no NVIDIA driver is loaded (cudaDriverGetVersion reports 0)"
            self.no_device_reason = text
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
            integrated=bool(getattr(prop, "integrated", 0)),
        )

    def set_device(self, index: int) -> None:
        self.check(self.rt.cudaSetDevice(index), "cudaSetDevice")
        self._device = int(index)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        # cudaSetDevice is per host thread (CUDA Runtime API, "Device Management"): a runner
        # activated on one thread and called from another must select its device again there.
        if self._device is not None:
            self.check(self.rt.cudaSetDevice(self._device), "cudaSetDevice")
        yield

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

    # CUDA graphs, as trtexec handles them (TensorRT samples/common/sampleDevice.h, TrtCudaGraph)
    def begin_capture(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self.check(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def end_capture(self, stream: Any, enqueue_ok: bool = True) -> "CudaGraph":
        """End the capture begun on ``stream`` and instantiate it.

        ``enqueue_ok`` is what the captured enqueue returned.  When the capture was invalidated
        (``cudaStreamEndCapture`` returns ``cudaErrorStreamCaptureInvalidated`` and a NULL graph),
        the enqueue failed, or ``cudaGraphInstantiate`` fails, every graph made is destroyed, the
        runtime's last error is cleared, and :class:`GraphCaptureError` is raised: the stream is no
        longer capturing and nothing leaks (trtexec's ``endCaptureOnError``).
        """
        err, graph = self.rt.cudaStreamEndCapture(stream)
        if err != self._success:
            text = self.error_text(err)
            self._clear_last_error()
            if int(err) == CUDA_ERROR_STREAM_CAPTURE_INVALIDATED:
                # the documented NULL graph: nothing to destroy
                raise GraphCaptureError(f"the stream capture was invalidated ({text})")
            raise GraphCaptureError(f"cudaStreamEndCapture failed: {text}")
        if not enqueue_ok:
            self._destroy_graph(graph)
            self._clear_last_error()
            raise GraphCaptureError("TensorRT's enqueue failed while capturing (the engine has work CUDA graphs cannot hold)")
        try:
            result = self.rt.cudaGraphInstantiate(graph, 0)
        except TypeError:  # cuda-python 11.x: (graph, logBuffer, bufferSize); use the flags variant
            result = self.rt.cudaGraphInstantiateWithFlags(graph, 0)
        err, exec_ = result[0], result[1]
        if err != self._success:
            text = self.error_text(err)
            self._destroy_graph(graph)
            self._clear_last_error()
            raise GraphCaptureError(f"cudaGraphInstantiate failed: {text}")
        # the executable graph does not need its template (trtexec destroys it right after
        # cudaGraphInstantiate), so only the executable is kept
        self._destroy_graph(graph)
        return CudaGraph(self, None, exec_)

    def _destroy_graph(self, graph: Any) -> None:
        self.check(self.rt.cudaGraphDestroy(graph), "cudaGraphDestroy")

    def _clear_last_error(self) -> None:
        # a failed capture leaves a (non-sticky) error behind; trtexec clears it with cudaGetLastError
        self.rt.cudaGetLastError()

    def launch_graph(self, graph: "CudaGraph", stream: Any) -> None:
        self.check(self.rt.cudaGraphLaunch(graph.exec_, stream), "cudaGraphLaunch")

    def _free_graph(self, graph: "CudaGraph") -> None:
        self.check(self.rt.cudaGraphExecDestroy(graph.exec_), "cudaGraphExecDestroy")
        if graph.graph is not None:
            self._destroy_graph(graph.graph)


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

    pycuda needs a current context on the calling thread.  :meth:`set_device` retains the device's
    primary context (the one the CUDA runtime, and so TensorRT, uses; pycuda's
    ``Device.retain_primary_context`` does not make it current).  :meth:`scope` pushes it on entry
    and pops it on exit, on the same thread: pycuda's context stack is per thread, and popping on
    another thread fails ("cannot pop non-current context", pycuda ``src/cpp/cuda.hpp``).
    :meth:`release` detaches (``Context.detach``: cuDevicePrimaryCtxRelease for a primary
    context); pycuda only detaches from the thread that retained the context, so close a runner
    on the thread that activated it.
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

    def driver_cuda(self) -> int:
        return int(self._call("cuDriverGetVersion", self.drv.get_driver_version))

    def driver_version(self) -> str:
        return _cuda_version_str(self.driver_cuda())

    def device_info(self, index: int = 0) -> GpuInfo:
        dev = self._call("cuDeviceGet", self.drv.Device, index)
        major, minor = self._call("cuDeviceComputeCapability", dev.compute_capability)
        integrated = self._call("cuDeviceGetAttribute", dev.get_attribute, self.drv.device_attribute.INTEGRATED)
        return GpuInfo(
            index=index,
            name=str(self._call("cuDeviceGetName", dev.name)).strip(),
            compute_capability=f"{major}.{minor}",
            total_memory_mb=int(self._call("cuDeviceTotalMem", dev.total_memory)) // (1 << 20),
            driver_version=self.driver_version(),
            integrated=bool(integrated),
        )

    def set_device(self, index: int) -> None:
        self._call("cuInit", self.drv.init)
        dev = self._call("cuDeviceGet", self.drv.Device, index)
        if self._ctx is None:
            self._ctx = self._call("cuDevicePrimaryCtxRetain", dev.retain_primary_context)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        if self._ctx is None:
            raise CudaError("pycuda: no context: call set_device() first")
        self._call("cuCtxPushCurrent", self._ctx.push)
        try:
            yield
        finally:
            self._call("cuCtxPopCurrent", self.drv.Context.pop)

    def release(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            self._call("cuDevicePrimaryCtxRelease", ctx.detach)

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

    def end_capture(self, stream: Any, enqueue_ok: bool = True) -> CudaGraph:  # pragma: no cover - begin_capture refuses first
        raise UserError("CUDA graphs need cuda-python")


def cuda_api(backend: str = "auto") -> CudaApi:
    """The CUDA layer: ``auto`` tries cuda-python, then pycuda; a missing one is :class:`MissingExtra`.

    ``auto`` also falls back to pycuda when cuda-python is installed but the driver is too old
    for it (:class:`DriverTooOld`); without pycuda that error is raised, never "no GPU".
    """
    if backend not in CUDA_BACKENDS:
        raise UserError(f"--cuda-backend must be one of {', '.join(CUDA_BACKENDS)}, got {backend!r}")
    if backend == "cuda-python":
        return CudaPythonApi()
    if backend == "pycuda":
        return PyCudaApi()
    too_old: DriverTooOld | None = None
    try:
        api = CudaPythonApi()
        api.device_count()  # a too-old driver shows here, before anything is allocated
        return api
    except MissingExtra:
        pass
    except DriverTooOld as exc:
        too_old = exc
    try:
        fallback = PyCudaApi()
    except MissingExtra:
        if too_old is not None:
            raise too_old from None
        raise MissingExtra(
            "neither cuda-python nor pycuda is installed (TensorRT buffers and streams): "
            "pip install 'corese-edge[trt-cu12]' (drivers older than 580, JetPack 6.x) or "
            "'corese-edge[trt-cu13]' (580 or newer, JetPack 7); corese-edge env shows which fits"
        ) from None
    if too_old is not None:
        log.warning("%s; using pycuda instead", too_old)
    return fallback


@dataclass(frozen=True)
class GpuProbe:
    """What :func:`probe_gpu` found.  ``status``: ``ok`` (``gpu`` set), ``no-gpu`` (no device or
    no driver), ``driver-too-old`` (a driver older than cuda-python's CUDA major: not "no GPU"),
    ``no-cuda-layer`` (neither cuda-python nor pycuda), or ``error`` (another CUDA failure)."""

    status: str
    gpu: GpuInfo | None
    reason: str
    driver_cuda: int | None  # cudaDriverGetVersion's integer; None when it could not be read
    cuda_layer: str | None

    @property
    def driver_cuda_version(self) -> str | None:
        return _cuda_version_str(self.driver_cuda) if self.driver_cuda else None

    @property
    def suggested_extra(self) -> str | None:
        return extra_for_driver(self.driver_cuda) if self.driver_cuda else None


def probe_gpu(backend: str = "auto", index: int = 0) -> GpuProbe:
    """Look for GPU ``index`` without raising: distinguishes a missing GPU from a driver too old
    for the installed cuda-python (for ``corese-edge env`` and the engine builder)."""
    driver = driver_cuda_version()
    try:
        api = cuda_api(backend)
        count = api.device_count()
    except DriverTooOld as exc:
        return GpuProbe("driver-too-old", None, str(exc), driver, "cuda-python")
    except MissingExtra as exc:
        return GpuProbe("no-cuda-layer", None, str(exc), driver, None)
    except UserError as exc:
        return GpuProbe("error", None, str(exc), driver, None)
    if count <= index:
        reason = api.no_device_reason or f"only {count} CUDA device(s)"
        return GpuProbe("no-gpu", None, reason, driver, api.name)
    try:
        gpu = api.device_info(index)
    except UserError as exc:
        return GpuProbe("error", None, str(exc), driver, api.name)
    return GpuProbe("ok", gpu, "", driver, api.name)


def driver_cuda_version() -> int | None:
    """The driver's CUDA version as ``cudaDriverGetVersion`` reports it (12020 = 12.2; 0 when no
    driver is installed), read without a device context; None when neither cuda-python nor pycuda
    is importable or the call fails."""
    try:
        return CudaPythonApi().driver_cuda()
    except Exception:  # a missing or broken cuda-python: try pycuda
        pass
    try:
        return PyCudaApi().driver_cuda()
    except Exception:
        return None
