"""CONTRACT FAKES: ``tensorrt`` modules with the documented build API of 8.6, 10.x and 11.x.

TensorRT cannot be installed where corese-edge is developed, so the builder is checked against
these stand-ins.  Sources, all in NVIDIA/TensorRT at the tag named (``fetch github:NVIDIA/TensorRT``):

* enum members and values: ``python/src/infer/pyCore.cpp`` / ``pyFoundationalTypes.cpp`` and
  ``include/NvInfer.h``, ``NvInferRuntime*.h`` at v8.6.1, v10.0.1 ... v10.16 and v11.0 / v11.1.  The
  11.x ``BuilderFlag``, ``DataType``, ``MemoryPoolType``, ``TensorIOMode`` and
  ``HardwareCompatibilityLevel`` equal the real ``tensorrt_lean_bindings`` 11.4.0.106 (checked by
  ``test_tensorrt_contract.py::test_the_11x_fake_enums_equal_the_real_lean_bindings``).
* method contracts: ``python/docstrings/infer/pyCoreDoc.h`` and ``python/docstrings/parsers/pyOnnxDoc.h``.

Each fake carries only the names NVIDIA documents for its line (classes use ``__slots__``, so
assigning an undocumented attribute such as ``int8_calibrator`` on 11.x raises ``AttributeError``
exactly like the removed property does), and it enforces the documented behaviour that matters to a
Q/DQ / FP16 ONNX build, failures included:

* 8.6: the ONNX parser needs an ``EXPLICIT_BATCH`` network; a Q/DQ graph needs ``BuilderFlag.INT8``
  ("to enable the use of any quantized operations, the INT8 flag must be set", TensorRT 8.6 developer
  guide, "Working with INT8"), and the layers between Q/DQ pairs fall back to FP32 unless ``FP16`` is
  set too (``kINT8``: "with FP32 fallback with FP16 fallback if kFP16 also specified", NvInfer.h
  v8.6.1); the plan bytes name that fallback.  No ``STRONGLY_TYPED`` flag.
* 10.x: ``STRONGLY_TYPED`` exists, ``EXPLICIT_BATCH`` is deprecated; precision flags are refused on a
  strongly typed network ("Precision-control build flags are not required and should not be
  specified", TensorRT developer guide, "Explicit Quantization"; the fake takes the strict reading).
* 11.x: no ``EXPLICIT_BATCH``; ``STRONGLY_TYPED`` deprecated (ignored); no ``BuilderFlag.FP16/INT8/
  BF16/FP8/INT4/FP4/OBEY_/PREFER_PRECISION_CONSTRAINTS``, no ``int8_calibrator``,
  ``set/get_calibration_profile``, ``quantization_flags``, no ``platform_has_fast_fp16/int8``.
  (``DIRECT_IO`` is still bound in 11.x, deprecated since 10.7: pyCore.cpp v11.1, lean 11.4.)
* timing cache: ``set_timing_cache(cache, ignore_mismatch)`` returns False when the cache's
  verification header (CUDA device properties, TensorRT version) differs from this builder's and
  ``ignore_mismatch`` is False, and the cache is then not attached; ``get_timing_cache()`` returns
  None when no cache is set (pyCoreDoc.h v8.6.1, v10.0.1, v10.16, v11.0).  What TensorRT does with an
  unreadable blob is not documented; the fake gives it no valid header, so it fails verification.
* ``build_serialized_network`` returns None on failure (the binding returns the C++ nullptr as None;
  NVIDIA's samples test ``engine_bytes is None``, samples/python/detectron2/build_engine.py v11.0).
* ``OnnxParser.parse`` returns False on failure and ``get_error(i)`` returns a ``ParserError`` whose
  ``str()`` is "In node N with name: ... and operator: ... (func): CODE: desc"
  (pyOnnxDoc.h; ``parserErrorStr`` in python/src/parsers/pyOnnx.cpp v10.16).

Every call the builder makes is appended to ``module.calls`` for the tests to inspect.
"""
from __future__ import annotations

import enum
import types

import numpy as np

# ----------------------------------------------------------------------------------- enum tables

