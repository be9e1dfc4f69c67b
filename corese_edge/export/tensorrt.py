"""Stage 5: ONNX -> TensorRT plan + sidecar ``<plan>.json``, built on the device that runs it.

Precision lives in the ONNX graph (DESIGN decision 1), so one builder serves three TensorRT lines;
only how the network is created and which flags are set differ:

=====  ===============================  ==========================================
line   network creation                 precision
=====  ===============================  ==========================================
8.6    ``1 << EXPLICIT_BATCH``          ``BuilderFlag.FP16`` / ``INT8`` for FP16 / Q/DQ graphs
10.x   ``1 << STRONGLY_TYPED``          from the graph; no precision flags
11.x   ``0`` (always strongly typed)    from the graph; the precision flags no longer exist
=====  ===============================  ==========================================

TensorRT below 8.6 (JetPack 5) is refused with a clear message.  The plan stays a plain TensorRT
plan that ``trtexec`` loads; everything else (class names, preprocessing, precision, TensorRT
version, GPU, profile shapes, I/O, the ONNX sha256) goes into the sidecar JSON.

``tensorrt`` is imported lazily; a missing one breaks only this stage.  The builder is written
against NVIDIA's documented Python API (cited at each version branch) and checked by contract tests
over fake modules (``tests/export/test_tensorrt_contract.py``), because TensorRT cannot run where
corese-edge is developed.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from corese_edge.atomic import atomic_path, write_bytes, write_json
from corese_edge.errors import UserError

log = logging.getLogger(__name__)

PLAN_SCHEMA = "corese-edge/plan/1"
MIN_VERSION = (8, 6)


class EngineUnavailable(UserError):
    """No engine can be built here: TensorRT or a GPU is missing (or TensorRT is too old)."""


class EngineBuildError(UserError):
    """TensorRT could not parse the ONNX or build the plan."""


# --------------------------------------------------------------------------- version lines


@dataclass(frozen=True)
class TensorRTLine:
    """How one TensorRT version line builds a network from a precision-carrying ONNX."""

    name: str  # "8.6" | "10.x" | "11.x"
    version: str
    network_flag: str | None  # NetworkDefinitionCreationFlag member set at create_network, if any
    precision_flags: bool  # set BuilderFlag.FP16 / INT8 to match the graph (weakly typed 8.6 only)

    @property
    def strongly_typed(self) -> bool:
        return self.name != "8.6"


def parse_version(version: str) -> tuple[int, int]:
    m = re.match(r"^\s*(\d+)\.(\d+)", str(version))
    if not m:
        raise EngineUnavailable(f"cannot read the TensorRT version {version!r}")
    return int(m.group(1)), int(m.group(2))


def tensorrt_line(version: str) -> TensorRTLine:
    """The build recipe for a TensorRT version; older than 8.6 (or the 9.x previews) is refused."""
    major, minor = parse_version(version)
    if (major, minor) < MIN_VERSION:
        raise EngineUnavailable(
            f"TensorRT {version} is too old: corese-edge builds on TensorRT 8.6 (JetPack 6.0), 10.x "
            "(JetPack 6.1/6.2, JetPack 7) and 11.x; JetPack 5 (TensorRT 8.5, Python 3.8) is not supported. "
            "Upgrade JetPack / TensorRT, or run the ONNX with ONNX Runtime"
        )
    if major == 8:
        # TensorRT 8.6 Python API: networks need NetworkDefinitionCreationFlag.EXPLICIT_BATCH, and
        # Q/DQ or FP16 graphs build with BuilderFlag.INT8 / BuilderFlag.FP16 (weak typing); there
        # is no STRONGLY_TYPED flag yet (it arrived in 9.1).
        # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-861/api/python_api/infer/Core/Builder.html
        # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-861/api/python_api/infer/Core/BuilderConfig.html
        return TensorRTLine("8.6", version, "EXPLICIT_BATCH", precision_flags=True)
    if major == 9:
        raise EngineUnavailable(
            f"TensorRT {version} is a 9.x preview line that corese-edge does not support; use 8.6, 10.x or 11.x"
        )
    if major == 10:
        # TensorRT 10.x: EXPLICIT_BATCH is deprecated and ignored ("networks are always explicit
        # batch in TensorRT 10.0"); STRONGLY_TYPED takes each tensor's type from the graph, and
        # precision builder flags are not used with it (weak typing deprecated in 10.12).
        # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1030/api/python_api/infer/Core/Builder.html
        return TensorRTLine("10.x", version, "STRONGLY_TYPED", precision_flags=False)
    # TensorRT 11.x: strong typing is always on, STRONGLY_TYPED is deprecated and ignored,
    # EXPLICIT_BATCH is gone, and BuilderFlag.FP16/INT8, IBuilderConfig.int8_calibrator and
    # Builder.platform_has_fast_fp16/int8 were removed.
    # https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html
    # https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
    return TensorRTLine("11.x", version, None, precision_flags=False)


# --------------------------------------------------------------------------- environment


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "8.7"


def _cudart() -> ModuleType | None:
    # cuda-python moved its runtime module in 12.x/13.x (cuda.bindings.runtime); NVIDIA's samples
    # from 8.6 to 10.13.0 used the old ``from cuda import cudart`` spelling.
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            import importlib

            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def gpu_info() -> GpuInfo | None:
    """The first CUDA GPU, via cuda-python (or torch when cuda-python is missing); None without one.

    Checked before anything deserializes a plan: the lean runtime segfaults without a GPU.
    """
    cudart = _cudart()
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0 or not count:
            return None
        err, prop = cudart.cudaGetDeviceProperties(0)
        if int(err) != 0:
            return None
        name = prop.name.split(b"\0", 1)[0].decode() if isinstance(prop.name, bytes) else str(prop.name)
        return GpuInfo(name, f"{prop.major}.{prop.minor}")
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    major, minor = torch.cuda.get_device_capability(0)
    return GpuInfo(torch.cuda.get_device_name(0), f"{major}.{minor}")


def import_tensorrt() -> ModuleType:
    """``import tensorrt`` or :class:`EngineUnavailable` saying where it comes from."""
    try:
        import tensorrt  # type: ignore[import-not-found]
    except ImportError:
        raise EngineUnavailable(
            "TensorRT is not installed (JetPack's python3-libnvinfer on a Jetson, NVIDIA's tensorrt wheel on a desktop)"
        ) from None
    if not hasattr(tensorrt, "Builder") or not hasattr(tensorrt, "OnnxParser"):
        raise EngineUnavailable(
            f"the installed tensorrt {getattr(tensorrt, '__version__', '?')} has no Builder/OnnxParser "
            "(a lean or dispatch runtime); install the full TensorRT to build engines"
        )
    return tensorrt


def engine_environment() -> tuple[ModuleType, GpuInfo]:
    """TensorRT and the GPU to build on, or :class:`EngineUnavailable` naming what is missing."""
    trt = import_tensorrt()
    tensorrt_line(trt.__version__)
    gpu = gpu_info()
    if gpu is None:
        raise EngineUnavailable("no CUDA GPU is visible (a TensorRT engine must be built on the GPU that runs it)")
    return trt, gpu


def build_engine_command(onnx_path: str | os.PathLike, plan_path: str | os.PathLike,
                         min_batch: int, opt_batch: int, max_batch: int) -> str:
    """The exact ``corese-edge build-engine`` command to run on the target device."""
    return " ".join([
        "corese-edge", "build-engine", shlex.quote(os.fspath(onnx_path)),
        "--out", shlex.quote(os.fspath(plan_path)),
        "--min-batch", str(min_batch), "--opt-batch", str(opt_batch), "--max-batch", str(max_batch),
    ])


# --------------------------------------------------------------------------- ONNX facts


def onnx_precision(model) -> str:
    """``int8`` for a Q/DQ graph, ``fp16`` when weights are float16, else ``fp32``."""
    import onnx

    if not hasattr(model, "graph"):
        model = onnx.load(os.fspath(model))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        return "fp16"
    return "fp32"


def default_plan_path(onnx_path: str | os.PathLike, precision: str) -> Path:
    """``model.int8.onnx`` -> ``model.int8.plan``; ``model.onnx`` -> ``model.fp32.plan``."""
    p = Path(onnx_path)
    stem = p.name[: -len(".onnx")] if p.name.endswith(".onnx") else p.stem
    if not stem.endswith(f".{precision}"):
        stem = f"{stem}.{precision}"
    return p.with_name(f"{stem}.plan")


# --------------------------------------------------------------------------- the builder


@dataclass
class EngineBuild:
    plan: Path
    sidecar: Path
    info: dict[str, Any] = field(default_factory=dict)


def _dims(shape) -> list[int]:
    return [int(d) for d in shape]


def build_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_gb: float = 4.0,
    timing_cache: str | os.PathLike | None = None,
    hardware_compat: str = "none",
    version_compatible: bool = False,
    *,
    trt: ModuleType | None = None,
    gpu: GpuInfo | None = None,
) -> EngineBuild:
    """Build a TensorRT plan from a corese-edge ONNX, with one optimization profile over the batch.

    ``out`` defaults to ``model.<precision>.plan`` beside the ONNX.  ``timing_cache`` is read when
    it exists and rewritten after the build.  ``hardware_compat`` ``"ampere+"`` makes the plan
    portable across Ampere-and-newer GPUs (not on JetPack); ``version_compatible`` embeds the lean
    runtime (8.6+).  ``trt`` and ``gpu`` default to the real ``tensorrt`` module and GPU (tests
    pass fakes).  Writes the plan and ``<plan>.json`` atomically.
    """
    import onnx

    from corese_edge import __version__
    from corese_edge.export.onnx_fp32 import read_metadata
    from corese_edge.model.checkpoint import file_sha256

    if not (1 <= min_batch <= opt_batch <= max_batch):
        raise UserError(f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")
    if hardware_compat not in ("none", "ampere+"):
        raise UserError(f"--hardware-compat must be none or ampere+, got {hardware_compat!r}")
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"ONNX model not found: {onnx_path}")
    meta = read_metadata(onnx_path)
    proto = onnx.load(os.fspath(onnx_path))
    precision = onnx_precision(proto)
    plan_path = Path(out) if out else default_plan_path(onnx_path, precision)
    if trt is None:
        trt, gpu = engine_environment()
    elif gpu is None:
        gpu = gpu_info()
    line = tensorrt_line(trt.__version__)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flags = 0
    if line.network_flag is not None:
        network_flags = 1 << int(getattr(trt.NetworkDefinitionCreationFlag, line.network_flag))
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT {line.version} could not parse {onnx_path}: {'; '.join(errors) or 'unknown error'}")

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    if len(inputs) != 1:
        raise EngineBuildError(f"{onnx_path}: expected one input, found {len(inputs)}")
    inp = inputs[0]
    item_shape = _dims(inp.shape)[1:]
    if any(d < 0 for d in item_shape):
        raise EngineBuildError(f"{onnx_path}: only the batch dimension may be dynamic, input shape is {_dims(inp.shape)}")
    shapes = {k: [b] + item_shape for k, b in (("min", min_batch), ("opt", opt_batch), ("max", max_batch))}

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    builder_flags: list[str] = []
    if line.precision_flags:
        # 8.6 only (weak typing): the graph's precision must be enabled explicitly.
        if precision == "fp16":
            builder_flags.append("FP16")
        elif precision == "int8":
            builder_flags.append("INT8")
    if version_compatible:
        builder_flags.append("VERSION_COMPATIBLE")
    for flag in builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if hardware_compat == "ampere+":
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    cache_path = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building %s engine with TensorRT %s (%s) on %s", precision, line.version,
             "strongly typed" if line.strongly_typed else "weakly typed + flags", gpu.name if gpu else "?")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineBuildError(f"TensorRT {line.version} failed to build {onnx_path} (see the TensorRT log above)")
    with atomic_path(plan_path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(memoryview(plan))
    if cache_path is not None:
        write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))

    def io(t, mode: str) -> dict[str, Any]:
        import numpy as np

        return {"name": t.name, "mode": mode, "dtype": np.dtype(trt.nptype(t.dtype)).name, "shape": _dims(t.shape)}

    info = {
        "schema": PLAN_SCHEMA,
        "plan": plan_path.name,
        "plan_size": plan_path.stat().st_size,
        "plan_sha256": file_sha256(plan_path),
        "precision": precision,
        "trt_version": line.version,
        "tensorrt_line": line.name,
        "strongly_typed": line.strongly_typed,
        "gpu_name": gpu.name if gpu else None,
        "compute_capability": gpu.compute_capability if gpu else None,
        "profile": {inp.name: shapes},
        "inputs": [io(t, "input") for t in inputs],
        "outputs": [io(t, "output") for t in outputs],
        "class_names": list(meta.class_names),
        "preprocessing": meta.preprocessing.to_dict(),
        "model": meta.model,
        "checkpoint_sha256": meta.checkpoint_sha256,
        "onnx": onnx_path.name,
        "onnx_sha256": file_sha256(onnx_path),
        "version_compatible": version_compatible,
        "hardware_compat": hardware_compat,
        "build": {
            "network_flags": [line.network_flag] if line.network_flag else [],
            "builder_flags": builder_flags,
            "workspace_gb": workspace_gb,
            "timing_cache": os.fspath(cache_path) if cache_path else None,
        },
        "corese_edge_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    sidecar = sidecar_path(plan_path)
    write_json(sidecar, info)
    return EngineBuild(plan_path, sidecar, info)


def sidecar_path(plan_path: str | os.PathLike) -> Path:
    """``model.int8.plan`` -> ``model.int8.plan.json``."""
    p = Path(plan_path)
    return p.with_name(p.name + ".json")


@dataclass(frozen=True)
class EngineConfig:
    """Everything ``corese-edge build-engine`` takes (field names mirror its options)."""

    onnx: str
    out: str | None = None
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_gb: float = 4.0
    timing_cache: str | None = None
    hardware_compat: str = "none"
    version_compatible: bool = False


def run_build_engine(cfg: EngineConfig) -> EngineBuild:
    """:func:`build_engine` for a resolved :class:`EngineConfig` (what the CLI calls)."""
    return build_engine(cfg.onnx, cfg.out, cfg.min_batch, cfg.opt_batch, cfg.max_batch, cfg.workspace_gb,
                        cfg.timing_cache, cfg.hardware_compat, cfg.version_compatible)
