"""TensorRT runner: a ``.plan`` plus its sidecar ``.plan.json``, run with the named-tensor API.

The named-tensor API common to TensorRT 8.6 through 11 is used (``num_io_tensors``,
``get_tensor_name`` / ``get_tensor_mode`` / ``get_tensor_shape`` / ``get_tensor_dtype``,
``get_tensor_profile_shape``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``;
see "Running an engine" in shared/TENSORRT.md and the TensorRT Python API reference for
``IExecutionContext``); only the execution-context memory calls differ by version (below).

Before anything is deserialized, :meth:`TrtRunner.activate` checks, each failure being one
:class:`~corese_edge.errors.UserError` line (a foreign or broken plan must never segfault; the lean
runtime does segfault when it deserializes without a GPU):

1. the plan and its sidecar exist and the sidecar parses;
2. the plan is whole: its size and sha256 equal the sidecar's ``plan_size`` / ``plan_sha256``;
3. a CUDA GPU is present (``cudaGetDeviceCount``);
4. the sidecar was built for this GPU: same compute capability (or, for a hardware-compatible plan,
   an Ampere-or-newer *discrete* GPU: NVIDIA does not support hardware compatibility on Jetson /
   integrated GPUs, so such a plan is refused there, Orin's 8.7 included), and the same name (a
   different name with the same compute capability only warns);
5. the installed TensorRT can load it: the same major.minor.patch.build for a normal plan; for a
   version-compatible plan (``BuilderFlag.VERSION_COMPATIBLE``) the same major and not older, or the 8 -> 10 and
   10 -> 11 steps TensorRT documents.  The lean runtime (``tensorrt_lean``, or
   ``tensorrt_lean_bindings`` from the PyPI wheels ``tensorrt-lean-cu13-bindings`` +
   ``tensorrt-lean-cu13-libs``) loads only version-compatible plans, and for those
   ``Runtime.engine_host_code_allowed`` is set to True.

Memory follows TensorRT's ``common_runtime.py``: one device buffer and one pinned host buffer per
I/O tensor, allocated once for the optimization profile's maximum shapes, bound with
``set_tensor_address``; one CUDA stream.  Outputs are read from the pinned buffers only after the
stream is synchronised.

Execution contexts are created with user-managed device memory and all share one scratch
allocation of ``device_memory_size_v2`` bytes (TensorRT 10.1+: ``create_execution_context(
ExecutionContextAllocationStrategy.USER_MANAGED)`` + ``set_device_memory``; 10.0: the same with
``device_memory_size`` and the ``device_memory`` property; 8.6:
``create_execution_context_without_device_memory``).  Sharing is allowed because they never run at
the same time: one stream, one thread (``set_device_memory``'s docstring forbids only a *parallel*
context on the same memory).

CUDA graphs (``cuda_graph=True``) follow trtexec (``samples/common/sampleInference.cpp``,
``IterationStd::createEnqueueFunction``; ``sampleDevice.h``, ``TrtCudaGraph``): a captured graph
is tied to its execution context's state at capture, so each batch size gets its own execution
context, set to that shape once and never changed.  The first query of a batch copies the inputs
in, enqueues once at that shape and synchronises (TensorRT does its lazy per-shape setup there,
which must not be captured), then captures one enqueue.  All of that happens before the query's
timing events, so capture is never counted in ``gpu_compute_ms``.  When the capture is invalidated
or the graph cannot be instantiated, a warning is logged, every graph object is destroyed, and that
batch runs with plain enqueue on its context.  Transfers stay outside the graph so H2D / compute /
D2H keep their own timings.

Thread safety: a TrtRunner owns its execution contexts, one stream and one set of buffers, and
TensorRT allows an execution context to be used by one thread at a time.  Use one TrtRunner per
thread (each deserializes its own engine); calling one runner from two threads at once raises a
UserError instead of corrupting its buffers.  A runner may be called from a thread other than the
one that activated it: every CUDA call runs inside the CUDA layer's ``scope()``, which makes the
runner's device (and, for pycuda, its context) current on the calling thread.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from corese_edge.atomic import json_text, write_files
from corese_edge.errors import MissingExtra, UserError
from corese_edge.metadata import ArtifactMetadata
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime.base import Runner, TensorSpec
from corese_edge.runtime.cuda import CudaApi, GpuInfo, GraphCaptureError, cuda_api, hardware_compat_refusal, is_integrated
from corese_edge.versions import parse_version

log = logging.getLogger(__name__)

#: Modules that provide ``Runtime``, tried in this order by ``trt_module="auto"``.
TRT_MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_lean_bindings")
LEAN_MODULES = ("tensorrt_lean", "tensorrt_lean_bindings")


def sidecar_path(plan: str | os.PathLike) -> Path:
    """``model.fp16.plan`` -> ``model.fp16.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + ".json")


