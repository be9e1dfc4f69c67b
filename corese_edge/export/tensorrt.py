"""Stage 5: ONNX -> TensorRT plan + sidecar ``<plan>.json``, built on the device that runs it.

Precision lives in the ONNX graph (docs/ARCHITECTURE.md, "Precision lives in the graph"), so one
builder serves three TensorRT lines; only how the network is created and which flags are set differ:

=====  ===============================  =================================================================
line   network creation                 precision
=====  ===============================  =================================================================
8.6    ``1 << EXPLICIT_BATCH``          ``BuilderFlag.FP16`` for FP16 graphs, ``INT8`` + ``FP16`` for Q/DQ
10.x   ``1 << STRONGLY_TYPED``          from the graph; no precision flags
11.x   ``0`` (always strongly typed)    from the graph; the precision flags no longer exist
=====  ===============================  =================================================================

TensorRT below 8.6 (JetPack 5) is refused with a clear message.  The plan stays a plain TensorRT
plan that ``trtexec`` loads; everything else (class names, preprocessing, precision, TensorRT
version, GPU, profile shapes, I/O, the ONNX sha256, the plan's size and sha256, the ONNX's
precision census) goes into the sidecar JSON.

The sidecar is a :class:`corese_edge.runtime.trt.PlanSidecar`, the one schema the runner reads
(docs/ARCHITECTURE.md, "Plan sidecar").  Plan and sidecar are committed together or not at all
(:func:`corese_edge.runtime.trt.commit_plan`, one commit of :mod:`corese_edge.atomic`): both are
written to temporary files beside their targets, the plan is moved into place first and the sidecar
last (the sidecar is the commit record).  If moving the sidecar fails the new plan is removed again.
A crash between the two moves leaves a plan whose bytes do not match the sidecar beside it (or no
sidecar), which the runner's size/sha256 check (:func:`corese_edge.runtime.trt.check_plan_file`)
refuses.  A failed build leaves any earlier plan and sidecar untouched.

``tensorrt`` is imported lazily; a missing one breaks only this stage.  The builder is written
against NVIDIA's documented Python API (cited at each version branch) and checked by contract tests
over fake modules (``tests/export/test_tensorrt_contract.py``), because TensorRT cannot run where
corese-edge is developed.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import ModuleType
from typing import Any

from corese_edge.atomic import file_sha256, write_bytes
from corese_edge.errors import UserError
# the sidecar schema, its path and its writer, the GPU description and the hardware-compatibility
# rule belong to the runtime, which reads what is written here
from corese_edge.runtime.cuda import GpuInfo, hardware_compat_refusal
from corese_edge.runtime.trt import PLAN_SCHEMA, PlanSidecar, commit_plan, sidecar_path
from corese_edge.versions import parse_version

log = logging.getLogger(__name__)

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

    def builder_flags(self, precision: str) -> list[str]:
        """The ``BuilderFlag`` members a graph of ``precision`` needs on this line (8.6 only).

        On 8.6 a Q/DQ graph gets ``INT8`` *and* ``FP16``: with ``INT8`` alone the layers between
        Q/DQ pairs (LayerNorm, GELU, residual Adds, ...) fall back to FP32, with ``FP16`` as well
        they may run in FP16 (``kINT8``: "Enable Int8 layer selection, with FP32 fallback with FP16
        fallback if kFP16 also specified", include/NvInfer.h, NVIDIA/TensorRT tag v8.6.1).
        Strongly typed lines take every layer's precision from the graph and get no flags.
        """
        if not self.precision_flags:
            return []
        return {"fp16": ["FP16"], "int8": ["INT8", "FP16"]}.get(precision, [])

    @property
    def strongly_typed(self) -> bool:
        return self.name != "8.6"


def tensorrt_line(version: str) -> TensorRTLine:
    """The build recipe for a TensorRT version; older than 8.6 (or the 9.x previews) is refused."""
    parts = parse_version(version)
    if len(parts) < 2:
        raise EngineUnavailable(f"cannot read the TensorRT version {version!r}")
    major, minor = parts[:2]
    if (major, minor) < MIN_VERSION:
        raise EngineUnavailable(
            f"TensorRT {version} is too old: corese-edge builds on TensorRT 8.6 (JetPack 6.0), 10.x "
            "(JetPack 6.1/6.2, JetPack 7) and 11.x; JetPack 5 (TensorRT 8.5, Python 3.8) is not supported. "
            "Upgrade JetPack / TensorRT, or run the ONNX with ONNX Runtime"
        )
    if major == 8:
        # TensorRT 8.6 Python API: networks need NetworkDefinitionCreationFlag.EXPLICIT_BATCH, and
        # Q/DQ or FP16 graphs build with BuilderFlag.INT8 (+ FP16) / BuilderFlag.FP16 (weak typing);
        # there is no STRONGLY_TYPED flag yet (it arrived in 9.1; NetworkDefinitionCreationFlag in
        # python/src/infer/pyCore.cpp at tags v8.6.1 and v9.1.0).
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
        # kEXPLICIT_BATCH TRT_DEPRECATED_ENUM = 0, kSTRONGLY_TYPED = 1: include/NvInfer.h, v10.0.1..v10.16.
        # https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1030/api/python_api/infer/Core/Builder.html
        return TensorRTLine("10.x", version, "STRONGLY_TYPED", precision_flags=False)
    # TensorRT 11.x: strong typing is always on, STRONGLY_TYPED is deprecated and ignored,
    # EXPLICIT_BATCH is gone, and BuilderFlag.FP16/INT8, IBuilderConfig.int8_calibrator and
    # Builder.platform_has_fast_fp16/int8 were removed (the BuilderFlag binding at tags v11.0/v11.1
    # and the real tensorrt_lean_bindings 11.4.0.106 have no FP16/INT8/BF16/FP8/INT4/FP4 members).
    # https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html
    # https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
    return TensorRTLine("11.x", version, None, precision_flags=False)


# --------------------------------------------------------------------------- environment


def gpu_info() -> GpuInfo | None:
    """The first CUDA GPU, via the runtime's CUDA layer (or torch when neither cuda-python nor
    pycuda is installed); None without one.

    A driver too old for the installed cuda-python (error 35 with a driver present) is not "no
    GPU": it raises :class:`EngineUnavailable` naming the driver's CUDA version and the
    ``trt-cu*`` extra that fits (:func:`corese_edge.runtime.cuda.probe_gpu`).
    """
    from corese_edge.runtime.cuda import probe_gpu

    probe = probe_gpu()
    if probe.status == "ok":
        return GpuInfo(probe.gpu.name, probe.gpu.compute_capability, bool(probe.gpu.integrated))
    if probe.status == "driver-too-old":
        raise EngineUnavailable(probe.reason)
    if probe.status != "no-cuda-layer":
        return None
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    prop = torch.cuda.get_device_properties(0)
    return GpuInfo(prop.name, f"{prop.major}.{prop.minor}", bool(getattr(prop, "is_integrated", False)))


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


def network_bytes(proto, line: TensorRTLine, onnx_path: Path) -> bytes:
    """What the ONNX parser of ``line`` is given for the artifact ``proto`` read from ``onnx_path``.

    Strongly typed lines parse the file as it is.  8.6 cannot read the INT8 artifact's FP16 Q/DQ
    scales or its opset 19 (see :mod:`corese_edge.export.int8`), so it parses the weakly typed form
    of the same graph -- every FP16 tensor widened exactly to FP32, opset 17 -- and the ``INT8`` +
    ``FP16`` builder flags let the non-quantized layers run in FP16 again.
    """
    if line.strongly_typed or onnx_precision(proto) != "int8":
        return onnx_path.read_bytes()
    from corese_edge.export.int8 import weakly_typed_qdq

    return weakly_typed_qdq(proto).SerializeToString()


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


@dataclass(frozen=True)
class EngineConfig:
    """Everything ``corese-edge build-engine`` takes (field names mirror its options).

    The field defaults are the build defaults, stated here only: :func:`build_engine`'s signature
    and the click options of ``build-engine`` and ``export`` take theirs from :func:`engine_defaults`.
    """

    onnx: str
    out: str | None = None
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    workspace_gb: float = 4.0
    timing_cache: str | None = None
    hardware_compat: str = "none"
    version_compatible: bool = False


def engine_defaults() -> dict[str, Any]:
    """``{field: default}`` of :class:`EngineConfig` (every field but the ONNX path)."""
    return {f.name: f.default for f in fields(EngineConfig) if f.name != "onnx"}


_DEFAULTS = engine_defaults()


def build_engine(
    onnx_path: str | os.PathLike,
    out: str | os.PathLike | None = _DEFAULTS["out"],
    min_batch: int = _DEFAULTS["min_batch"],
    opt_batch: int = _DEFAULTS["opt_batch"],
    max_batch: int = _DEFAULTS["max_batch"],
    workspace_gb: float = _DEFAULTS["workspace_gb"],
    timing_cache: str | os.PathLike | None = _DEFAULTS["timing_cache"],
    hardware_compat: str = _DEFAULTS["hardware_compat"],
    version_compatible: bool = _DEFAULTS["version_compatible"],
    *,
    trt: ModuleType | None = None,
    gpu: GpuInfo | None = None,
) -> EngineBuild:
    """Build a TensorRT plan from a corese-edge ONNX, with one optimization profile over the batch.

    The profile's shapes are ``(min_batch, C, H, W)``, ``(opt_batch, ...)``, ``(max_batch, ...)``,
    in that order; the defaults are :class:`EngineConfig`'s.  ``out`` defaults to
    ``model.<precision>.plan`` beside the ONNX.
    ``timing_cache`` is read when it exists and rewritten after the build; a cache from another
    GPU or TensorRT version is set aside with a warning and the build starts from an empty one.
    ``hardware_compat`` ``"ampere+"`` makes the plan portable across Ampere-and-newer discrete
    GPUs (refused on Jetsons and pre-Ampere GPUs); ``version_compatible`` embeds the lean runtime
    (8.6+).  ``trt`` and ``gpu`` default to the real ``tensorrt`` module and GPU (tests pass
    fakes).  Writes the plan and ``<plan>.json`` together or neither (see the module doc).
    """
    from corese_edge import __version__
    from corese_edge.metadata import ArtifactMetadata

    if not (1 <= min_batch <= opt_batch <= max_batch):
        raise UserError(f"batch profile must satisfy 1 <= min <= opt <= max, got {min_batch}/{opt_batch}/{max_batch}")
    if hardware_compat not in ("none", "ampere+"):
        raise UserError(f"--hardware-compat must be none or ampere+, got {hardware_compat!r}")
    if not workspace_gb > 0:
        raise UserError(f"--workspace-gb must be positive, got {workspace_gb}")
    onnx_path = Path(onnx_path)
    proto = _load_onnx(onnx_path)
    meta = ArtifactMetadata.from_props({p.key: p.value for p in proto.metadata_props}, source=str(onnx_path))
    precision = onnx_precision(proto)
    plan_path = Path(out) if out else default_plan_path(onnx_path, precision)
    sidecar = sidecar_path(plan_path)
    if sidecar.is_dir() or plan_path.is_dir():
        raise UserError(f"cannot write the plan to {plan_path}: it or {sidecar.name} is a directory")
    if trt is None:
        trt, gpu = engine_environment()
    elif gpu is None:
        gpu = gpu_info()
    line = tensorrt_line(trt.__version__)
    if hardware_compat != "none" and gpu is not None:
        check_hardware_compat(hardware_compat, gpu)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network_flags = 0
    if line.network_flag is not None:
        network_flags = 1 << int(getattr(trt.NetworkDefinitionCreationFlag, line.network_flag))
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    # parse() returns False on failure; the reasons are parser.get_error(i) for i < num_errors
    # (python/docstrings/parsers/pyOnnxDoc.h, tags v8.6.1 and v11.0).
    if not parser.parse(network_bytes(proto, line, onnx_path)):
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
    builder_flags = line.builder_flags(precision)
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
    cache_note = _attach_timing_cache(config, cache_path) if cache_path is not None else None

    log.info("building %s engine with TensorRT %s (%s) on %s", precision, line.version,
             "strongly typed" if line.strongly_typed else "weakly typed + flags", gpu.name if gpu else "?")
    plan = builder.build_serialized_network(network, config)
    # None on failure: the binding returns the C++ nullptr as None (NVIDIA's own samples check
    # "engine_bytes is None", samples/python/detectron2/build_engine.py at tag v11.0).
    if plan is None:
        raise EngineBuildError(f"TensorRT {line.version} failed to build {onnx_path} (see the TensorRT log above)")
    plan_bytes = bytes(memoryview(plan))
    if not plan_bytes:
        raise EngineBuildError(f"TensorRT {line.version} returned an empty plan for {onnx_path}")
    cache_bytes = _timing_cache_bytes(config) if cache_path is not None else None

    def io(t, mode: str) -> dict[str, Any]:
        import numpy as np

        return {"name": t.name, "mode": mode, "dtype": np.dtype(trt.nptype(t.dtype)).name, "shape": _dims(t.shape)}

    written = PlanSidecar(
        plan=plan_path.name,
        plan_size=len(plan_bytes),
        plan_sha256=hashlib.sha256(plan_bytes).hexdigest(),
        precision=precision,
        trt_version=line.version,
        tensorrt_line=line.name,
        strongly_typed=line.strongly_typed,
        gpu_name=gpu.name if gpu else None,
        compute_capability=gpu.compute_capability if gpu else None,
        gpu_integrated=gpu.integrated if gpu else None,
        profile={inp.name: shapes},
        inputs=tuple(io(t, "input") for t in inputs),
        outputs=tuple(io(t, "output") for t in outputs),
        class_names=tuple(meta.class_names),
        preprocessing=meta.preprocessing,
        model=meta.model,
        checkpoint_sha256=meta.checkpoint_sha256,
        onnx=onnx_path.name,
        onnx_sha256=file_sha256(onnx_path),
        version_compatible=version_compatible,
        hardware_compat=hardware_compat,
        build={
            "network_flags": [line.network_flag] if line.network_flag else [],
            "builder_flags": builder_flags,
            "workspace_gb": workspace_gb,
            "timing_cache": os.fspath(cache_path) if cache_path else None,
            "timing_cache_note": cache_note,
        },
        census=onnx_census(onnx_path),
        corese_edge_version=__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    written.write(plan_path, plan_bytes)
    if cache_path is not None and cache_bytes is not None:
        try:
            write_bytes(cache_path, cache_bytes)
        except OSError as exc:  # the engine is built and committed; a cache is only a speed-up
            log.warning("could not update the timing cache %s (%s); the engine %s is fine", cache_path, exc, plan_path)
    return EngineBuild(plan_path, sidecar, written.to_dict())


def _load_onnx(onnx_path: Path):
    """The ModelProto at ``onnx_path``; a missing or non-ONNX file is one :class:`UserError` line."""
    import onnx

    if not onnx_path.is_file():
        raise UserError(f"ONNX model not found: {onnx_path}")
    try:
        return onnx.load(os.fspath(onnx_path))
    except Exception as exc:  # protobuf's DecodeError and friends all mean "not an ONNX file"
        raise UserError(
            f"{onnx_path} is not an ONNX model ({type(exc).__name__}); build-engine takes the .onnx files "
            "that corese-edge export writes"
        ) from None


def check_hardware_compat(level: str, gpu: GpuInfo) -> None:
    """Refuse ``--hardware-compat`` where NVIDIA does not support it: integrated GPUs and pre-Ampere.

    The rule is the runner's (:func:`corese_edge.runtime.cuda.hardware_compat_refusal`, which
    cites NVIDIA), so the builder never makes a plan the runner would refuse on its device.
    """
    refusal = hardware_compat_refusal(gpu)
    if refusal == "integrated":
        raise UserError(
            f"--hardware-compat {level} is not supported on {gpu.name}, an integrated (Jetson) GPU: NVIDIA "
            "supports hardware-compatible engines only on discrete Ampere-or-newer GPUs, not on JetPack; "
            "build without --hardware-compat on each Jetson"
        )
    if refusal is not None:
        raise UserError(
            f"--hardware-compat {level} needs an Ampere or newer GPU to build on; {gpu.name} has compute "
            f"capability {gpu.compute_capability}: build without --hardware-compat"
        )


def _attach_timing_cache(config, cache_path: Path) -> str | None:
    """Attach the timing cache at ``cache_path`` (empty when missing) to ``config``.

    Returns a note for the sidecar when the stored cache could not be used.  TensorRT checks a
    cache's header against this device: ``set_timing_cache(cache, ignore_mismatch=False)`` returns
    False when the CUDA device properties (or the TensorRT version) differ, and then no cache is
    attached (python/docstrings/infer/pyCoreDoc.h, ``set_timing_cache`` / ``get_timing_cache``, tags
    v8.6.1, v10.0.1, v10.16, v11.0).  Such a cache is never forced on with ``ignore_mismatch=True``
    (NvInfer.h warns of "functional/performance bugs"); the build starts from an empty cache, which
    then replaces the stale file.
    """
    try:
        stored = cache_path.read_bytes() if cache_path.is_file() else b""
    except OSError as exc:
        raise UserError(f"cannot read the timing cache {cache_path}: {exc.strerror or exc}") from None
    cache = config.create_timing_cache(stored)
    # create_timing_cache returns the C++ pointer; the binding maps a nullptr (unreadable blob) to None.
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return None
    note = (f"timing cache {cache_path} was made on another GPU or TensorRT version (or is unreadable); "
            "started from an empty cache and replaced it")
    log.warning("%s", note)
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        note = f"TensorRT refused even an empty timing cache; built without one and left {cache_path} alone"
        log.warning("%s", note)
    return note


def _timing_cache_bytes(config) -> bytes | None:
    """The builder's timing cache, serialized, or None when none is attached (``get_timing_cache()``
    returns None when no cache is set: pyCoreDoc.h, tags v8.6.1 to v11.0)."""
    cache = config.get_timing_cache()
    if cache is None:
        return None
    return bytes(memoryview(cache.serialize()))


def onnx_census(onnx_path: Path) -> dict[str, Any] | None:
    """The ONNX's precision census for the sidecar, or None (with a warning) when it cannot be made.

    The census is a report about the graph, not part of the engine, so it never fails a build.
    """
    try:
        from corese_edge.export.census import precision_census

        # round-trip through JSON here so that an unserialisable census cannot break the commit
        return json.loads(json.dumps(precision_census(onnx_path).to_dict()))
    except Exception as exc:  # noqa: BLE001 - any census failure is only a warning
        log.warning("no precision census in the sidecar of %s: %s: %s", onnx_path.name, type(exc).__name__, exc)
        return None


def run_build_engine(cfg: EngineConfig) -> EngineBuild:
    """:func:`build_engine` for a resolved :class:`EngineConfig` (what the CLI calls)."""
    return build_engine(cfg.onnx, cfg.out, cfg.min_batch, cfg.opt_batch, cfg.max_batch, cfg.workspace_gb,
                        cfg.timing_cache, cfg.hardware_compat, cfg.version_compatible)