#: BuilderFlag, TensorRT 8.6.1 (include/NvInfer.h; STRICT_TYPES and ENABLE_TACTIC_HEURISTIC are deprecated)
BUILDER_FLAG_86 = {
    "FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "STRICT_TYPES": 4, "REFIT": 5, "DISABLE_TIMING_CACHE": 6,
    "TF32": 7, "SPARSE_WEIGHTS": 8, "SAFETY_SCOPE": 9, "OBEY_PRECISION_CONSTRAINTS": 10,
    "PREFER_PRECISION_CONSTRAINTS": 11, "DIRECT_IO": 12, "REJECT_EMPTY_ALGORITHMS": 13, "ENABLE_TACTIC_HEURISTIC": 14,
    "VERSION_COMPATIBLE": 15, "EXCLUDE_LEAN_RUNTIME": 16, "FP8": 17,
}
#: BuilderFlag, TensorRT 10.0 (NvInfer.h v10.0.1; WEIGHTLESS is a deprecated alias of STRIP_PLAN) ...
BUILDER_FLAG_10 = {
    "FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6,
    "SPARSE_WEIGHTS": 7, "SAFETY_SCOPE": 8, "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10,
    "DIRECT_IO": 11, "REJECT_EMPTY_ALGORITHMS": 12, "VERSION_COMPATIBLE": 13, "EXCLUDE_LEAN_RUNTIME": 14, "FP8": 15,
    "ERROR_ON_TIMING_CACHE_MISS": 16, "BF16": 17, "DISABLE_COMPILATION_CACHE": 18, "STRIP_PLAN": 19,
    "WEIGHTLESS": 19, "REFIT_IDENTICAL": 20, "WEIGHT_STREAMING": 21,
}
#: ... and the members each later 10.x minor added (pyCore.cpp at v10.1.0, v10.2.0, v10.6.0, v10.8.0, v10.12.0)
BUILDER_FLAG_10_ADDED = {
    1: {"INT4": 22}, 2: {"REFIT_INDIVIDUAL": 23}, 6: {"STRICT_NANS": 24, "MONITOR_MEMORY": 25},
    8: {"FP4": 26, "EDITABLE_TIMING_CACHE": 27}, 12: {"DISTRIBUTIVE_INDEPENDENCE": 28},
}
#: BuilderFlag, TensorRT 11.x: renumbered, precision flags gone (NvInfer.h v11.1 == tensorrt_lean_bindings 11.4)
BUILDER_FLAG_11 = {
    "DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "EDITABLE_TIMING_CACHE": 26, "TF32": 6,
    "SPARSE_WEIGHTS": 7, "SAFETY_SCOPE": 8, "DIRECT_IO": 11, "VERSION_COMPATIBLE": 12, "EXCLUDE_LEAN_RUNTIME": 13,
    "ERROR_ON_TIMING_CACHE_MISS": 15, "DISABLE_COMPILATION_CACHE": 17, "STRIP_PLAN": 18, "REFIT_IDENTICAL": 19,
    "WEIGHT_STREAMING": 20, "REFIT_INDIVIDUAL": 22, "STRICT_NANS": 23, "MONITOR_MEMORY": 24,
    "DISTRIBUTIVE_INDEPENDENCE": 27,
}
#: DataType (NvInferRuntimeBase.h): 8.6 has FLOAT..FP8; 10.0 adds BF16/INT64/INT4, 10.8 FP4, 10.12 E8M0
DATA_TYPE_86 = {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5, "FP8": 6}
DATA_TYPE_10 = {**DATA_TYPE_86, "BF16": 7, "INT64": 8, "INT4": 9}
DATA_TYPE_10_ADDED = {8: {"FP4": 10}, 12: {"E8M0": 11}}
DATA_TYPE_11 = {**DATA_TYPE_10, "FP4": 10, "E8M0": 11}
#: MemoryPoolType (NvInfer.h): 10.0 adds TACTIC_SHARED_MEMORY
MEMORY_POOL_86 = {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1, "DLA_LOCAL_DRAM": 2, "DLA_GLOBAL_DRAM": 3, "TACTIC_DRAM": 4}
MEMORY_POOL_10 = {**MEMORY_POOL_86, "TACTIC_SHARED_MEMORY": 5}
TENSOR_IO_MODE = {"NONE": 0, "INPUT": 1, "OUTPUT": 2}  # unchanged 8.6 .. 11.x
#: HardwareCompatibilityLevel: SAME_COMPUTE_CAPABILITY arrived in 10.9 (pyCore.cpp v10.8.0 vs v10.9.0)
HW_COMPAT_86 = {"NONE": 0, "AMPERE_PLUS": 1}
HW_COMPAT_10_9 = {**HW_COMPAT_86, "SAME_COMPUTE_CAPABILITY": 2}

