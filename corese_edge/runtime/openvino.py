"""OpenVINO runner: an IR (``model.xml`` + ``model.bin``) on an Intel CPU, iGPU or NPU.

::

    with OpenVinoRunner("model.int8.xml") as runner:            # CPU, latency hint
        logits = runner.infer({"input": batch})["logits"]
        runner.precision        # "int8", "bf16" or "fp32": what really executes
        runner.execution        # device, precision hint, streams, threads, hint (compiled model's)

Defaults are for one query at a time (an app classifying a camera feed): the ``LATENCY``
performance hint, under which OpenVINO's CPU plugin runs one stream over the physical cores of one
socket (hyper-threads left out); ``threads`` caps the cores (``INFERENCE_NUM_THREADS``), ``streams`` sets
``NUM_STREAMS`` and ``hint`` may be ``"throughput"`` or ``"cumulative_throughput"`` for servers
that run several requests in parallel (this runner issues one at a time, so they rarely help it).
``inference_precision=None`` keeps the device's default float precision: BF16 on CPUs with AMX or
AVX-512-BF16, FP32 on the others, FP16 on GPUs; ``"f32"``, ``"bf16"`` or ``"f16"`` force one
(``INFERENCE_PRECISION_HINT``).  An INT8 IR runs its quantized layers in INT8 whatever the hint.

``device``: ``"CPU"`` (default), ``"GPU"``, ``"GPU.1"``, ``"NPU"``, ``"AUTO"`` (also ``AUTO:``,
``HETERO:`` and ``MULTI:`` lists), passed to OpenVINO as given (upper-cased).  Only the CPU is
tested here: GPU and NPU are passed through untested.  ``threads`` applies to the CPU only.

The metadata (class names, preprocessing including the face template) is read from the IR's
rt_info (:func:`corese_edge.metadata.read_rt_info`).  ``path`` may also be an ``.onnx`` file, which
OpenVINO reads directly; its ONNX ``metadata_props`` arrive under rt_info ``framework`` then.

Thread safety: a runner owns one ``InferRequest``, which OpenVINO runs one inference at a time;
:meth:`infer` calls from several threads are serialized by a lock (safe, not parallel).  For
parallel queries use one runner per thread.  Torch-free; ``openvino`` is imported on activation.
"""
from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from corese_edge.errors import UserError, require
from corese_edge.metadata import ArtifactMetadata, read_rt_info
from corese_edge.runtime.base import Runner, TensorSpec

log = logging.getLogger(__name__)

_core_lock = threading.Lock()
_core: Any = None


def shared_core() -> Any:
    """The process's one ``openvino.Core``, made on first use and never freed.

    Every corese-edge component reads and compiles through it.  OpenVINO's CPU plugin swaps the
    thread's alternate signal stack when a core first uses the CPU and swaps it back when that core
    goes; cores freed out of order leave the stack pointing at freed memory, and the next Python
    signal handler (Ctrl-C, the SIGCHLD handler of torch's DataLoader) then kills the process with
    SIGSEGV (corese_edge/sigstack.py, docs/ARCHITECTURE.md).  One core that lives as long as the
    process cannot be freed out of order.  Thread-safe."""
    global _core
    with _core_lock:
        if _core is None:
            ov = require("openvino", "openvino", "to run OpenVINO models (.xml)")
            _core = ov.Core()  # plugins, and their signal stacks, come on first use of a device
        return _core

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT", "cumulative_throughput": "CUMULATIVE_THROUGHPUT"}
#: user spelling -> OpenVINO element type name of INFERENCE_PRECISION_HINT
INFERENCE_PRECISIONS = {"f32": "f32", "fp32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}
#: OpenVINO element type name -> the precision names corese-edge reports everywhere else
REPORTED_PRECISION = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}
#: virtual devices that name other devices; OpenVINO checks what follows their colon
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
#: integer element types of weight constants written by NNCF weight compression or kept from
#: a Q/DQ ONNX (OpenVINO's ONNX frontend turns QuantizeLinear/DequantizeLinear of activations into
#: FakeQuantize and keeps int8 weights as i8 Constant -> Convert -> Multiply)
_QUANTIZED_CONSTANTS = ("i8", "u8", "i4", "u4", "nf4")
#: execution-graph layer types that are bookkeeping, not compute (left out of runtime_precisions)
_NOT_COMPUTE = ("Const", "Input", "Output", "Parameter", "Result", "Reorder", "Reshape", "Convert")


