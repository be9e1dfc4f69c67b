"""Fakes for the parts that cannot exist here: a CUDA device and the TensorRT runtime.

They follow NVIDIA's documented Python API (TensorRT "Running an engine", cuda-python runtime
calls) and record every attribute our code touches on each TensorRT class, so the contract tests can
check those names against the real ``tensorrt_lean_bindings`` classes.  Device memory is host memory
here; the fake engine computes ``logits = mean over H, W of the input @ WEIGHTS`` so results are
checkable.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from corese_edge.runtime.cuda import CudaApi, CudaGraph, DeviceBuffer, GpuInfo, HostBuffer

CLASSES = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"]
WEIGHTS = np.random.default_rng(7).normal(size=(3, len(CLASSES))).astype(np.float32)
PLAN_MAGIC = b"FAKEPLAN"

USED: dict[str, set[str]] = defaultdict(set)  # real TensorRT class name -> attributes used


def expected_logits(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=(2, 3)) @ WEIGHTS


class _Recorded:
    _kind = "?"

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            USED[object.__getattribute__(self, "_kind")].add(name)
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            USED[object.__getattribute__(self, "_kind")].add(name)
        object.__setattr__(self, name, value)


class FakeMode:
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


class FakeDataType:
    FLOAT = "FLOAT"


class FakeLogger(_Recorded):
    _kind = "Logger"
    WARNING = 2

    def __init__(self, severity: int = 2) -> None:
        self._severity = severity


class FakeEngine(_Recorded):
    _kind = "ICudaEngine"

    def __init__(self, size: int, max_batch: int, classes: int) -> None:
        self._size, self._max, self._classes = size, max_batch, classes

    @property
    def num_io_tensors(self) -> int:
        return 2

    def get_tensor_name(self, i: int) -> str:
        return ["input", "logits"][i]

    def get_tensor_mode(self, name: str) -> str:
        return FakeMode.INPUT if name == "input" else FakeMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> str:
        return FakeDataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 3, self._size, self._size) if name == "input" else (-1, self._classes)

    def get_tensor_profile_shape(self, name: str, profile: int) -> tuple[tuple[int, ...], ...]:
        assert name == "input" and profile == 0
        s = self._size
        return ((1, 3, s, s), (max(1, self._max // 2), 3, s, s), (self._max, 3, s, s))

    def create_execution_context(self) -> "FakeContext":
        return FakeContext(self)


class FakeContext(_Recorded):
    _kind = "IExecutionContext"

    def __init__(self, engine: FakeEngine) -> None:
        self._engine = engine
        self._shape: tuple[int, ...] | None = None
        self._addr: dict[str, int] = {}
        self._enqueues = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        e = self._engine
        if name != "input" or not 1 <= shape[0] <= e._max or tuple(shape[1:]) != (3, e._size, e._size):
            return False
        self._shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        n = self._shape[0] if self._shape else -1
        return (n, 3, self._engine._size, self._engine._size) if name == "input" else (n, self._engine._classes)

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self._addr[name] = int(ptr)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        assert isinstance(stream_handle, int)
        if self._shape is None or set(self._addr) != {"input", "logits"}:
            return False  # TensorRT requires every shape and address before enqueue
        cuda = FakeCuda.instance
        op = (self._run, tuple(self._shape), dict(self._addr))
        if cuda.capturing:
            cuda.captured.append(op)
        else:
            self._enqueues += 1
            op[0](op[1], op[2])
        return True

    def _run(self, shape: tuple[int, ...], addr: dict[str, int]) -> None:
        n = shape[0]
        count = int(np.prod(shape))
        x = np.frombuffer((ctypes.c_float * count).from_address(addr["input"]), dtype=np.float32).reshape(shape)
        out = np.frombuffer((ctypes.c_float * (n * self._engine._classes)).from_address(addr["logits"]), dtype=np.float32)
        out[:] = expected_logits(x).reshape(-1)


class FakeRuntime(_Recorded):
    _kind = "Runtime"

    def __init__(self, logger: FakeLogger) -> None:
        self._logger = logger
        object.__setattr__(self, "engine_host_code_allowed", False)  # a default, not a use
        FakeTrt.last_runtime = self

    def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
        if not data.startswith(PLAN_MAGIC):
            return None
        cfg = json.loads(data[len(PLAN_MAGIC):].decode())
        return FakeEngine(cfg["size"], cfg["max_batch"], cfg["classes"])


class FakeTrt:
    """Stands for the ``tensorrt`` / ``tensorrt_lean`` module (module-level names are recorded)."""

    last_runtime: FakeRuntime | None = None

    def __init__(self, name: str = "tensorrt_lean", version: str = "11.4.0.106") -> None:
        self.__name__ = name
        self.__version__ = version

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            USED["module"].add(name)
        return object.__getattribute__(self, name)

    Logger = FakeLogger
    Runtime = FakeRuntime
    TensorIOMode = FakeMode

    @staticmethod
    def nptype(dtype: str) -> type:
        return {"FLOAT": np.float32}[dtype]


class FakeCuda(CudaApi):
    """A 'GPU' whose memory is host memory; events are host timestamps; graphs replay recorded ops."""

    name = "fake-cuda"
    supports_graphs = True
    instance: "FakeCuda"

    def __init__(self, count: int = 1, gpu_name: str = "NVIDIA Orin", cc: str = "8.7") -> None:
        self.count, self.gpu_name, self.cc = count, gpu_name, cc
        self.no_device_reason = "" if count else "cudaErrorNoDevice (100): no CUDA-capable device is detected"
        self.capturing = False
        self.captured: list[Any] = []
        self.live: dict[int, np.ndarray] = {}
        self.graph_launches = 0
        self.streams_destroyed = 0
        FakeCuda.instance = self

    def device_count(self) -> int:
        return self.count

    def device_info(self, index: int = 0) -> GpuInfo:
        return GpuInfo(index, self.gpu_name, self.cc, 8192, "13.0")

    def set_device(self, index: int) -> None:
        pass

    def create_stream(self) -> int:
        return 7

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def synchronize(self, stream: Any) -> None:
        pass

    def destroy_stream(self, stream: Any) -> None:
        self.streams_destroyed += 1

    def create_event(self) -> list[float]:
        return [0.0]

    def record_event(self, event: list[float], stream: Any) -> None:
        event[0] = time.perf_counter()

    def elapsed_ms(self, start: list[float], end: list[float]) -> float:
        return (end[0] - start[0]) * 1e3

    def destroy_event(self, event: Any) -> None:
        pass

    def device_buffer(self, nbytes: int) -> DeviceBuffer:
        arr = np.zeros(max(nbytes, 1), dtype=np.uint8)
        self.live[arr.ctypes.data] = arr
        return DeviceBuffer(self, arr.ctypes.data, nbytes)

    def _free_device(self, buf: DeviceBuffer) -> None:
        del self.live[buf.ptr]

    def host_buffer(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer:
        arr = np.zeros(shape, dtype=dtype)
        self.live[arr.ctypes.data] = arr
        return HostBuffer(self, arr.ctypes.data, arr)

    def _free_host(self, buf: HostBuffer) -> None:
        del self.live[buf.ptr]

    def htod_async(self, dst: DeviceBuffer, src: HostBuffer, nbytes: int, stream: Any) -> None:
        assert nbytes <= dst.nbytes
        ctypes.memmove(dst.ptr, src.ptr, nbytes)

    def dtoh_async(self, dst: HostBuffer, src: DeviceBuffer, nbytes: int, stream: Any) -> None:
        assert nbytes <= dst.nbytes
        ctypes.memmove(dst.ptr, src.ptr, nbytes)

    def begin_capture(self, stream: Any) -> None:
        self.capturing, self.captured = True, []

    def end_capture(self, stream: Any) -> CudaGraph:
        self.capturing = False
        return CudaGraph(self, list(self.captured), None)

    def launch_graph(self, graph: CudaGraph, stream: Any) -> None:
        self.graph_launches += 1
        for fn, shape, addr in graph.graph:
            fn(shape, addr)

    def _free_graph(self, graph: CudaGraph) -> None:
        pass


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
    **extra: Any,
) -> Path:
    """A fake plan and the sidecar build-engine would write for it."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / name
    data = PLAN_MAGIC + json.dumps({"size": size, "max_batch": max_batch, "classes": len(CLASSES)}).encode()
    plan.write_bytes(data)
    sidecar = {
        "schema": "corese-edge/plan/1",
        "trt_version": trt_version,
        "gpu_name": gpu_name,
        "compute_capability": cc,
        "precision": "fp16",
        "profile": {"input": {"min": [1, 3, size, size], "opt": [max_batch // 2, 3, size, size], "max": [max_batch, 3, size, size]}},
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
