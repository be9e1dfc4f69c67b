"""Fakes for the parts that cannot exist here: a CUDA device and the TensorRT runtime.

Each fake follows NVIDIA's documented behaviour, failures included, with the source cited where the
behaviour is encoded:

``FakeCudart``
    stands for cuda-python's ``cuda.bindings.runtime``.  Its functions carry the real names; when
    cuda-bindings is installed every call is bound against the real function's signature and the
    real ``cudaError_t`` / ``cudaMemcpyKind`` / ``cudaStreamCaptureMode`` enums are used.  It is
    *asynchronous*: copies, kernels and event records queue on their stream and happen only at
    ``cudaStreamSynchronize``, so a result read before synchronising is stale.  Device time is a
    virtual clock (:data:`KERNEL_MS` per enqueue, :data:`COPY_MS_PER_MB` per copied megabyte), so
    event timings are exact.
``FakeCuda``
    the real :class:`~corese_edge.runtime.cuda.CudaPythonApi` running on a ``FakeCudart``: the
    code under test is the product's own CUDA layer.
``FakeTrt`` / ``FakeEngine`` / ``FakeContext`` / ``FakeRuntime``
    the TensorRT runtime API of one version line (``11`` = 10.1 and later, ``10.0``, ``8.6``),
    recording every attribute and call so the contract tests can check them against the real
    ``tensorrt_lean_bindings``.  The fake engine computes ``logits = mean over H, W of the input @
    WEIGHTS`` so results are checkable.
"""
from __future__ import annotations

import ctypes
import enum
import hashlib
import inspect
import json
import threading
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from corese_edge.runtime.cuda import CudaPythonApi

try:  # the real bindings give the real enums and signatures (installed with the dev extra's torch)
    from cuda.bindings import runtime as _real_cudart
except ImportError:  # pragma: no cover - exercised only without cuda-bindings
    _real_cudart = None

CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
WEIGHTS = np.random.default_rng(7).normal(size=(3, len(CLASSES))).astype(np.float32)
PLAN_MAGIC = b"FAKEPLAN"

#: virtual device time of one TensorRT enqueue and of copying one megabyte
KERNEL_MS = 1.0
COPY_MS_PER_MB = 0.25

USED: dict[str, set[str]] = defaultdict(set)  # real TensorRT class name -> attributes used
CALLS: list[tuple[str, str, tuple, dict]] = []  # (class, method, args, kwargs) of every TensorRT call


def expected_logits(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(2, 3)) @ WEIGHTS


class FakeContractViolation(AssertionError):
    """The code under test did something NVIDIA documents as wrong (never a user error)."""


# ------------------------------------------------------------------------------------------------
# TensorRT enums: the member names and values of tensorrt_lean_bindings 11.4.0.106
# (tests/runtime/test_trt_bindings_contract.py compares them with the real module)
# ------------------------------------------------------------------------------------------------
class FakeDataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    BF16 = 7
    INT8 = 2
    INT32 = 3
    INT64 = 8
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    INT4 = 9
    FP4 = 10
    E8M0 = 11


class FakeTensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class FakeExecutionContextAllocationStrategy(enum.IntEnum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class FakeSeverity(enum.IntEnum):  # ILogger.Severity
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


FakeMode = FakeTensorIOMode  # the old name


def fake_nptype(trt_type: Any) -> type:
    """tensorrt's ``nptype``: BF16, FP8, INT4, FP4 and E8M0 have no numpy type and raise TypeError
    (``tensorrt/__init__.py``, as shipped in tensorrt_lean_bindings 11.4)."""
    mapping = {
        FakeDataType.FLOAT: np.float32, FakeDataType.HALF: np.float16, FakeDataType.INT8: np.int8,
        FakeDataType.INT32: np.int32, FakeDataType.INT64: np.int64, FakeDataType.BOOL: np.bool_,
        FakeDataType.UINT8: np.uint8,
    }
    if trt_type in mapping:
        return mapping[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


# ------------------------------------------------------------------------------------------------
# cuda-python runtime
# ------------------------------------------------------------------------------------------------
if _real_cudart is not None:
    _Err = _real_cudart.cudaError_t
    _MemcpyKind = _real_cudart.cudaMemcpyKind
    _CaptureMode = _real_cudart.cudaStreamCaptureMode
else:  # pragma: no cover - the documented values (CUDA Runtime API, "Data types")
    class _Err(enum.IntEnum):
        cudaSuccess = 0
        cudaErrorInvalidValue = 1
        cudaErrorInsufficientDriver = 35
        cudaErrorNoDevice = 100
        cudaErrorIllegalState = 401
        cudaErrorNotReady = 600
        cudaErrorStreamCaptureUnsupported = 900
        cudaErrorStreamCaptureInvalidated = 901

    class _MemcpyKind(enum.IntEnum):
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class _CaptureMode(enum.IntEnum):
        cudaStreamCaptureModeGlobal = 0
        cudaStreamCaptureModeThreadLocal = 1
        cudaStreamCaptureModeRelaxed = 2


class _FakeStream:
    def __init__(self, handle: int, device: int) -> None:
        self.handle, self.device = handle, device
        self.queue: list[tuple[Any, float]] = []  # (operation, device milliseconds)
        self.capture: list[tuple[Any, float]] | None = None
        self.invalidated = False


class _FakeEvent:
    def __init__(self) -> None:
        self.time_ms: float | None = None  # None until a recorded event has completed


class _FakeGraph:
    def __init__(self, ops: list) -> None:
        self.ops = ops


class FakeCudart:
    """cuda-python's runtime module over host memory (see the module doc).

    ``driver``/``runtime``: what ``cudaDriverGetVersion`` / ``cudaRuntimeGetVersion`` return
    (0 = no driver).  ``fail_instantiate``: ``cudaGraphInstantiate`` fails.
    """

    cudaError_t = _Err
    cudaMemcpyKind = _MemcpyKind
    cudaStreamCaptureMode = _CaptureMode
    current: "FakeCudart"

    def __init__(self, count: int = 1, gpu_name: str = "NVIDIA Orin", cc: str = "8.7", driver: int = 13000,
                 runtime: int = 13050, integrated: bool = False, fail_instantiate: bool = False) -> None:
        self.count, self.gpu_name, self.cc = count, gpu_name, cc
        self.driver, self.runtime, self.integrated = driver, runtime, integrated
        self.fail_instantiate = fail_instantiate
        self.clock_ms = 0.0
        self.streams: dict[int, _FakeStream] = {}
        self.device_mem: dict[int, tuple[np.ndarray, int]] = {}  # ptr -> (memory, device)
        self.host_mem: dict[int, np.ndarray] = {}
        self.graphs: set[int] = set()  # live cudaGraph_t
        self.graph_execs: set[int] = set()  # live cudaGraphExec_t
        self._objects: dict[int, Any] = {}
        self.graph_launches = 0
        self.streams_destroyed = 0
        self.last_error = _Err.cudaSuccess
        self.calls: list[tuple[str, int, int]] = []  # (function, thread id, that thread's device)
        self._thread = threading.local()
        FakeCudart.current = self

    # every cudaX call is recorded and, with cuda-bindings installed, bound to the real signature
    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if not name.startswith("cuda") or not callable(value) or isinstance(value, type):
            return value
        real = getattr(_real_cudart, name, None) if _real_cudart is not None else None
        if _real_cudart is not None and real is None:
            raise FakeContractViolation(f"cuda.bindings.runtime has no {name}")

        def call(*args: Any, **kwargs: Any) -> Any:
            if real is not None:
                try:
                    inspect.signature(real).bind(*args, **kwargs)
                except TypeError as exc:
                    raise FakeContractViolation(f"{name}{args}: {exc} (real signature {inspect.signature(real)})")
            self.calls.append((name, threading.get_ident(), self.thread_device()))
            return value(*args, **kwargs)

        return call

    def thread_device(self) -> int:
        return getattr(self._thread, "device", 0)  # the runtime's default device is 0 on every thread

    def _stream(self, stream: Any) -> _FakeStream:
        try:
            return self.streams[int(stream)]
        except (KeyError, TypeError, ValueError):
            raise FakeContractViolation(f"unknown stream {stream!r}") from None

    def enqueue(self, handle: int, op: Any, cost_ms: float) -> bool:
        """Put work on a stream (TensorRT's kernels come through here); False when a capture is
        running and was already invalidated."""
        s = self._stream(handle)
        if s.capture is not None:
            s.capture.append((op, cost_ms))
            return not s.invalidated
        s.queue.append((op, cost_ms))
        return True

    def invalidate_capture(self, handle: int) -> None:
        self._stream(handle).invalidated = True

    def capturing(self, handle: int) -> bool:
        return self._stream(handle).capture is not None

    def _new_id(self, obj: Any) -> int:
        key = id(obj)
        self._objects[key] = obj
        return key

    # device management ---------------------------------------------------------------------------
    def cudaGetDeviceCount(self):
        # cudaErrorInsufficientDriver: "the installed NVIDIA CUDA driver is older than the CUDA
        # runtime library" (CUDA Runtime API, cudaError).  cuda-bindings 13.5 on a machine without
        # any NVIDIA driver returns the same 35, with cudaDriverGetVersion reporting 0.
        if self.driver == 0 or self.driver // 1000 < self.runtime // 1000:
            return (_Err.cudaErrorInsufficientDriver, None)
        if self.count == 0:
            return (_Err.cudaErrorNoDevice, None)
        return (_Err.cudaSuccess, self.count)

    def cudaDriverGetVersion(self):
        # "If no driver is installed, then 0 is returned as the driver version" (its docstring)
        return (_Err.cudaSuccess, self.driver)

    def cudaRuntimeGetVersion(self):
        return (_Err.cudaSuccess, self.runtime)

    def cudaGetErrorName(self, error):
        return (_Err.cudaSuccess, _Err(int(error)).name.encode())

    def cudaGetErrorString(self, error):
        return (_Err.cudaSuccess, f"fake {_Err(int(error)).name}".encode())

    def cudaGetLastError(self):
        err, self.last_error = self.last_error, _Err.cudaSuccess
        return (err,)

    def cudaGetDeviceProperties(self, device):
        if self.cudaGetDeviceCount()[0] != _Err.cudaSuccess or not 0 <= int(device) < self.count:
            return (_Err.cudaErrorInvalidValue, None)
        major, minor = (int(p) for p in self.cc.split("."))
        prop = SimpleNamespace(name=self.gpu_name.encode() + b"\0" * 8, major=major, minor=minor,
                               totalGlobalMem=8 << 30, integrated=int(self.integrated))
        return (_Err.cudaSuccess, prop)

    def cudaSetDevice(self, device):
        if not 0 <= int(device) < self.count:
            return (_Err.cudaErrorInvalidValue,)  # cudaErrorInvalidDevice in newer headers
        self._thread.device = int(device)
        return (_Err.cudaSuccess,)

    # memory -------------------------------------------------------------------------------------
    def cudaMalloc(self, size):
        if self.cudaGetDeviceCount()[0] != _Err.cudaSuccess:
            return (_Err.cudaErrorInsufficientDriver, None)
        mem = np.zeros(max(int(size), 1), dtype=np.uint8)
        self.device_mem[mem.ctypes.data] = (mem, self.thread_device())
        return (_Err.cudaSuccess, mem.ctypes.data)

    def cudaFree(self, devPtr):
        if self.device_mem.pop(int(devPtr), None) is None:
            return (_Err.cudaErrorInvalidValue,)
        return (_Err.cudaSuccess,)

    def cudaMallocHost(self, size):
        mem = np.zeros(max(int(size), 1), dtype=np.uint8)
        self.host_mem[mem.ctypes.data] = mem
        return (_Err.cudaSuccess, mem.ctypes.data)

    def cudaFreeHost(self, ptr):
        if self.host_mem.pop(int(ptr), None) is None:
            return (_Err.cudaErrorInvalidValue,)
        return (_Err.cudaSuccess,)

    def _region(self, table: dict, ptr: int, count: int) -> bool:
        for base, entry in table.items():
            mem = entry[0] if isinstance(entry, tuple) else entry
            if base <= ptr and ptr + count <= base + mem.nbytes:
                return True
        return False

    def cudaMemcpyAsync(self, dst, src, count, kind, stream):
        dst, src, count = int(dst), int(src), int(count)
        if kind == _MemcpyKind.cudaMemcpyHostToDevice:
            ok = self._region(self.device_mem, dst, count) and self._region(self.host_mem, src, count)
        elif kind == _MemcpyKind.cudaMemcpyDeviceToHost:
            ok = self._region(self.host_mem, dst, count) and self._region(self.device_mem, src, count)
        else:
            ok = False
        if not ok:
            return (_Err.cudaErrorInvalidValue,)
        # asynchronous: the bytes move when the stream reaches the copy, not now ("this function
        # exhibits asynchronous behavior for most use cases", CUDA Runtime API, cudaMemcpyAsync;
        # "output tensors require stream synchronization", execute_async_v3's docstring)
        self.enqueue(int(stream), lambda: ctypes.memmove(dst, src, count), count / 1e6 * COPY_MS_PER_MB)
        return (_Err.cudaSuccess,)

    # streams and events ---------------------------------------------------------------------------
    def cudaStreamCreate(self):
        handle = 0x1000 + len(self.streams)
        self.streams[handle] = _FakeStream(handle, self.thread_device())
        return (_Err.cudaSuccess, handle)

    def cudaStreamDestroy(self, stream):
        s = self.streams.pop(int(stream), None)
        if s is None:
            return (_Err.cudaErrorInvalidValue,)
        self.streams_destroyed += 1
        return (_Err.cudaSuccess,)

    def cudaStreamSynchronize(self, stream):
        s = self._stream(stream)
        if s.capture is not None:
            # synchronising a capturing stream is not permitted and invalidates the capture
            # (CUDA programming guide, "Stream Capture": cudaErrorStreamCaptureUnsupported)
            s.invalidated = True
            return (_Err.cudaErrorStreamCaptureUnsupported,)
        while s.queue:
            op, cost = s.queue.pop(0)
            self.clock_ms += cost
            op()
        return (_Err.cudaSuccess,)

    def cudaEventCreate(self):
        return (_Err.cudaSuccess, self._new_id(_FakeEvent()))

    def cudaEventDestroy(self, event):
        self._objects.pop(int(event), None)
        return (_Err.cudaSuccess,)

    def cudaEventRecord(self, event, stream):
        ev = self._objects[int(event)]
        ev.time_ms = None

        def stamp() -> None:
            ev.time_ms = self.clock_ms

        self.enqueue(int(stream), stamp, 0.0)
        return (_Err.cudaSuccess,)

    def cudaEventElapsedTime(self, start, end):
        a, b = self._objects[int(start)], self._objects[int(end)]
        if a.time_ms is None or b.time_ms is None:
            return (_Err.cudaErrorNotReady, None)  # "either event has not been completed yet"
        return (_Err.cudaSuccess, float(b.time_ms - a.time_ms))

    # CUDA graphs -----------------------------------------------------------------------------------
    def cudaStreamBeginCapture(self, stream, mode):
        s = self._stream(stream)
        if s.capture is not None:
            return (_Err.cudaErrorIllegalState,)
        s.capture, s.invalidated = [], False
        return (_Err.cudaSuccess,)

    def cudaStreamEndCapture(self, stream):
        s = self._stream(stream)
        if s.capture is None:
            return (_Err.cudaErrorIllegalState, None)
        ops, invalidated = s.capture, s.invalidated
        s.capture, s.invalidated = None, False
        if invalidated:
            # "If capture was invalidated, due to a violation of the rules of stream capture, then
            # a NULL graph will be returned" (cudaStreamEndCapture's docstring)
            self.last_error = _Err.cudaErrorStreamCaptureInvalidated
            return (_Err.cudaErrorStreamCaptureInvalidated, None)
        graph = _FakeGraph(ops)
        key = self._new_id(graph)
        self.graphs.add(key)
        return (_Err.cudaSuccess, key)

    def cudaGraphInstantiate(self, graph, flags):
        if int(graph) not in self.graphs:
            return (_Err.cudaErrorInvalidValue, None)
        if self.fail_instantiate:
            # cudaGraphInstantiate "validates the graph for any structural constraints" and can fail
            self.last_error = _Err.cudaErrorInvalidValue
            return (_Err.cudaErrorInvalidValue, None)
        exec_ = _FakeGraph(list(self._objects[int(graph)].ops))
        key = self._new_id(exec_)
        self.graph_execs.add(key)
        return (_Err.cudaSuccess, key)

    def cudaGraphLaunch(self, graphExec, stream):
        if int(graphExec) not in self.graph_execs:
            return (_Err.cudaErrorInvalidValue,)
        self.graph_launches += 1
        for op, cost in self._objects[int(graphExec)].ops:
            check = getattr(op, "check_replay", None)
            if check is not None:
                check()
            self.enqueue(int(stream), op, cost)
        return (_Err.cudaSuccess,)

    def cudaGraphDestroy(self, graph):
        if int(graph) not in self.graphs:
            return (_Err.cudaErrorInvalidValue,)
        self.graphs.discard(int(graph))
        return (_Err.cudaSuccess,)

    def cudaGraphExecDestroy(self, graphExec):
        if int(graphExec) not in self.graph_execs:
            return (_Err.cudaErrorInvalidValue,)
        self.graph_execs.discard(int(graphExec))
        return (_Err.cudaSuccess,)


class FakeCuda(CudaPythonApi):
    """The product's cuda-python layer on a :class:`FakeCudart` (arguments as for it)."""

    name = "fake-cuda"
    instance: "FakeCuda"

    def __init__(self, count: int = 1, gpu_name: str = "NVIDIA Orin", cc: str = "8.7", driver: int = 13000,
                 runtime: int = 13050, integrated: bool | None = None, fail_instantiate: bool = False) -> None:
        if integrated is None:
            integrated = "orin" in gpu_name.lower() or "thor" in gpu_name.lower()
        self.cudart = FakeCudart(count, gpu_name, cc, driver, runtime, integrated, fail_instantiate)
        super().__init__(self.cudart)
        FakeCuda.instance = self

    def version(self) -> str:
        return "13.5.0-fake"

    @property
    def live(self) -> dict[int, Any]:
        """Every allocation not yet freed (device and pinned host)."""
        return {**{k: v[0] for k, v in self.cudart.device_mem.items()}, **self.cudart.host_mem}

    @property
    def graph_launches(self) -> int:
        return self.cudart.graph_launches

    @property
    def streams_destroyed(self) -> int:
        return self.cudart.streams_destroyed


# ------------------------------------------------------------------------------------------------
# TensorRT runtime
# ------------------------------------------------------------------------------------------------
class _Recorded:
    _kind = "?"

    def __getattribute__(self, name: str) -> Any:
        value = object.__getattribute__(self, name)
        if name.startswith("_"):
            return value
        kind = object.__getattribute__(self, "_kind")
        USED[kind].add(name)
        if callable(value) and not isinstance(value, type):
            def call(*args: Any, **kwargs: Any) -> Any:
                CALLS.append((kind, name, args, kwargs))
                return value(*args, **kwargs)

            return call
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            USED[object.__getattribute__(self, "_kind")].add(name)
        object.__setattr__(self, name, value)


class FakeLogger(_Recorded):
    _kind = "Logger"
    WARNING = FakeSeverity.WARNING
    Severity = FakeSeverity

    def __init__(self, min_severity: FakeSeverity = FakeSeverity.WARNING) -> None:
        CALLS.append(("Logger", "__init__", (min_severity,), {}))
        self._severity = min_severity


class _TrtOp:
    """One enqueue of a context, as TensorRT puts its kernels on the stream."""

    def __init__(self, ctx: "FakeContext", captured: bool) -> None:
        self.ctx, self.shape, self.addr = ctx, tuple(ctx._shape), dict(ctx._addr)
        self.generation, self.captured = ctx._generation, captured

    def check_replay(self) -> None:
        # A captured graph is tied to the execution context's state at capture: replaying it after
        # set_input_shape changed that context is refused here (trtexec captures one graph per
        # context and never changes its shapes: samples/common/sampleInference.cpp).
        if self.ctx._generation != self.generation:
            raise FakeContractViolation(
                f"CUDA graph captured at shape {self.shape} replayed after set_input_shape changed its "
                f"execution context since the capture (now {self.ctx._shape}): one context per captured graph"
            )

    def __call__(self) -> None:
        self.ctx._compute(self.shape, self.addr)


class FakeContext(_Recorded):
    _kind = "IExecutionContext"

    def __init__(self, engine: "FakeEngine", user_managed: bool) -> None:
        self._engine = engine
        self._shape: tuple[int, ...] | None = None
        self._addr: dict[str, int] = {}
        self._user_managed = user_managed
        self._memory: int | None = None
        self._generation = 0  # bumped by every shape change
        self._warm_generation = -1  # the generation of the last plain (uncaptured) enqueue
        self._enqueues = 0

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        e = self._engine
        shape = tuple(shape)
        if name != "input" or not e._min <= shape[0] <= e._max or shape[1:] != (3, e._size, e._size):
            return False  # outside the optimization profile
        if shape != self._shape:
            self._shape = shape
            self._generation += 1
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        n = self._shape[0] if self._shape else -1
        return (n, 3, self._engine._size, self._engine._size) if name == "input" else (n, self._engine._classes)

    def set_tensor_address(self, name: str, memory: int) -> bool:
        self._addr[name] = int(memory)
        return True

    def _set_memory(self, memory: int, size: int | None) -> None:
        if not self._user_managed:
            raise FakeContractViolation("device memory given to a context TensorRT allocated itself")
        if size is not None and size < self._engine.device_memory_size_v2:
            raise FakeContractViolation(f"set_device_memory with {size} bytes < device_memory_size_v2")
        self._memory = int(memory)

    def execute_async_v3(self, stream_handle: int) -> bool:
        if not isinstance(stream_handle, int):
            raise FakeContractViolation(f"execute_async_v3 takes the stream handle as an int, got {stream_handle!r}")
        if self._shape is None or set(self._addr) != {"input", "logits"}:
            return False  # every input shape and every tensor address must be set before enqueue
        if self._user_managed and self._memory is None:
            return False  # a USER_MANAGED context has no memory until the application gives it
        cudart = FakeCudart.current
        if cudart.capturing(stream_handle):
            if self._engine._capture_breaks or self._warm_generation != self._generation:
                # TensorRT's first enqueue at a new shape does setup work that stream capture does
                # not permit; trtexec therefore enqueues once before capturing ("Avoid capturing
                # initialization calls...", sampleInference.cpp).  Such work invalidates the
                # capture and the enqueue returns false ("the enqueue call may return false if the
                # current CUDA graph capture fails", same file).
                cudart.invalidate_capture(stream_handle)
                return False
            return cudart.enqueue(stream_handle, _TrtOp(self, captured=True), KERNEL_MS)
        self._warm_generation = self._generation
        self._enqueues += 1
        return cudart.enqueue(stream_handle, _TrtOp(self, captured=False), KERNEL_MS)

    def _compute(self, shape: tuple[int, ...], addr: dict[str, int]) -> None:
        n = shape[0]
        count = int(np.prod(shape))
        x = np.frombuffer((ctypes.c_float * count).from_address(addr["input"]), dtype=np.float32).reshape(shape)
        out = np.frombuffer((ctypes.c_float * (n * self._engine._classes)).from_address(addr["logits"]), dtype=np.float32)
        out[:] = expected_logits(x).reshape(-1)


class FakeContext11(FakeContext):
    """TensorRT 10.1+ (and 11.x): ``set_device_memory(memory, size)``."""

    def set_device_memory(self, memory: int, size: int) -> None:
        self._set_memory(memory, size)


class FakeContextLegacy(FakeContext):
    """TensorRT 8.6 / 10.0: a write-only ``device_memory`` property (pyCore.cpp v8.6.1, v10.0.0)."""

    def _set_device_memory(self, memory: int) -> None:
        self._set_memory(memory, None)

    device_memory = property(None, _set_device_memory)


class FakeEngine(_Recorded):
    _kind = "ICudaEngine"
    _context_class: type = FakeContext11

    def __init__(self, size: int, max_batch: int, classes: int, min_batch: int = 1, capture_breaks: bool = False) -> None:
        self._size, self._max, self._classes, self._min = size, max_batch, classes, min_batch
        self._capture_breaks = capture_breaks
        self._contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self) -> int:
        return 2

    @property
    def device_memory_size_v2(self) -> int:
        return 4096

    def get_tensor_name(self, index: int) -> str:
        return ["input", "logits"][index]

    def get_tensor_mode(self, name: str) -> FakeTensorIOMode:
        return FakeTensorIOMode.INPUT if name == "input" else FakeTensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> FakeDataType:
        return FakeDataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 3, self._size, self._size) if name == "input" else (-1, self._classes)

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        if name != "input" or profile_index != 0:
            raise FakeContractViolation(f"get_tensor_profile_shape({name!r}, {profile_index!r})")
        s = self._size
        return [(self._min, 3, s, s), (max(self._min, self._max // 2), 3, s, s), (self._max, 3, s, s)]

    def create_execution_context(self, strategy: FakeExecutionContextAllocationStrategy = FakeExecutionContextAllocationStrategy.STATIC) -> FakeContext:
        ctx = self._context_class(self, user_managed=strategy == FakeExecutionContextAllocationStrategy.USER_MANAGED)
        self._contexts.append(ctx)
        return ctx


class FakeEngine100(FakeEngine):
    """TensorRT 10.0: the strategy argument exists, ``device_memory_size_v2`` and
    ``set_device_memory`` do not yet (pyCore.cpp, v10.0.0)."""

    _context_class = FakeContextLegacy
    device_memory_size_v2 = property(lambda self: (_ for _ in ()).throw(AttributeError("device_memory_size_v2")))

    @property
    def device_memory_size(self) -> int:
        return 4096


class FakeEngine86(FakeEngine100):
    """TensorRT 8.6: no allocation strategy; ``create_execution_context_without_device_memory``
    (pyCore.cpp and pyCoreDoc.h, v8.6.1)."""

    def create_execution_context(self) -> FakeContext:  # type: ignore[override]
        ctx = self._context_class(self, user_managed=False)
        self._contexts.append(ctx)
        return ctx

    def create_execution_context_without_device_memory(self) -> FakeContext:
        ctx = self._context_class(self, user_managed=True)
        self._contexts.append(ctx)
        return ctx


class FakeRuntime(_Recorded):
    _kind = "Runtime"

    def __init__(self, logger: FakeLogger) -> None:
        CALLS.append(("Runtime", "__init__", (logger,), {}))
        self._logger = logger
        object.__setattr__(self, "engine_host_code_allowed", False)  # a default, not a use
        FakeTrt.last_runtime = self

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> FakeEngine | None:
        data = bytes(serialized_engine)
        if not data.startswith(PLAN_MAGIC):
            return None  # "None if it could not be deserialized" (its docstring)
        cfg = json.loads(data[len(PLAN_MAGIC):].decode())
        engine_class = FakeTrt.engine_classes[FakeTrt.last_api]
        engine = engine_class(cfg["size"], cfg["max_batch"], cfg["classes"], cfg.get("min_batch", 1),
                              capture_breaks=FakeTrt.capture_breaks)
        FakeTrt.last_engine = engine
        return engine


class FakeTrt:
    """Stands for the ``tensorrt`` / ``tensorrt_lean`` module (module-level names are recorded).

    ``api``: the runtime API line, from the version unless given: ``11`` (10.1 and later), ``10.0``
    or ``8.6``.  ``capture_breaks``: the engine holds work that stream capture does not permit, so
    every captured enqueue invalidates the capture (``sampleInference.cpp``: "The built TRT engine
    may contain operations that are not permitted under CUDA graph capture mode").
    """

    last_runtime: FakeRuntime | None = None
    last_engine: FakeEngine | None = None
    last_api = "11"
    capture_breaks = False
    engine_classes = {"11": FakeEngine, "10.0": FakeEngine100, "8.6": FakeEngine86}

    def __init__(self, name: str = "tensorrt_lean", version: str = "11.4.0.106", api: str | None = None,
                 capture_breaks: bool = False) -> None:
        self.__name__ = name
        self.__version__ = version
        if api is None:
            api = "8.6" if version.startswith("8.") else "10.0" if version.startswith("10.0.") else "11"
        self._api = api
        FakeTrt.last_api, FakeTrt.capture_breaks = api, capture_breaks

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            USED["module"].add(name)
        if name == "ExecutionContextAllocationStrategy" and object.__getattribute__(self, "_api") == "8.6":
            raise AttributeError(name)  # arrived in 10.0
        return object.__getattribute__(self, name)

    Logger = FakeLogger
    Runtime = FakeRuntime
    TensorIOMode = FakeTensorIOMode
    DataType = FakeDataType
    ExecutionContextAllocationStrategy = FakeExecutionContextAllocationStrategy

    @staticmethod
    def nptype(trt_type: Any) -> type:
        CALLS.append(("module", "nptype", (trt_type,), {}))
        return fake_nptype(trt_type)


def write_plan(
    folder: Path,
    name: str = "model.fp16.plan",
    size: int = 16,
    max_batch: int = 8,
    gpu_name: str = "NVIDIA Orin",
    cc: str = "8.7",
    trt_version: str = "11.4.0.106",
    version_compatible: bool = True,
    record_integrity: bool = True,
    min_batch: int = 1,
    **extra: Any,
) -> Path:
    """A fake plan and the sidecar build-engine would write for it."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / name
    data = PLAN_MAGIC + json.dumps({"size": size, "max_batch": max_batch, "min_batch": min_batch,
                                    "classes": len(CLASSES)}).encode()
    plan.write_bytes(data)
    sidecar = {
        "schema": "corese-edge/plan/1",
        "trt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": cc,
        "precision": "fp16",
        "profile": {"input": {"min": [min_batch, 3, size, size], "opt": [max(min_batch, max_batch // 2), 3, size, size],
                              "max": [max_batch, 3, size, size]}},
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 3, size, size]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, len(CLASSES)]}],
        "class_names": CLASSES,
        "preprocessing": {"size": size, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "linear", "channel_order": "rgb"},
        "onnx_sha256": "0" * 64,
        "version_compatible": version_compatible,
        "model": "coresse-lite",
    }
    if record_integrity:
        sidecar["plan_size"] = len(data)
        sidecar["plan_sha256"] = hashlib.sha256(data).hexdigest()
    sidecar.update(extra)
    (folder / (name + ".json")).write_text(json.dumps(sidecar))
    return plan