def _first_line(exc: BaseException) -> str:
    """OpenVINO's exceptions start with "Exception from src/...cpp:N:" lines; keep the reason."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    useful = [l for l in lines if not l.startswith("Exception from ") and not l.startswith("Check ")]
    text = (useful or lines or [type(exc).__name__])[0]
    return text[:240]


def normalize_device(device: str) -> str:
    """``"cpu"`` -> ``"CPU"``; refuses what is not a device name (an int from a CLI, an empty string)."""
    if not isinstance(device, str) or not device.strip():
        raise UserError(f"an OpenVINO device is a name such as CPU, GPU, GPU.1, NPU or AUTO; got {device!r}")
    return device.strip().upper()


def check_device(device: str, available: list[str]) -> None:
    """One line listing ``available`` when ``device`` is not among them (``GPU`` matches ``GPU.0``)."""
    base = device.split(":", 1)[0]
    if base in VIRTUAL_DEVICES:
        return
    if device in available or any(a.split(".", 1)[0] == device for a in available):
        return
    raise UserError(
        f"OpenVINO device {device!r} is not available here; available: {', '.join(available) or 'none'} "
        "(GPU needs Intel's OpenCL driver, NPU the NPU driver)"
    )


class OpenVinoRunner(Runner):
    """Runs an OpenVINO IR (``.xml`` with its ``.bin``) or an ONNX file with OpenVINO.

    ``precision`` after activation is what executes: ``"int8"`` when the model holds quantization
    (FakeQuantize, or int8/uint8 weight constants), else the compiled model's
    ``INFERENCE_PRECISION_HINT`` (``"bf16"``, ``"fp32"`` or ``"fp16"``), never ``"fp32"`` for a
    BF16 run.  ``execution`` holds the compiled model's device, precision hint, streams, threads
    and hint, and ``runtime_precisions`` (layers of the execution graph per precision).
    ``build`` holds the IR's build facts (rt_info ``corese_edge/build``), ``{}`` when absent.
    ``max_batch`` is ``None``: the IR keeps ONNX's dynamic batch.  An IR saved with a static batch
    runs at exactly that batch (``max_batch`` is then that number and other batches are refused).
    """

    backend = "openvino"

    def __init__(
        self,
        path: str | Path,
        device: str = "CPU",
        threads: int | None = None,
        streams: int | str | None = None,
        hint: str = "latency",
        inference_precision: str | None = None,
    ) -> None:
        super().__init__(str(path))
        self.device = normalize_device(device)
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise UserError(f"threads must be an integer >= 1, got {threads!r}")
        if threads is not None and self.device != "CPU":
            raise UserError(f"threads applies to OpenVINO's CPU device only, not {self.device}")
        self.threads = threads
        if streams is not None and not (
            (isinstance(streams, int) and not isinstance(streams, bool) and streams >= 1)
            or (isinstance(streams, str) and streams.strip().lower() == "auto")
        ):
            raise UserError(f"streams must be an integer >= 1 or 'auto', got {streams!r}")
        self.streams = streams
        key = str(hint).strip().lower().replace("-", "_")
        if key not in HINTS:
            raise UserError(f"hint must be one of {', '.join(HINTS)}; got {hint!r}")
        self.hint = key
        if inference_precision is not None:
            p = str(inference_precision).strip().lower()
            if p not in INFERENCE_PRECISIONS:
                raise UserError(f"inference_precision must be f32, bf16 or f16 (or None for the device's default); got {inference_precision!r}")
            inference_precision = INFERENCE_PRECISIONS[p]
        self.inference_precision = inference_precision
        self.execution: dict[str, Any] = {}
        self.build: dict[str, str] = {}
        self.quantized = False
        self.core = self.model = self.compiled = self._request = None
        self._lock = threading.Lock()

    # -- configuration -----------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The properties given to ``compile_model``."""
        cfg: dict[str, Any] = {"PERFORMANCE_HINT": HINTS[self.hint]}
        if self.threads is not None:
            cfg["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.streams is not None:
            cfg["NUM_STREAMS"] = "AUTO" if isinstance(self.streams, str) else int(self.streams)
        if self.inference_precision is not None:
            cfg["INFERENCE_PRECISION_HINT"] = self.inference_precision
        return cfg

    def _activate(self) -> None:
        require("openvino", "openvino", "to run OpenVINO models (.xml)")
        p = Path(self.path)
        if not p.is_file():
            raise UserError(f"model not found: {p}")
        if p.suffix.lower() == ".xml" and not p.with_suffix(".bin").is_file():
            raise UserError(
                f"{p.with_suffix('.bin')}: weights file missing; an OpenVINO IR is the .xml and the .bin together, "
                "copy both (or re-export with 'corese-edge export --target openvino')"
            )
        core = shared_core()
        check_device(self.device, list(core.available_devices))
        try:
            model = core.read_model(str(p))
        except Exception as exc:  # RuntimeError for a malformed .xml, a truncated .bin, a foreign file
            raise UserError(f"{p}: OpenVINO cannot read it ({_first_line(exc)}); re-export it with 'corese-edge export --target openvino'") from None
        self.metadata, self.metadata_problem, self.build = _metadata(model, p)
        self.quantized = is_quantized(model)
        try:
            compiled = core.compile_model(model, self.device, self.config())
        except Exception as exc:  # an option the device refuses, a device that fails to load
            raise UserError(f"{p}: OpenVINO cannot compile it for {self.device} with {self.config()} ({_first_line(exc)})") from None
        self.inputs = tuple(_spec(port, f"input{i}") for i, port in enumerate(compiled.inputs))
        self.outputs = tuple(
            TensorSpec(s.name, np.dtype(np.float32) if np.issubdtype(s.dtype, np.floating) else s.dtype, s.shape)
            for s in (_spec(port, f"output{i}") for i, port in enumerate(compiled.outputs))
        )
        static = {s.shape[0] for s in self.inputs if s.shape and s.shape[0] is not None}
        self.max_batch = min(static) if static else None
        self.core, self.model, self.compiled = core, model, compiled
        self._request = compiled.create_infer_request()
        self.execution = execution_facts(compiled)
        if self.quantized:
            self.precision = "int8"
        else:
            hint = self.execution.get("inference_precision")
            self.precision = REPORTED_PRECISION.get(hint, hint or "fp32")

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:  # one InferRequest: one inference at a time
            # share_inputs: the request reads the caller's arrays (infer is synchronous);
            # share_outputs: views of the request's tensors, copied below before the next call.
            self._request.infer({i: feed[s.name] for i, s in enumerate(self.inputs)}, share_inputs=True, share_outputs=True)
            return {
                spec.name: np.array(self._request.get_output_tensor(i).data, dtype=spec.dtype, copy=True)
                for i, spec in enumerate(self.outputs)
            }

    def _close(self) -> None:
        self._request = self.compiled = self.model = self.core = None

    def execution_facts(self, batch: int | None = None) -> dict[str, dict[str, Any]]:
        """The compiled model's :attr:`execution` (device, precision hint, streams, threads as
        compiled) per result, and the ``threads`` asked for (``None``: OpenVINO's default)."""
        facts: dict[str, dict[str, Any]] = {"settings": {"threads": self.threads}}
        if self.execution:
            facts["result"] = {"execution": dict(self.execution)}
        return facts


def _metadata(model: Any, path: Path) -> tuple[ArtifactMetadata | None, str | None, dict[str, str]]:
    """(metadata, problem, build facts): corese-edge rt_info in an IR, ONNX metadata_props that
    OpenVINO's ONNX frontend put under rt_info ``framework`` when ``path`` is an ONNX file."""
    try:
        meta, build = read_rt_info(model, str(path))
        return meta, None, build
    except UserError as exc:
        problem = str(exc)
    if path.suffix.lower() == ".onnx":
        from corese_edge.metadata import ONNX_KEYS

        props = {k: model.get_rt_info(["framework", k]).astype(str) for k in ONNX_KEYS if model.has_rt_info(["framework", k])}
        try:
            return ArtifactMetadata.from_props(props, source=str(path)), None, {}
        except UserError as exc:
            problem = str(exc)
    return None, problem, {}


def is_quantized(model: Any) -> bool:
    """Whether an ``openvino.Model`` holds quantization: FakeQuantize ops (NNCF, or Q/DQ ONNX
    activations) or integer weight constants (NNCF weight compression, Q/DQ ONNX weights)."""
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "FakeQuantize":
            return True
        if kind == "Constant" and op.get_element_type().get_type_name() in _QUANTIZED_CONSTANTS:
            return True
    return False


def execution_facts(compiled: Any) -> dict[str, Any]:
    """What the compiled model reports: device(s), precision hint, streams, threads, hint, and the
    precision of each compute layer of its execution graph (counted per precision)."""
    def prop(name: str) -> Any:
        try:
            return compiled.get_property(name)
        except Exception:  # a property the device does not report (INFERENCE_NUM_THREADS on a GPU)
            return None

    precision = prop("INFERENCE_PRECISION_HINT")
    hint = prop("PERFORMANCE_HINT")
    devices = prop("EXECUTION_DEVICES")
    facts: dict[str, Any] = {
        "device": ",".join(devices) if isinstance(devices, (list, tuple)) else devices,
        "inference_precision": precision.get_type_name() if hasattr(precision, "get_type_name") else precision,
        "num_streams": _plain(prop("NUM_STREAMS")),
        "threads": _plain(prop("INFERENCE_NUM_THREADS")),
        "hint": getattr(hint, "name", None) or (str(hint) if hint is not None else None),
        "optimal_requests": _plain(prop("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
    }
    try:
        counts: collections.Counter[str] = collections.Counter()
        for op in compiled.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) not in _NOT_COMPUTE:
                counts[info["runtimePrecision"].astype(str).lower()] += 1
        facts["runtime_precisions"] = dict(sorted(counts.items()))
    except Exception:  # the execution graph is a CPU/GPU plugin feature; absent elsewhere
        facts["runtime_precisions"] = None
    return facts


def _plain(value: Any) -> Any:
    """An OpenVINO property value as JSON (ints stay ints, enums and streams become strings)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def _spec(port: Any, fallback: str) -> TensorSpec:
    try:
        name = port.get_any_name()
    except RuntimeError:  # a port without a tensor name (a hand-built model)
        name = fallback
    element = port.get_element_type()
    try:
        dtype = np.dtype(element.to_dtype())
    except Exception:
        raise UserError(f"unsupported OpenVINO element type {element.get_type_name()} for {name!r}") from None
    shape = port.get_partial_shape()
    if shape.rank.is_dynamic:
        raise UserError(f"{name!r} has a dynamic rank; corese-edge models take NCHW images")
    dims = tuple(int(d.get_length()) if d.is_static else None for d in shape)
    return TensorSpec(name, dtype, dims)
