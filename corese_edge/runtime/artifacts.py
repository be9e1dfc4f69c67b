"""One table of artifact formats: which runner opens which file (Ultralytics-style).

``open_runner(path, ...)`` picks the runner from the suffix and passes on only the options that
runner takes; the CLI's ``predict`` and ``bench`` and :class:`ExpressionClassifier` all use it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corese_edge.errors import UserError
from corese_edge.runtime.base import Runner


@dataclass(frozen=True)
class ArtifactFormat:
    name: str
    suffixes: tuple[str, ...]
    backend: str
    devices: str  # "cpu, gpu"
    options: tuple[str, ...]  # keyword arguments of the runner


FORMATS = (
    ArtifactFormat("tensorrt", (".plan", ".engine"), "trt", "gpu", ("cuda_backend", "cuda_graph", "device", "trt_module")),
    ArtifactFormat("onnx", (".onnx",), "ort", "cpu, gpu", ("providers", "threads", "optimization")),
    ArtifactFormat("pytorch", (".pt", ".pth"), "torch", "cpu, gpu", ("device", "half", "threads")),
    ArtifactFormat("openvino", (".xml",), "openvino", "cpu, gpu, npu", ("device", "threads", "streams", "hint", "inference_precision")),
)


def format_of(path: str | os.PathLike) -> ArtifactFormat:
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS:
        if suffix in fmt.suffixes:
            return fmt
    known = ", ".join(s for f in FORMATS for s in f.suffixes)
    raise UserError(f"{path}: unknown model format {suffix or '(no suffix)'!r}; expected one of {known}")


def open_runner(path: str | os.PathLike, **options: Any) -> Runner:
    """An inactive runner for ``path``.  Options another format would take, or ``None``, are dropped
    (``device`` means a GPU index for TensorRT, a torch device string for PyTorch and an OpenVINO
    device name, ``CPU``/``GPU``/``GPU.1``/``NPU``/``AUTO``, for an OpenVINO IR)."""
    fmt = format_of(path)
    kwargs = {k: v for k, v in options.items() if k in fmt.options and v is not None}
    if fmt.backend == "trt":
        from corese_edge.runtime.trt import TrtRunner

        if isinstance(kwargs.get("device"), str):
            dev = kwargs.pop("device").strip().lower()
            index = dev.split(":", 1)[1] if ":" in dev else ("0" if dev in ("cuda", "gpu") else dev)
            if not index.isdigit():
                raise UserError(f"a TensorRT engine runs on a GPU: --device takes a GPU index (0, 1, cuda:1), got {dev!r}")
            kwargs["device"] = int(index)
        return TrtRunner(path, **kwargs)
    if fmt.backend == "ort":
        from corese_edge.runtime.ort import OrtRunner

        return OrtRunner(path, **kwargs)
    if fmt.backend == "openvino":
        from corese_edge.runtime.openvino import OpenVinoRunner

        device = kwargs.get("device")
        if device is not None and (not isinstance(device, str) or device.strip().isdigit()):
            # a GPU index means something to TensorRT and torch, nothing to OpenVINO: refuse, don't guess
            raise UserError(f"an OpenVINO model takes --device CPU, GPU, GPU.1, NPU or AUTO, not a GPU index ({device!r})")
        return OpenVinoRunner(path, **kwargs)
    from corese_edge.runtime.torch_runner import TorchRunner

    if "device" in kwargs:
        dev = str(kwargs["device"]).strip().lower()
        kwargs["device"] = f"cuda:{dev}" if dev.isdigit() else dev
    return TorchRunner(path, **kwargs)
