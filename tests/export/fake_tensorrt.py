"""CONTRACT FAKES: ``tensorrt`` modules with exactly the documented build API of 8.6, 10.x and 11.x.

TensorRT cannot be installed where corese-edge is developed, so the builder is checked against
these stand-ins.  Each fake carries only the names NVIDIA documents for its line (classes use
``__slots__``, so assigning an undocumented attribute such as ``int8_calibrator`` on 11.x raises
``AttributeError`` exactly like the removed property does), and it enforces the documented rules
that matter to a Q/DQ / FP16 ONNX build:

* 8.6: the ONNX parser needs an ``EXPLICIT_BATCH`` network; a Q/DQ graph needs ``BuilderFlag.INT8``;
  there is no ``STRONGLY_TYPED`` flag.
  https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-861/api/python_api/infer/Core/Builder.html
* 10.x: ``STRONGLY_TYPED`` exists, ``EXPLICIT_BATCH`` is deprecated; precision flags are not
  combined with strong typing.
  https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-1030/api/python_api/infer/Core/Builder.html
* 11.x: no ``EXPLICIT_BATCH``; ``STRONGLY_TYPED`` deprecated (ignored); no ``BuilderFlag.FP16/INT8/
  BF16/FP8/INT4/FP4/OBEY_/PREFER_PRECISION_CONSTRAINTS/DIRECT_IO``, no ``int8_calibrator``,
  ``set/get_calibration_profile``, ``quantization_flags``, no ``platform_has_fast_fp16/int8``.
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html

Every call the builder makes is appended to ``module.calls`` for the tests to inspect.
"""
from __future__ import annotations

import enum
import types

import numpy as np

_FLAGS_86 = [
    "FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS",
    "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
    "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8",
]
_FLAGS_10 = _FLAGS_86 + [
    "BF16", "ERROR_ON_TIMING_CACHE_MISS", "DISABLE_COMPILATION_CACHE", "WEIGHTLESS", "STRIP_PLAN",
    "REFIT_IDENTICAL", "WEIGHT_STREAMING", "INT4", "REFIT_INDIVIDUAL", "STRICT_NANS", "MONITOR_MEMORY", "FP4",
]
_REMOVED_IN_11 = {"FP16", "INT8", "BF16", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                  "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO"}
_FLAGS_11 = [f for f in _FLAGS_10 if f not in _REMOVED_IN_11]
_PRECISION_FLAGS = {"FP16", "INT8", "BF16", "FP8", "INT4", "FP4"}


def make_fake_tensorrt(version: str) -> types.ModuleType:
    major = int(version.split(".")[0])
    line = "8.6" if major == 8 else ("10.x" if major == 10 else "11.x")
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.calls = []
    calls = trt.calls

    if line == "8.6":
        ndcf = enum.IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "EXPLICIT_PRECISION": 1})
    elif line == "10.x":
        ndcf = enum.IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    else:
        ndcf = enum.IntEnum("NetworkDefinitionCreationFlag",
                            {"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 1, "PREFER_JIT_PYTHON_PLUGINS": 2})
    flags = {"8.6": _FLAGS_86, "10.x": _FLAGS_10, "11.x": _FLAGS_11}[line]
    builder_flag = enum.IntEnum("BuilderFlag", {name: i for i, name in enumerate(flags)})
    trt.NetworkDefinitionCreationFlag = ndcf
    trt.BuilderFlag = builder_flag
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1,
                                                         "DLA_LOCAL_DRAM": 2, "DLA_GLOBAL_DRAM": 3})
    hcl = {"NONE": 0, "AMPERE_PLUS": 1}
    if line != "8.6":
        hcl["SAME_COMPUTE_CAPABILITY"] = 2
    trt.HardwareCompatibilityLevel = enum.IntEnum("HardwareCompatibilityLevel", hcl)
    trt.DataType = enum.IntEnum("DataType", {"FLOAT": 0, "HALF": 1, "INT8": 2, "INT32": 3, "BOOL": 4, "UINT8": 5})
    _np = {trt.DataType.FLOAT: np.float32, trt.DataType.HALF: np.float16, trt.DataType.INT8: np.int8,
           trt.DataType.INT32: np.int32, trt.DataType.BOOL: np.bool_, trt.DataType.UINT8: np.uint8}

    def nptype(dtype):
        return _np[dtype]

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

    class OnnxParser:
        __slots__ = ("network", "logger", "errors")

        def __init__(self, network, logger):
            self.network, self.logger, self.errors = network, logger, []

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

        def parse(self, model, path=None):
            import onnx

            calls.append(("parse", len(model)))
            if line == "8.6" and not self.network.flags & (1 << int(ndcf.EXPLICIT_BATCH)):
                self.errors.append("network must be created with the explicit batch flag")
                return False
            try:
                proto = onnx.load_from_string(bytes(model))
            except Exception as exc:  # noqa: BLE001 - mirror the parser's error list
                self.errors.append(f"cannot parse ONNX: {exc}")
                return False
            elem = {onnx.TensorProto.FLOAT: trt.DataType.FLOAT, onnx.TensorProto.FLOAT16: trt.DataType.HALF,
                    onnx.TensorProto.UINT8: trt.DataType.UINT8}
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
        __slots__ = ("blob",)

        def __init__(self, blob):
            self.blob = bytes(blob)

        def serialize(self):
            return self.blob + b"+fake-timings"

    config_slots = ["flags", "profiles", "pools", "hardware_compatibility_level", "timing_cache",
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
            self.timing_cache = None

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
            calls.append(("set_timing_cache", ignore_mismatch))
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

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
        return b"FAKEPLAN:" + line.encode() + b":" + ",".join(sorted(config.flags)).encode()

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