#: The sidecar's schema and its version.  A sidecar of a newer version is refused (it may carry
#: facts this runner would ignore); every older one is read.
PLAN_SCHEMA_VERSION = 1
PLAN_SCHEMA = f"corese-edge/plan/{PLAN_SCHEMA_VERSION}"
_SCHEMA_VERSION = re.compile(r"corese-edge/plan/(\d+)$")


@dataclass(frozen=True, kw_only=True)
class PlanSidecar:
    """The plan sidecar ``<plan>.json``: the one schema (docs/ARCHITECTURE.md, "Plan sidecar").

    ``corese-edge build-engine`` constructs one and :meth:`write` commits it with its plan;
    :meth:`read` gives it back to the runner.  The fields are the keys, in the order they are
    written.  ``trt_version``, ``gpu_name``, ``compute_capability``, ``class_names`` and
    ``preprocessing`` are required to read a sidecar; the rest have defaults.  ``path`` is where
    it was read from (not written).
    """

    schema: str = PLAN_SCHEMA
    plan: str = ""  # the plan's file name
    plan_size: int | None = None
    plan_sha256: str | None = None
    precision: str = "fp32"
    trt_version: str
    tensorrt_line: str = ""  # "8.6" | "10.x" | "11.x"
    strongly_typed: bool | None = None
    gpu_name: str | None
    compute_capability: str | None
    gpu_integrated: bool | None = None
    profile: dict[str, Any] = field(default_factory=dict)  # {input: {"min": shape, "opt": shape, "max": shape}}
    inputs: tuple[dict[str, Any], ...] = ()  # {"name", "mode", "dtype", "shape"}
    outputs: tuple[dict[str, Any], ...] = ()
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    model: str = "unknown"
    checkpoint_sha256: str = ""
    onnx: str = ""
    onnx_sha256: str = ""
    version_compatible: bool = False
    hardware_compat: str = "none"  # "none" | "ampere+"
    build: dict[str, Any] = field(default_factory=dict)  # network / builder flags, workspace, timing cache
    census: dict[str, Any] | None = None  # the ONNX's precision census
    corese_edge_version: str = ""
    created: str = ""
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def read(cls, path: str | os.PathLike) -> "PlanSidecar":
        path = Path(path)
        if not path.is_file():
            raise UserError(
                f"{path} not found: a .plan needs the sidecar JSON that build-engine writes beside it "
                "(class names, preprocessing, the GPU and TensorRT version it was built for)"
            )
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable plan sidecar ({exc})") from None
        return cls.from_dict(raw, path=path)

    @classmethod
    def from_dict(cls, raw: Any, path: Path | None = None) -> "PlanSidecar":
        where = path if path is not None else "plan sidecar"
        if not isinstance(raw, dict) or not str(raw.get("schema", "")).startswith("corese-edge/"):
            raise UserError(f"{where}: not a corese-edge plan sidecar (no corese-edge schema)")
        version = _SCHEMA_VERSION.match(str(raw["schema"]))
        if version and int(version.group(1)) > PLAN_SCHEMA_VERSION:
            raise UserError(f"{where}: schema {raw['schema']} was written by a newer corese-edge (this one reads "
                            f"up to {PLAN_SCHEMA}): upgrade corese-edge, or rebuild the engine with this one")
        try:
            size, sha = raw.get("plan_size"), raw.get("plan_sha256")
            return cls(
                schema=str(raw["schema"]),
                plan=str(raw.get("plan") or ""),
                plan_size=int(size) if size is not None else None,
                plan_sha256=str(sha) if sha else None,
                precision=str(raw.get("precision", "fp32")),
                trt_version=str(raw["trt_version"]),
                tensorrt_line=str(raw.get("tensorrt_line") or ""),
                strongly_typed=raw.get("strongly_typed"),
                gpu_name=str(raw["gpu_name"]),
                compute_capability=str(raw["compute_capability"]),
                gpu_integrated=raw.get("gpu_integrated"),
                profile=dict(raw.get("profile") or {}),
                inputs=tuple(raw.get("inputs") or ()),
                outputs=tuple(raw.get("outputs") or ()),
                class_names=tuple(raw["class_names"]),
                preprocessing=Preprocessing.from_dict(raw["preprocessing"]),
                model=str(raw.get("model", "unknown")),
                checkpoint_sha256=str(raw.get("checkpoint_sha256") or ""),
                onnx=str(raw.get("onnx") or ""),
                onnx_sha256=str(raw.get("onnx_sha256", "")),
                version_compatible=bool(raw.get("version_compatible", False)),
                hardware_compat=str(raw.get("hardware_compat") or "none").lower(),
                build=dict(raw.get("build") or {}),
                census=raw.get("census"),
                corese_edge_version=str(raw.get("corese_edge_version") or ""),
                created=str(raw.get("created") or ""),
                path=path,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where}: incomplete plan sidecar (missing or bad {exc})") from None

    def to_dict(self) -> dict[str, Any]:
        """The sidecar JSON: every field but ``path``, in field order."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "path":
                continue
            value = getattr(self, f.name)
            if f.name == "preprocessing":
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def write(self, plan_path: str | os.PathLike, plan_bytes: bytes) -> None:
        """Commit ``plan_bytes`` to ``plan_path`` and this sidecar beside it (:func:`commit_plan`)."""
        commit_plan(plan_path, plan_bytes, self)

    def metadata(self) -> ArtifactMetadata:
        return ArtifactMetadata(
            class_names=self.class_names,
            preprocessing=self.preprocessing,
            model=self.model,
            checkpoint_sha256=self.checkpoint_sha256,
            corese_edge_version=self.corese_edge_version,
        )


def commit_plan(plan_path: str | os.PathLike, plan_bytes: bytes, sidecar: "PlanSidecar | Mapping[str, Any]") -> None:
    """Write ``plan_bytes`` to ``plan_path`` and ``sidecar`` to :func:`sidecar_path`: both or neither.

    One commit of :func:`corese_edge.atomic.write_files`: both go to fsynced temporary files in
    the target folder first, the plan is moved into place, then the sidecar (the commit record);
    if moving the sidecar fails, the new plan is removed again; then the folder is fsynced.  The
    sidecar must carry a schema and ``plan_size`` / ``plan_sha256`` of ``plan_bytes``: a crash
    between the two moves leaves a plan that disagrees with the sidecar beside it (or has none),
    which :func:`check_plan_file` refuses.
    """
    info = sidecar.to_dict() if isinstance(sidecar, PlanSidecar) else dict(sidecar)
    if (info.get("schema") is None or info.get("plan_size") != len(plan_bytes)
            or info.get("plan_sha256") != hashlib.sha256(plan_bytes).hexdigest()):
        raise ValueError("the sidecar must carry a schema and the plan's size and sha256")
    write_files({Path(plan_path): plan_bytes, sidecar_path(plan_path): json_text(info).encode("utf-8")})


def check_plan_file(plan: Path, sidecar: PlanSidecar) -> bytes:
    """Read the plan and prove it whole against the sidecar; returns its bytes."""
    try:
        data = plan.read_bytes()
    except FileNotFoundError:
        raise UserError(f"engine not found: {plan}") from None
    except OSError as exc:
        raise UserError(f"{plan}: cannot read the engine ({exc.strerror or exc})") from None
    if not data:
        raise UserError(f"{plan} is empty: rebuild it with corese-edge build-engine")
    if sidecar.plan_size is not None and len(data) != sidecar.plan_size:
        raise UserError(
            f"{plan} is {len(data)} bytes but its sidecar records {sidecar.plan_size}: "
            "the file is truncated or was replaced; copy it again or rebuild it"
        )
    if sidecar.plan_sha256 is not None:
        digest = hashlib.sha256(data).hexdigest()
        if digest != sidecar.plan_sha256:
            raise UserError(
                f"{plan}: sha256 {digest[:12]}... differs from its sidecar's {sidecar.plan_sha256[:12]}...: "
                "the file is corrupt or belongs to another sidecar; copy it again or rebuild it"
            )
    if sidecar.plan_size is None and sidecar.plan_sha256 is None:
        log.warning("%s records no plan_size / plan_sha256; the plan's integrity cannot be checked", sidecar.path)
    return data


def check_gpu(plan: Path, sidecar: PlanSidecar, gpu_name: str, compute_capability: str,
              integrated: bool = False) -> None:
    """Refuse a plan built for another GPU architecture (see module doc, check 4).

    ``integrated``: the GPU is a Jetson / integrated one (:func:`~corese_edge.runtime.cuda.is_integrated`;
    a Tegra-only compute capability counts as integrated either way).
    """
    built = parse_version(sidecar.compute_capability)
    here = parse_version(compute_capability)
    if sidecar.hardware_compat not in ("", "none"):
        # an Ampere-plus plan runs where one may be built: the one rule of runtime.cuda
        refusal = hardware_compat_refusal(GpuInfo(gpu_name, compute_capability, integrated=integrated))
        if refusal == "integrated":
            raise UserError(
                f"{plan} is a hardware-compatible ({sidecar.hardware_compat}) plan, which NVIDIA supports "
                f"only on discrete GPUs; this GPU, {gpu_name} ({compute_capability}), is integrated (Jetson): "
                "rebuild the engine on this device without --hardware-compat"
            )
        if refusal is not None:
            raise UserError(
                f"{plan} is a hardware-compatible ({sidecar.hardware_compat}) plan built on "
                f"{sidecar.gpu_name} (compute capability {sidecar.compute_capability}); this GPU, {gpu_name} "
                f"({compute_capability}), is outside that range: rebuild the engine here with corese-edge build-engine"
            )
        return
    if here != built:
        raise UserError(
            f"{plan} was built for {sidecar.gpu_name} (compute capability {sidecar.compute_capability}) "
            f"but this GPU is {gpu_name} ({compute_capability}); engines do not travel between GPU "
            "architectures: rebuild it here with corese-edge build-engine MODEL.onnx"
        )
    if sidecar.gpu_name.strip().lower() != gpu_name.strip().lower():
        log.warning(
            "%s was built on %s; this GPU is %s with the same compute capability %s: it should load, "
            "but tactics were tuned for the other GPU",
            plan, sidecar.gpu_name, gpu_name, compute_capability,
        )


def check_trt_version(plan: Path, sidecar: PlanSidecar, installed: str, module_name: str) -> None:
    """Refuse a plan this TensorRT cannot load (see module doc, check 5)."""
    built, have = parse_version(sidecar.trt_version), parse_version(installed)
    lean = module_name in LEAN_MODULES
    if not sidecar.version_compatible:
        if lean:
            raise UserError(
                f"{plan} is not version-compatible, and the TensorRT lean runtime ({module_name} {installed}) "
                "loads only version-compatible plans: rebuild with --version-compatible, or install the full "
                f"TensorRT {sidecar.trt_version}"
            )
        # A plan that is not version-compatible loads only on the exact TensorRT that built it,
        # build number included (TensorRT developer guide, "Version Compatibility"; the runtime
        # compares the full version stored in the plan).
        if len(built) < 4 or len(have) < 4:
            log.warning("TensorRT version %s or %s lacks a build number; comparing major.minor.patch only",
                        sidecar.trt_version, installed)
        width = max(3, min(len(built), len(have), 4))
        if built[:width] != have[:width]:
            raise UserError(
                f"{plan} was built with TensorRT {sidecar.trt_version} but TensorRT {installed} is installed; "
                "a plan loads only on the TensorRT version that built it: rebuild it here, or build with "
                "--version-compatible"
            )
        return
    # Version-compatible plans load on the same or a later version within a major, and across the
    # 8 -> 10 and 10 -> 11 steps (TensorRT developer guide, "Version Compatibility").
    same_major_newer = built[:1] == have[:1] and have >= built
    next_major = (built[:1], have[:1]) in (((8,), (10,)), ((10,), (11,)))
    if not (same_major_newer or next_major):
        raise UserError(
            f"{plan} is a version-compatible plan from TensorRT {sidecar.trt_version}, which TensorRT "
            f"{installed} cannot load (it needs the same major version, not older, or the next supported "
            "major): rebuild it here"
        )


def import_trt(trt_module: str = "auto") -> Any:
    """The TensorRT runtime module (full ``tensorrt`` first, then the lean ones)."""
    names = TRT_MODULES if trt_module == "auto" else (trt_module,)
    if trt_module != "auto" and trt_module not in TRT_MODULES:
        raise UserError(f"trt_module must be auto or one of {', '.join(TRT_MODULES)}, got {trt_module!r}")
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingExtra(
        "TensorRT is not installed: on a Jetson it comes with JetPack (apt install python3-libnvinfer); "
        "elsewhere install NVIDIA's tensorrt, or pip install tensorrt-lean-cu13-bindings tensorrt-lean-cu13-libs "
        "for version-compatible plans"
    )


def _module_version(mod: Any) -> str:
    return str(getattr(mod, "__version__", "unknown"))


class TrtRunner(Runner):
    """Runs a TensorRT plan (see the module doc for the checks, memory and thread-safety contract).

    ``cuda_backend``: ``auto`` | ``cuda-python`` | ``pycuda``.  ``cuda_graph``: capture each batch
    size's enqueue into a CUDA graph.  ``device``: the GPU index.  ``trt_module``: ``auto`` or one
    of :data:`TRT_MODULES`.  ``cuda`` and ``trt`` inject a CUDA layer / TensorRT module (tests).

    After each :meth:`infer`, :attr:`last_timings` holds ``h2d_ms``, ``gpu_compute_ms``,
    ``d2h_ms`` (CUDA events on the stream), ``enqueue_ms`` (host time of the enqueue call) and
    ``latency_ms`` = H2D + compute + D2H, as trtexec defines them.
    """

    backend = "trt"

    def __init__(
        self,
        path: str | Path,
        cuda_backend: str = "auto",
        cuda_graph: bool = False,
        device: int = 0,
        trt_module: str = "auto",
        cuda: CudaApi | None = None,
        trt: Any | None = None,
    ) -> None:
        super().__init__(str(path))
        self.cuda_backend = cuda_backend
        self.cuda_graph = bool(cuda_graph)
        self.device = int(device)
        self.trt_module = trt_module
        self._cuda = cuda
        self._trt = trt
        self.sidecar: PlanSidecar | None = None
        self.gpu = None
        self.trt_version = ""
        self.last_timings: dict[str, float] = {}
        self._lock = threading.Lock()
        self._reset_handles()

    def _reset_handles(self) -> None:
        self._runtime = self._engine = self._context = None
        self._stream = None
        self._scratch = None  # device memory shared by every execution context
        self._scratch_size = 0
        self._events: list[Any] = []
        self._device_buffers: dict[str, Any] = {}
        self._host_buffers: dict[str, Any] = {}
        self._graphs: dict[int, _BatchGraph] = {}
        self._current_batch = 0

    # -- activation ------------------------------------------------------------------------------
    def _activate(self) -> None:
        plan = Path(self.path)
        if not plan.is_file():
            raise UserError(f"engine not found: {plan}")
        sidecar = PlanSidecar.read(sidecar_path(plan))
        data = check_plan_file(plan, sidecar)

        api = self._cuda if self._cuda is not None else cuda_api(self.cuda_backend)
        count = api.device_count()  # a driver too old for cuda-python raises DriverTooOld here
        if count == 0:
            raise UserError(
                f"no CUDA GPU found ({api.no_device_reason or 'no device'}): a TensorRT plan needs an NVIDIA GPU "
                "and driver; on a CPU run the .onnx export instead (corese-edge bench --onnx model.onnx)"
            )
        if self.device >= count:
            raise UserError(f"GPU {self.device} requested but only {count} CUDA device(s) are present")
        gpu = api.device_info(self.device)
        check_gpu(plan, sidecar, gpu.name, gpu.compute_capability, integrated=is_integrated(gpu))

        trt = self._trt if self._trt is not None else import_trt(self.trt_module)
        module_name = getattr(trt, "__name__", "tensorrt").split(".")[0]
        installed = _module_version(trt)
        check_trt_version(plan, sidecar, installed, module_name)

        self.sidecar, self.gpu, self.trt_version, self.trt = sidecar, gpu, installed, trt
        self.metadata = sidecar.metadata()
        self.precision = sidecar.precision
        self.cuda = api
        try:
            api.set_device(self.device)
            with api.scope():
                self._load(trt, api, data, sidecar)
        except BaseException:
            self._free()
            raise

    def _load(self, trt: Any, api: CudaApi, data: bytes, sidecar: PlanSidecar) -> None:
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        if sidecar.version_compatible:
            # version-compatible plans carry their own lean runtime code, which must be allowed
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise UserError(f"{self.path}: TensorRT could not deserialize the plan (see TensorRT's log above)")

        inputs, outputs, max_shapes = [], [], {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            mode = self._engine.get_tensor_mode(name)
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            shape = tuple(int(d) for d in self._engine.get_tensor_shape(name))
            spec = TensorSpec(name, dtype, tuple(None if d < 0 else d for d in shape))
            if mode == trt.TensorIOMode.INPUT:
                _min, _opt, mx = self._engine.get_tensor_profile_shape(name, 0)
                max_shapes[name] = tuple(int(d) for d in mx)
                inputs.append(spec)
            elif mode == trt.TensorIOMode.OUTPUT:
                outputs.append(spec)
        if not inputs or not outputs:
            raise UserError(f"{self.path}: the engine has no inputs or no outputs")
        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self.max_batch = min(shape[0] for shape in max_shapes.values())

        self._scratch_size = int(self._engine_memory_size())
        self._scratch = api.device_buffer(self._scratch_size)
        self._context = self._new_context()
        for name, shape in max_shapes.items():
            self._set_input_shape(self._context, name, shape)
        self._current_batch = self.max_batch
        self._stream = api.create_stream()
        for spec in self.inputs + self.outputs:
            shape = max_shapes[spec.name] if spec.name in max_shapes else tuple(self._context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise UserError(f"{self.path}: cannot size output {spec.name!r} (shape {shape} at the maximum batch)")
            self._host_buffers[spec.name] = api.host_buffer(shape, spec.dtype)
            self._device_buffers[spec.name] = api.device_buffer(self._host_buffers[spec.name].nbytes)
        self._bind_addresses(self._context)
        self._events = [api.create_event() for _ in range(4)]

    def _engine_memory_size(self) -> int:
        """Bytes of device memory one execution context needs (the largest over the profiles)."""
        engine = self._engine
        # device_memory_size_v2 arrived in 10.1 (pyCore.cpp, v10.1.0) and is the only one in 11.x;
        # 8.6 and 10.0 have device_memory_size (removed in 11.0)
        for name in ("device_memory_size_v2", "device_memory_size"):
            if hasattr(engine, name):
                return int(getattr(engine, name))
        raise UserError(f"{self.path}: this TensorRT reports no device memory size for its execution contexts")

    def _new_context(self) -> Any:
        """An execution context on the shared scratch memory (see the module doc for the versions)."""
        trt, engine = self.trt, self._engine
        strategy = getattr(trt, "ExecutionContextAllocationStrategy", None)
        if strategy is not None and hasattr(strategy, "USER_MANAGED"):
            # TensorRT 10.0+: pyCore.cpp binds create_execution_context(strategy=STATIC)
            ctx = engine.create_execution_context(strategy.USER_MANAGED)
        else:
            # TensorRT 8.6 (pyCoreDoc.h: "The memory for execution of this device context must be
            # supplied by the application")
            ctx = engine.create_execution_context_without_device_memory()
        if ctx is None:
            raise UserError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)")
        if hasattr(ctx, "set_device_memory"):  # 10.1+: (memory, size)
            ctx.set_device_memory(self._scratch.ptr, self._scratch_size)
        else:  # 8.6 / 10.0: a write-only property
            ctx.device_memory = self._scratch.ptr
        return ctx

    def _bind_addresses(self, ctx: Any) -> None:
        for spec in self.inputs + self.outputs:
            if not ctx.set_tensor_address(spec.name, self._device_buffers[spec.name].ptr):
                raise UserError(f"{self.path}: TensorRT refused the address of tensor {spec.name!r}")

    def _set_input_shape(self, ctx: Any, name: str, shape: tuple[int, ...]) -> None:
        if not ctx.set_input_shape(name, tuple(int(d) for d in shape)):
            raise UserError(f"{self.path}: TensorRT rejected input shape {shape} for {name!r} (outside the profile)")

    def _set_batch(self, ctx: Any, batch: int) -> None:
        for spec in self.inputs:
            self._set_input_shape(ctx, spec.name, (batch,) + tuple(self._host_buffers[spec.name].array.shape[1:]))

    # -- inference -------------------------------------------------------------------------------
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self._lock.acquire(blocking=False):
            raise UserError("this TrtRunner is already running in another thread: use one TrtRunner per thread")
        try:
            batch = int(next(iter(feed.values())).shape[0])
            for spec in self.inputs:
                np.copyto(self._host_buffers[spec.name].array[:batch], feed[spec.name])
            self.execute(batch, transfers=True)  # returns after the stream is synchronised
            return {spec.name: self._host_buffers[spec.name].array[:batch].copy() for spec in self.outputs}
        finally:
            self._lock.release()

    def execute(self, batch: int, transfers: bool = True) -> dict[str, float]:
        """Run one query of ``batch`` rows on whatever the pinned input buffers hold.

        Returns once the stream is synchronised: the pinned output buffers then hold the result.
        ``transfers=False`` skips H2D and D2H (trtexec's ``--noDataTransfers``): latency is then the
        GPU compute time alone.  With ``cuda_graph`` on, the first query of a batch size first
        prepares its graph (warm-up enqueue, capture) outside the timed events.  Returns and stores
        :attr:`last_timings` (milliseconds).
        """
        api, stream = self.cuda, self._stream
        with api.scope():
            if self.cuda_graph:
                entry = self._graph_entry(batch)
                ctx, graph = entry.context, entry.graph
            else:
                ctx, graph = self._context, None
                if batch != self._current_batch:
                    self._set_batch(ctx, batch)
                    self._current_batch = batch
            rows = {name: buf.nbytes // buf.array.shape[0] for name, buf in self._host_buffers.items()}
            e0, e1, e2, e3 = self._events
            api.record_event(e0, stream)
            if transfers:
                self._copy_inputs(batch, rows)
            api.record_event(e1, stream)
            t0 = time.perf_counter()
            if graph is not None:
                graph.launch(stream)
            elif not ctx.execute_async_v3(api.stream_handle(stream)):
                raise UserError(f"{self.path}: TensorRT execute_async_v3 failed (see TensorRT's log above)")
            enqueue_ms = (time.perf_counter() - t0) * 1e3
            api.record_event(e2, stream)
            if transfers:
                for spec in self.outputs:
                    api.dtoh_async(self._host_buffers[spec.name], self._device_buffers[spec.name], rows[spec.name] * batch, stream)
            api.record_event(e3, stream)
            api.synchronize(stream)
            timings = {"gpu_compute_ms": api.elapsed_ms(e1, e2), "enqueue_ms": enqueue_ms}
            if transfers:
                timings["h2d_ms"] = api.elapsed_ms(e0, e1)
                timings["d2h_ms"] = api.elapsed_ms(e2, e3)
                timings["latency_ms"] = timings["h2d_ms"] + timings["gpu_compute_ms"] + timings["d2h_ms"]
            else:
                timings["latency_ms"] = timings["gpu_compute_ms"]
        self.last_timings = timings
        return timings

    def _copy_inputs(self, batch: int, rows: Mapping[str, int]) -> None:
        for spec in self.inputs:
            self.cuda.htod_async(self._device_buffers[spec.name], self._host_buffers[spec.name], rows[spec.name] * batch, self._stream)

    def has_graph(self, batch: int) -> bool:
        """True when queries of ``batch`` rows replay a CUDA graph (False before the first one, or
        after a capture fell back to plain enqueue)."""
        entry = self._graphs.get(int(batch))
        return entry is not None and entry.graph is not None

    def _graph_entry(self, batch: int) -> "_BatchGraph":
        """The execution context (and graph, unless capture failed) of ``batch``; prepared on first use."""
        entry = self._graphs.get(batch)
        if entry is not None:
            return entry
        api, stream = self.cuda, self._stream
        if not getattr(api, "supports_graphs", False):
            raise UserError(f"CUDA graphs need cuda-python (the {api.name} backend cannot capture); use --no-cuda-graph")
        ctx = self._new_context()
        self._set_batch(ctx, batch)
        self._bind_addresses(ctx)
        entry = _BatchGraph(ctx, None)
        self._graphs[batch] = entry  # from here on _free() owns the context
        # trtexec: inputs to the device, then one enqueue at this shape before capturing, so that
        # TensorRT's initialisation work is not captured
        rows = {name: buf.nbytes // buf.array.shape[0] for name, buf in self._host_buffers.items()}
        self._copy_inputs(batch, rows)
        api.synchronize(stream)
        if not ctx.execute_async_v3(api.stream_handle(stream)):
            raise UserError(f"{self.path}: TensorRT execute_async_v3 failed (warm-up before CUDA graph capture)")
        api.synchronize(stream)
        entry.graph = self._capture(ctx, batch)
        return entry

    def _capture(self, ctx: Any, batch: int) -> Any | None:
        """Capture one enqueue of ``ctx``; None (with a warning, nothing leaked) when it fails."""
        api, stream = self.cuda, self._stream
        api.begin_capture(stream)
        try:
            ok = bool(ctx.execute_async_v3(api.stream_handle(stream)))
        except BaseException:
            try:
                api.end_capture(stream, enqueue_ok=False)
            except GraphCaptureError:
                pass
            raise
        try:
            return api.end_capture(stream, enqueue_ok=ok)
        except GraphCaptureError as exc:
            log.warning("%s: CUDA graph capture for batch %d failed (%s); that batch runs without a CUDA graph",
                        self.path, batch, exc)
            return None

    def host_input(self, name: str) -> np.ndarray:
        """The pinned host buffer of input ``name`` (max-batch rows), for benchmarks that fill it once."""
        return self._host_buffers[name].array

    # -- timing (the Runner timing hook, answered with CUDA events) -------------------------------
    _timing_batch = 0  # rows of the prepared query; 0 until prepare_timing
    _timing_transfers = True

    def prepare_timing(self, feed: Mapping[str, np.ndarray], *, cuda_graph: bool = False,
                       include_transfers: bool = True) -> None:
        """Copy ``feed`` into the pinned input buffers once and set the query's mode.

        ``cuda_graph`` switches this runner's CUDA graphs on or off from here on (each batch's graph
        is captured by its first query, outside that query's events); ``include_transfers=False``
        leaves H2D / D2H out of the queries (trtexec ``--noDataTransfers``).
        """
        batch = self.check_feed(feed)
        for name, value in feed.items():
            self.host_input(name)[:batch] = value
        self.cuda_graph = bool(cuda_graph)
        self._timing_batch = batch
        self._timing_transfers = bool(include_transfers)

    def timed_query(self, inputs: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """One :meth:`execute` of the prepared batch: ``latency_ms``, ``gpu_compute_ms``,
        ``enqueue_ms``, and ``h2d_ms`` / ``d2h_ms`` with transfers (see :meth:`execute`).
        ``inputs`` are written to the pinned buffers first, outside the events."""
        if not self._timing_batch:
            raise UserError(f"{self.path}: call prepare_timing() before timed_query()")
        for name, value in (inputs or {}).items():
            self.host_input(name)[:self._timing_batch] = value
        return dict(self.execute(self._timing_batch, transfers=self._timing_transfers))

    def execution_facts(self, batch: int | None = None) -> dict[str, dict[str, Any]]:
        """The query mode per result (``cuda_graph_captured``: whether ``batch`` really replays a
        graph, False after a failed capture) and the TensorRT runtime module, version and CUDA layer."""
        result: dict[str, Any] = {"cuda_graph": self.cuda_graph}
        if self.cuda_graph and batch is not None:
            result["cuda_graph_captured"] = self.has_graph(batch)
        result["include_transfers"] = self._timing_transfers
        if not self.is_active:  # the runtime module and CUDA layer are chosen by activate()
            return {"result": result}
        runtime = {"module": self.trt.__name__, "version": self.trt_version, "cuda_layer": self.cuda.name}
        return {"result": result, "device": {"tensorrt_runtime": runtime}}

    # -- teardown --------------------------------------------------------------------------------
    def _close(self) -> None:
        self._free()

    def _free(self) -> None:
        api = getattr(self, "cuda", None) or self._cuda
        errors: list[str] = []
        holds = self._stream is not None or self._scratch is not None or self._device_buffers or self._host_buffers
        scope = _try_scope(api, errors) if holds else None
        try:
            for entry in self._graphs.values():
                if entry.graph is not None:
                    errors += _try(entry.graph.free)
                entry.context = None
            # contexts go before the memory they use, the engine after its contexts
            self._context = None
            self._graphs = {}
            if self._scratch is not None:
                errors += _try(self._scratch.free)
            for buf in list(self._device_buffers.values()) + list(self._host_buffers.values()):
                errors += _try(buf.free)
            if api is not None:
                for ev in self._events:
                    errors += _try(api.destroy_event, ev)
                if self._stream is not None:
                    errors += _try(api.destroy_stream, self._stream)
            self._engine = None
            self._runtime = None
        finally:
            if scope is not None:
                errors += _try(scope.__exit__, None, None, None)
        if api is not None:
            errors += _try(api.release)
        self._reset_handles()
        if errors:
            log.warning("while freeing %s: %s", self.path, "; ".join(errors))


@dataclass
class _BatchGraph:
    """The execution context fixed at one batch size, and its CUDA graph (None: plain enqueue)."""

    context: Any
    graph: Any | None


def _try_scope(api: CudaApi | None, errors: list[str]) -> Any | None:
    """Enter ``api.scope()`` for freeing; None (error noted) when there is nothing to enter."""
    if api is None:
        return None
    scope = api.scope()
    try:
        scope.__enter__()
    except Exception as exc:  # e.g. pycuda before set_device: free what can be freed without it
        errors.append(str(exc))
        return None
    return scope


def _try(fn: Any, *args: Any) -> list[str]:
    try:
        fn(*args)
        return []
    except Exception as exc:  # keep freeing the rest
        return [str(exc)]