#: The fake 11.x enums that the lean runtime also binds; each must equal tensorrt_lean_bindings 11.4.
ENUMS_11 = {
    "BuilderFlag": BUILDER_FLAG_11, "DataType": DATA_TYPE_11, "MemoryPoolType": MEMORY_POOL_10,
    "TensorIOMode": TENSOR_IO_MODE, "HardwareCompatibilityLevel": HW_COMPAT_10_9,
}
#: 11.x enums of the full builder only: the lean runtime has no Builder, so it does not bind them.
#: NetworkDefinitionCreationFlag: "kSTRONGLY_TYPED TRT_DEPRECATED_ENUM = 0, kPREFER_JIT_PYTHON_PLUGINS = 1,
#: kPREFER_AOT_PYTHON_PLUGINS = 2" (include/NvInfer.h v11.0 and v11.1; bound in python/src/infer/pyCore.cpp
#: v11.1; the TensorRT 11 Python API reference, infer/Core/Builder.html, names the same three members).
BUILDER_ONLY_ENUMS_11 = {
    "NetworkDefinitionCreationFlag": {"STRONGLY_TYPED": 0, "PREFER_JIT_PYTHON_PLUGINS": 1, "PREFER_AOT_PYTHON_PLUGINS": 2},
}

_PRECISION_FLAGS = {"FP16", "INT8", "BF16", "FP8", "INT4", "FP4"}
#: the parser's ErrorCode names (python/src/parsers/pyOnnx.cpp)
_PARSER_CODES = ("SUCCESS", "INTERNAL_ERROR", "MEM_ALLOC_FAILED", "MODEL_DESERIALIZE_FAILED", "INVALID_VALUE",
                 "INVALID_GRAPH", "INVALID_NODE", "UNSUPPORTED_GRAPH", "UNSUPPORTED_NODE")


def _with_minor(base: dict, added: dict, minor: int) -> dict:
    table = dict(base)
    for since, members in added.items():
        if minor >= since:
            table.update(members)
    return table


def enum_tables(version: str) -> dict[str, dict[str, int]]:
    """Member -> value of every enum the fake binds for TensorRT ``version``."""
    major, minor = (int(p) for p in version.split(".")[:2])
    if major == 8:
        return {"BuilderFlag": BUILDER_FLAG_86, "DataType": DATA_TYPE_86, "MemoryPoolType": MEMORY_POOL_86,
                "TensorIOMode": TENSOR_IO_MODE, "HardwareCompatibilityLevel": HW_COMPAT_86,
                "NetworkDefinitionCreationFlag": {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1}}
    if major == 10:
        ndcf = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
        if minor >= 9:
            ndcf.update(PREFER_JIT_PYTHON_PLUGINS=2, PREFER_AOT_PYTHON_PLUGINS=3)
        return {"BuilderFlag": _with_minor(BUILDER_FLAG_10, BUILDER_FLAG_10_ADDED, minor),
                "DataType": _with_minor(DATA_TYPE_10, DATA_TYPE_10_ADDED, minor), "MemoryPoolType": MEMORY_POOL_10,
                "TensorIOMode": TENSOR_IO_MODE, "HardwareCompatibilityLevel": HW_COMPAT_10_9 if minor >= 9 else HW_COMPAT_86,
                "NetworkDefinitionCreationFlag": ndcf}
    if major == 11:
        return {**ENUMS_11, **BUILDER_ONLY_ENUMS_11}
    raise ValueError(f"no fake for TensorRT {version}")


def fake_timing_cache(trt, device: str | None = None, timings: bytes = b"") -> bytes:
    """A serialized timing cache as ``trt``'s fake would write it, made on ``device`` (default: trt's)."""
    return b"FAKETC|" + (device or trt.device_key).encode() + b"\n" + timings


