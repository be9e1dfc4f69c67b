"""ONNX Runtime runner (CPU, or CUDA / TensorRT execution providers with ``onnxruntime-gpu``)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from corese_edge.errors import UserError, require
from corese_edge.metadata import ArtifactMetadata
from corese_edge.runtime.base import Runner, TensorSpec

log = logging.getLogger(__name__)

#: ``OrtRunner.path`` of a model given as bytes or a ModelProto
IN_MEMORY = "<in-memory model>"

#: Short names accepted for ``providers`` (full ONNX Runtime names are accepted too).
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def precision_from_name(path: str | Path) -> str:
    """``model.int8.onnx`` -> ``int8``; ``model.fp16.plan`` -> ``fp16``; anything else ``fp32``."""
    parts = Path(path).name.lower().split(".")
    for p in ("int8", "fp16", "bf16", "fp8"):
        if p in parts[1:]:
            return p
    return "fp32"


def resolve_providers(providers: Sequence[str] | str | None, available: Sequence[str]) -> list[str]:
    """Map user names to ONNX Runtime providers.

    ``None`` / ``"auto"``: CUDA when ``onnxruntime-gpu`` offers it, then CPU (the TensorRT EP is
    only used when asked for, because it builds an engine on first use).  A provider that this
    onnxruntime build lacks is a :class:`UserError` listing the available ones.
    """
    if providers is None or providers == "auto" or list(providers) == ["auto"]:
        chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
        return chosen + ["CPUExecutionProvider"]
    if isinstance(providers, str):
        providers = [p.strip() for p in providers.split(",") if p.strip()]
    out = []
    for name in providers:
        full = PROVIDER_ALIASES.get(name.lower(), name)
        if full not in available:
            hint = " (install onnxruntime-gpu)" if full in ("CUDAExecutionProvider", "TensorrtExecutionProvider") else ""
            raise UserError(
                f"ONNX Runtime provider {name!r} is not available{hint}; available: {', '.join(available)}"
            )
        out.append(full)
    if "CPUExecutionProvider" not in out:
        out.append("CPUExecutionProvider")  # fallback for nodes the GPU providers don't take
    return out


class OrtRunner(Runner):
    """Runs an ONNX file with ONNX Runtime.

    ``providers``: ``None``/``"auto"``, or names such as ``["cuda", "cpu"]``.  ``threads``: intra-op
    threads (``None`` = ONNX Runtime's default, one per physical core).  ``optimization``:
    ``"all"`` (default) or ``"disabled"``; the latter gives the reference Q/DQ arithmetic used to
    measure a TensorRT-flavour INT8 graph's drift on CPUs whose fused S8S8 kernels saturate.
    ``spinning``: let the intra-op pool's threads busy-wait for work between parallel sections
    (ONNX Runtime's default).  Off by default here: a spinning thread holds a core the moment the
    work is serial (a DequantizeLinear, a small op) and, on a CPU shared with the rest of an app
    (video decode, face detection) or other processes, takes that core from the thread that has
    work.  On the shared 2-core Xeon of issue 9 (load average about 13), spinning off made the full
    ``coresse`` at 2 threads 1.4x faster in FP32 and 1.7x in INT8 (``benchmarks/ort_int8_amx.py``
    measures it).  Turn it on for a dedicated machine that runs nothing else, where it saves the
    wake-up latency.

    ``model`` is a path, the serialized ``bytes`` or an ``onnx.ModelProto`` (the export's trial
    graphs never touch the disk).  ``reference_arithmetic``: the arithmetic a TensorRT-flavour
    graph is judged by (docs/ARCHITECTURE.md, "Two INT8 flavours"): graph optimizations disabled,
    so Q/DQ pairs run unfused, and a graph with FP16 tensors rewritten by
    :func:`corese_edge.runtime.reference.fp16_reference_graph` (needs onnx, imported only then).

    An ``InferenceSession`` may be shared between threads (``run`` is thread-safe).
    """

    backend = "ort"
    #: ONNX Runtime's session log level (None: its default, warnings); 3 keeps a caller's output to errors
    log_severity_level: int | None = None

    def __init__(
        self,
        model: str | os.PathLike | bytes | Any,
        providers: Sequence[str] | str | None = None,
        threads: int | None = None,
        optimization: str = "all",
        spinning: bool = False,
        reference_arithmetic: bool = False,
    ) -> None:
        in_memory = isinstance(model, bytes) or hasattr(model, "SerializeToString")
        super().__init__(IN_MEMORY if in_memory else os.fspath(model))
        self.model = model
        self.requested_providers = providers
        self.threads = threads
        if optimization not in ("all", "disabled", "basic", "extended"):
            raise UserError(f"optimization must be all, extended, basic or disabled; got {optimization!r}")
        self.reference_arithmetic = bool(reference_arithmetic)
        # Q/DQ pairs must stay unfused for the reference arithmetic to mean anything
        self.optimization = "disabled" if self.reference_arithmetic else optimization
        self.spinning = bool(spinning)
        self.precision = "fp32" if in_memory else precision_from_name(self.path)
        self.providers: list[str] = []
        self.session = None

    def _activate(self) -> None:
        ort = require("onnxruntime", "export", "to run .onnx models")
        source: Any = self.model
        if self.path != IN_MEMORY:
            p = Path(self.path)
            if not p.is_file():
                raise UserError(f"model not found: {p}")
            source = str(p)
        if self.reference_arithmetic:
            from corese_edge.runtime.reference import reference_model

            source = reference_model(source)
        if hasattr(source, "SerializeToString"):
            source = source.SerializeToString()
        elif isinstance(source, os.PathLike):
            source = os.fspath(source)
        opts = ort.SessionOptions()
        if self.log_severity_level is not None:
            opts.log_severity_level = int(self.log_severity_level)
        if self.threads is not None:
            if int(self.threads) < 1:
                raise UserError(f"threads must be >= 1, got {self.threads}")
            opts.intra_op_num_threads = int(self.threads)
        opts.inter_op_num_threads = 1
        spin = "1" if self.spinning else "0"
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
        level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[self.optimization]
        opts.graph_optimization_level = level
        self.providers = resolve_providers(self.requested_providers, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(source, sess_options=opts, providers=self.providers)
        except Exception as exc:  # InvalidProtobuf, Fail, NoSuchFile ... all derive from RuntimeError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"{self.path}: ONNX Runtime cannot load it ({first[:200]})") from None
        self.inputs = tuple(_spec(i) for i in self.session.get_inputs())
        self.outputs = tuple(_spec(o) for o in self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]
        props = self.session.get_modelmeta().custom_metadata_map
        try:
            self.metadata = ArtifactMetadata.from_props(props, source=self.path)
        except UserError as exc:
            self.metadata = None
            self.metadata_problem = str(exc)
        self.max_batch = None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._output_names, dict(feed))
        return dict(zip(self._output_names, values))

    def _close(self) -> None:
        self.session = None

    def execution_facts(self, batch: int | None = None) -> dict[str, dict[str, object]]:
        """The providers the session runs on (per result) and the ``threads`` asked for."""
        facts: dict[str, dict[str, object]] = {"settings": {"threads": self.threads}}
        if self.providers:
            facts["result"] = {"providers": list(self.providers)}
        return facts


def _spec(node) -> TensorSpec:
    dtype = _ORT_DTYPES.get(node.type)
    if dtype is None:
        raise UserError(f"unsupported tensor type {node.type} for {node.name!r}")
    shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in node.shape)
    return TensorSpec(node.name, np.dtype(dtype), shape)