def make_fake_tensorrt(version: str, device: str = "fake GPU sm_87") -> types.ModuleType:
    """A fake ``tensorrt`` module of ``version`` building on ``device`` (what a timing cache is checked against)."""
    major = int(version.split(".")[0])
    line = "8.6" if major == 8 else ("10.x" if major == 10 else "11.x")
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.device_key = f"{device} / TensorRT {version}"
    trt.calls = []
    calls = trt.calls

    tables = enum_tables(version)
    for name, members in tables.items():
        setattr(trt, name, enum.IntEnum(name, members))
    ndcf, builder_flag, dtype = trt.NetworkDefinitionCreationFlag, trt.BuilderFlag, trt.DataType

    # tensorrt.nptype (python/packaging/bindings_wheel/tensorrt/__init__.py v11.1): fp8/bf16/int4 have
    # no numpy equivalent and raise TypeError
    _np = {dtype.FLOAT: np.float32, dtype.HALF: np.float16, dtype.INT8: np.int8, dtype.INT32: np.int32,
           dtype.BOOL: np.bool_, dtype.UINT8: np.uint8}
    if "INT64" in dtype.__members__:
        _np[dtype.INT64] = np.int64

    def nptype(trt_type):
        if trt_type in _np:
            return _np[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    trt.nptype = nptype

    class Logger:
        __slots__ = ("min_severity",)
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

        def __init__(self, min_severity=2):
            self.min_severity = min_severity

    trt.Logger = Logger

    class ITensor:
        __slots__ = ("name", "dtype", "shape")

        def __init__(self, name, dtype, shape):
            self.name, self.dtype, self.shape = name, dtype, tuple(shape)

    class INetworkDefinition:
        __slots__ = ("flags", "inputs", "outputs", "has_qdq", "has_fp16")

        def __init__(self, flags):
            self.flags = flags
            self.inputs, self.outputs = [], []
            self.has_qdq = self.has_fp16 = False

        @property
        def num_inputs(self):
            return len(self.inputs)

        @property
        def num_outputs(self):
            return len(self.outputs)

        def get_input(self, i):
            return self.inputs[i]

        def get_output(self, i):
            return self.outputs[i]

    class ParserError:
        __slots__ = ("_code", "_desc", "_node", "_node_name", "_node_operator", "_func")

        def __init__(self, code, desc, node=-1, node_name="", node_operator="", func="parse"):
            self._code, self._desc, self._node = code, desc, node
            self._node_name, self._node_operator, self._func = node_name, node_operator, func

        def code(self):
            return self._code

        def desc(self):
            return self._desc

        def node(self):
            return self._node

        def node_name(self):
            return self._node_name

        def node_operator(self):
            return self._node_operator

        def func(self):
            return self._func

        def __str__(self):
            info = f"({self._func}): {self._code}: {self._desc}"
            if self._code == "MODEL_DESERIALIZE_FAILED":
                return info
            return f"In node {self._node} with name: {self._node_name} and operator: {self._node_operator} {info}"

        __repr__ = __str__

    trt.ParserError = ParserError

    class OnnxParser:
        __slots__ = ("network", "logger", "errors")

        def __init__(self, network, logger):
            self.network, self.logger, self.errors = network, logger, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, index):
            return self.errors[index]

        def clear_errors(self):
            self.errors.clear()

        def parse(self, model, path=None):
            import onnx

            calls.append(("parse", len(model)))
            if line == "8.6" and not self.network.flags & (1 << int(ndcf.EXPLICIT_BATCH)):
                self.errors.append(ParserError("INVALID_GRAPH", "network must be created with the explicit batch flag"))
                return False
            try:
                proto = onnx.load_from_string(bytes(model))
            except Exception as exc:  # noqa: BLE001 - mirror the parser's error list
                self.errors.append(ParserError("MODEL_DESERIALIZE_FAILED", f"failed to parse ONNX model ({exc})"))
                return False
            if line == "8.6":
                # 8.6's parser supports opsets up to 17 (onnx-tensorrt tag 8.6-GA docs/operators.md)
                # and reads every Q/DQ scale as float32 (QuantDequantLinearHelper in
                # builtin_op_importers.cpp, tag 8.6-GA); FP16 scales arrived with the 9.0 parser.
                opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
                half = {t.name for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
                fp16_scale = [n.name for n in proto.graph.node
                              if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] in half]
                if fp16_scale:
                    self.errors.append(ParserError("UNSUPPORTED_NODE", f"{fp16_scale[0]}: scale must be FLOAT"))
                    return False
                if opset > 17:
                    self.errors.append(ParserError("UNSUPPORTED_GRAPH", f"opset {opset} is above 17"))
                    return False
            elem = {onnx.TensorProto.FLOAT: dtype.FLOAT, onnx.TensorProto.FLOAT16: dtype.HALF,
                    onnx.TensorProto.UINT8: dtype.UINT8}
            init_names = {t.name for t in proto.graph.initializer}
            for vi, dest in ((proto.graph.input, self.network.inputs), (proto.graph.output, self.network.outputs)):
                for v in vi:
                    if v.name in init_names:
                        continue
                    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
                    dest.append(ITensor(v.name, elem[v.type.tensor_type.elem_type], dims))
            self.network.has_qdq = any(n.op_type == "QuantizeLinear" for n in proto.graph.node)
            self.network.has_fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
            return True

    trt.OnnxParser = OnnxParser

    class IOptimizationProfile:
        __slots__ = ("shapes",)

        def __init__(self):
            self.shapes = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's parameter names
            calls.append(("set_shape", input, tuple(min), tuple(opt), tuple(max)))
            self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class ITimingCache:
        """Header (device + version it was made on, None when unreadable) and the timings."""

        __slots__ = ("header", "timings")

        def __init__(self, blob):
            blob = bytes(blob)
            if not blob:  # b"" makes a new cache for this device (create_timing_cache docstring)
                self.header, self.timings = trt.device_key, b""
            elif blob.startswith(b"FAKETC|") and b"\n" in blob:
                head, self.timings = blob[len(b"FAKETC|"):].split(b"\n", 1)
                self.header = head.decode()
            else:
                self.header, self.timings = None, b""

        def serialize(self):
            return fake_timing_cache(trt, self.header, self.timings)

    config_slots = ["flags", "profiles", "pools", "hardware_compatibility_level", "_timing_cache",
                    "builder_optimization_level", "max_aux_streams", "profiling_verbosity"]
    if line != "11.x":
        config_slots += ["int8_calibrator", "quantization_flags"]

    class IBuilderConfig:
        __slots__ = tuple(config_slots)

        def __init__(self):
            self.flags = set()
            self.profiles = []
            self.pools = {}
            self.hardware_compatibility_level = trt.HardwareCompatibilityLevel.NONE
            self._timing_cache = None

        def set_memory_pool_limit(self, pool, pool_size):
            calls.append(("set_memory_pool_limit", pool, pool_size))
            self.pools[pool] = pool_size

        def set_flag(self, flag):
            if not isinstance(flag, builder_flag):
                raise TypeError(f"set_flag takes a BuilderFlag, got {flag!r}")
            calls.append(("set_flag", flag.name))
            self.flags.add(flag.name)

        def get_flag(self, flag):
            return flag.name in self.flags

        def add_optimization_profile(self, profile):
            calls.append(("add_optimization_profile", dict(profile.shapes)))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            calls.append(("create_timing_cache", bytes(serialized_timing_cache)))
            return ITimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache, ignore_mismatch):
            # False, and nothing attached, when the verification header does not match this device
            # (pyCoreDoc.h set_timing_cache: "A failure will be reported if the CUDA device property
            # in the provided cache is different from current environment").
            calls.append(("set_timing_cache", ignore_mismatch))
            if cache.header != trt.device_key and not ignore_mismatch:
                return False
            self._timing_cache = cache
            return True

        def get_timing_cache(self):
            # "or None if no timing cache is set" (pyCoreDoc.h get_timing_cache)
            return self._timing_cache

    builder_methods = {}

    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags=0):
        calls.append(("create_network", flags))
        known = 0
        for member in ndcf:
            known |= 1 << int(member)
        if flags & ~known:
            raise ValueError(f"unknown network creation flags {flags}")
        return INetworkDefinition(flags)

    def create_builder_config(self):
        return IBuilderConfig()

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        calls.append(("build_serialized_network", sorted(config.flags)))
        strongly_typed = line == "11.x" or ("STRONGLY_TYPED" in ndcf.__members__
                                             and network.flags & (1 << int(ndcf.STRONGLY_TYPED)))
        if strongly_typed and config.flags & _PRECISION_FLAGS:
            return None  # precision flags have no place in a strongly typed build
        if line == "8.6" and network.has_qdq and "INT8" not in config.flags:
            return None  # 8.6: explicit quantization needs BuilderFlag.INT8
        if any(-1 in t.shape[1:] for t in network.inputs) or not config.profiles:
            return None
        if config._timing_cache is not None:  # the builder records the tactics it timed
            config._timing_cache.timings += f"[timings {line}]".encode()
        plan = b"FAKEPLAN:" + line.encode() + b":" + ",".join(sorted(config.flags)).encode()
        if line == "8.6" and network.has_qdq:
            # weak typing: layers between Q/DQ pairs may use FP16 only when FP16 is enabled too
            plan += b":between-qdq=" + (b"fp16" if "FP16" in config.flags else b"fp32")
        return plan

    builder_methods.update(__init__=__init__, create_network=create_network,
                           create_builder_config=create_builder_config,
                           create_optimization_profile=create_optimization_profile,
                           build_serialized_network=build_serialized_network)
    slots = ["logger", "max_threads"]
    if line != "11.x":
        builder_methods["platform_has_fast_fp16"] = property(lambda self: True)
        builder_methods["platform_has_fast_int8"] = property(lambda self: True)
        builder_methods["platform_has_tf32"] = property(lambda self: True)
    builder_methods["__slots__"] = tuple(slots)
    trt.Builder = type("Builder", (), builder_methods)

    class Runtime:  # present in every line; unused by the builder
        __slots__ = ("logger",)

        def __init__(self, logger):
            self.logger = logger

    trt.Runtime = Runtime
    return trt
