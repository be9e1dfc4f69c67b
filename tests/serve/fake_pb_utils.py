"""CONTRACT FAKE: ``triton_python_backend_utils`` as Triton's python_backend documents it, plus a tiny
in-process "Triton" that loads a model repository written by ``corese-edge package --triton``.

Triton cannot run here, so the Python-backend ``model.py`` files are tested against this module.
It encodes the documented behaviour only (triton-inference-server/python_backend: README sections
"Usage", "Error Handling", "Business Logic Scripting", "Adding Custom Parameters in the Model
Configuration"; ``src/pb_stub.cc`` bindings; ``src/pb_tensor.cc``;
``src/resources/triton_python_backend_utils.py``):

* ``Tensor(name, array)``: an empty name raises; a dtype with no Triton type raises; a
  non-contiguous array is made contiguous; BYTES (``np.object_`` / ``np.bytes_``) are serialized
  with 4-byte little-endian lengths and ``as_numpy()`` gives ``np.object_`` of ``bytes`` back;
* ``InferenceRequest(inputs=, requested_output_names=, model_name=)`` (all required, ``None``
  refused), ``.exec()`` returns an ``InferenceResponse`` whose ``has_error()`` / ``error().message()``
  carry the served model's failure (an unknown model is an error response, not an exception);
* ``InferenceResponse(output_tensors=[], error=None)``, ``TritonError(message, code=INTERNAL)``
  with the documented codes, ``TritonModelException``;
* ``get_input_tensor_by_name`` / ``get_output_tensor_by_name`` return ``None`` when absent;
* ``execute`` must return one response per request, never ``None`` (the server checks it).

:class:`FakeTriton` stands in for the server: it parses each ``config.pbtxt`` with tritonclient's
``ModelConfig``, hands a Python model the documented ``initialize(args)`` keys (``model_config`` as
JSON with ``parameters`` as ``{key: {"string_value": ...}}``), checks requests against the config
as Triton does before a model sees them (names, dtypes, dims, ``max_batch_size``), and serves an
``onnxruntime_onnx`` / ``openvino`` model with corese-edge's runner on ``1/model.*``.
"""
from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

MODULE_NAME = "triton_python_backend_utils"

_NUMPY_TO_TRITON = [(np.bool_, "BOOL"), (np.uint8, "UINT8"), (np.uint16, "UINT16"), (np.uint32, "UINT32"),
                    (np.uint64, "UINT64"), (np.int8, "INT8"), (np.int16, "INT16"), (np.int32, "INT32"),
                    (np.int64, "INT64"), (np.float16, "FP16"), (np.float32, "FP32"), (np.float64, "FP64")]
_CONFIG_TO_NUMPY = {"TYPE_" + t: n for n, t in _NUMPY_TO_TRITON} | {"TYPE_STRING": np.object_}


class TritonModelException(Exception):
    pass


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 1) -> None:
        if message is None or code is None:
            raise TypeError("TritonError(message, code): neither may be None")
        self._message, self._code = str(message), int(code)

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


def _triton_dtype(dtype: np.dtype) -> str | None:
    if dtype == np.object_ or dtype.type == np.bytes_:
        return "BYTES"
    for numpy_type, name in _NUMPY_TO_TRITON:
        if dtype == numpy_type:
            return name
    return None


def serialize_byte_tensor(array: np.ndarray) -> bytes:
    out = []
    for obj in array.reshape(-1):
        item = obj if isinstance(obj, bytes) else str(obj).encode("utf-8")
        out.append(struct.pack("<I", len(item)) + item)
    return b"".join(out)


def deserialize_bytes_tensor(data: bytes) -> np.ndarray:
    items, offset = [], 0
    while offset < len(data):
        (n,) = struct.unpack_from("<I", data, offset)
        offset += 4
        items.append(data[offset:offset + n])
        offset += n
    return np.array(items, dtype=np.object_)


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        if name == "":
            raise TritonModelException("Tensor name cannot be an empty string.")
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Tensor({name!r}, ...) takes a numpy array, got {type(array).__name__}")
        dtype = _triton_dtype(array.dtype)
        if dtype is None:
            raise TritonModelException(f"Tensor {name!r}: numpy dtype {array.dtype} has no Triton data type")
        self._name, self._dtype, self._shape = name, dtype, tuple(array.shape)
        if dtype == "BYTES":  # what crosses shared memory is the serialized form
            self._bytes = serialize_byte_tensor(np.ascontiguousarray(array))
            self._array = None
        else:
            self._array = np.ascontiguousarray(array).copy()

    def name(self) -> str:
        return self._name

    def triton_dtype(self) -> str:
        return self._dtype

    def shape(self) -> list[int]:
        return list(self._shape)

    def as_numpy(self) -> np.ndarray:
        if self._dtype == "BYTES":
            return deserialize_bytes_tensor(self._bytes).reshape(self._shape)
        return self._array

    def is_cpu(self) -> bool:
        return True


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor] | None = None, error: TritonError | None = None,
                 parameters: dict | None = None) -> None:
        self._outputs = list(output_tensors or [])
        self._error = error
        if any(not isinstance(t, Tensor) for t in self._outputs):
            raise TypeError("InferenceResponse output_tensors must be pb_utils.Tensor objects")

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class InferenceRequest:
    #: the FakeTriton that BLS requests go to (set by FakeTriton)
    server: "FakeTriton | None" = None

    def __init__(self, *, inputs: list[Tensor], requested_output_names: list[str], model_name: str,
                 request_id: str = "", correlation_id: int = 0, model_version: int = -1, flags: int = 0,
                 timeout: int = 0, preferred_memory: Any = None, trace: Any = None, parameters: Any = None) -> None:
        for what, value in (("inputs", inputs), ("requested_output_names", requested_output_names), ("model_name", model_name)):
            if value is None:
                raise TypeError(f"InferenceRequest: {what} may not be None")
        self._inputs = list(inputs)
        self._outputs = list(requested_output_names)
        self.model_name = model_name

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._outputs

    def exec(self, decoupled: bool = False) -> InferenceResponse:
        if self.server is None:
            raise TritonModelException("BLS is only available inside execute()")
        return self.server.infer(self.model_name, self._inputs, self._outputs)


def get_input_tensor_by_name(request, name):
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response, name):
    return next((t for t in response.output_tensors() if t.name() == name), None)


def triton_string_to_numpy(name: str):
    return _CONFIG_TO_NUMPY[name]


def install() -> ModuleType:
    """Put this module into ``sys.modules`` as ``triton_python_backend_utils``."""
    module = sys.modules[__name__]
    sys.modules[MODULE_NAME] = module
    return module


# --------------------------------------------------------------------------- the stand-in server
def parse_config(path: Path):
    """``config.pbtxt`` -> tritonclient ``ModelConfig`` (Triton's own schema)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def config_json(config) -> str:
    """The ``model_config`` JSON a Python model's ``initialize`` gets (Triton writes int64 as numbers)."""
    from google.protobuf.json_format import MessageToDict

    d = MessageToDict(config, preserving_proto_field_name=True)

    def ints(obj):
        if isinstance(obj, dict):
            return {k: ([int(v) for v in val] if k == "dims" else ints(val)) for k, val in obj.items()}
        if isinstance(obj, list):
            return [ints(v) for v in obj]
        return obj

    return json.dumps(ints(d))


class FakeTriton:
    """Loads ``repository``'s models (Python models through their ``model.py``) and answers requests."""

    def __init__(self, repository: Path) -> None:
        install()
        self.repository = Path(repository)
        self.configs: dict[str, Any] = {}
        self.models: dict[str, Any] = {}
        self.execute_calls: dict[str, list[int]] = {}
        InferenceRequest.server = self
        for cfg_path in sorted(self.repository.glob("*/config.pbtxt")):
            config = parse_config(cfg_path)
            self.configs[config.name] = config
            self.models[config.name] = self._load(cfg_path.parent, config)

    def _load(self, folder: Path, config):
        if config.backend == "python":
            spec = importlib.util.spec_from_file_location(f"fake_triton_{config.name}", folder / "1" / "model.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            model = module.TritonPythonModel()
            kind = "GPU" if config.instance_group and config.instance_group[0].kind == 1 else "CPU"
            model.initialize({"model_config": config_json(config), "model_instance_kind": kind,
                              "model_instance_device_id": "0", "model_repository": str(folder),
                              "model_version": "1", "model_name": config.name})
            return model
        from corese_edge.runtime.artifacts import open_runner

        name = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}.get(config.platform, "model.xml")
        return open_runner(folder / "1" / name).activate()

    def _check(self, config, inputs: list[Tensor]) -> str | None:
        """Triton's own request checks, before a model sees the request."""
        declared = {i.name: i for i in config.input}
        got = {t.name(): t for t in inputs}
        if set(got) != set(declared):
            return f"[request id: <id_unknown>] expected {len(declared)} inputs {sorted(declared)} but got {sorted(got)}"
        from tritonclient.grpc import model_config_pb2

        for name, spec in declared.items():
            t = got[name]
            want = model_config_pb2.DataType.Name(spec.data_type)[len("TYPE_"):]
            want = "BYTES" if want == "STRING" else want
            if t.triton_dtype() != want:
                return f"inference input '{name}' data-type is '{t.triton_dtype()}', but model '{config.name}' expects '{want}'"
            shape = t.shape()
            dims = list(spec.dims)
            if config.max_batch_size > 0:
                if not shape or shape[0] > config.max_batch_size:
                    return (f"inference request batch-size must be <= {config.max_batch_size} for '{config.name}'")
                shape = shape[1:]
            if len(shape) != len(dims) or any(d != -1 and d != s for d, s in zip(dims, shape)):
                return f"unexpected shape for input '{name}' for model '{config.name}'. Expected {dims}, got {t.shape()}"
        return None

    def infer(self, model_name: str, inputs: list[Tensor], outputs: list[str]) -> InferenceResponse:
        return self.infer_many(model_name, [(inputs, outputs)])[0]

    def infer_many(self, model_name: str, requests: list[tuple[list[Tensor], list[str]]]) -> list[InferenceResponse]:
        """Several requests in one ``execute`` call, as the dynamic batcher groups them."""
        config = self.configs.get(model_name)
        if config is None:
            return [InferenceResponse(error=TritonError(f"Request for unknown model: '{model_name}' is not found",
                                                        TritonError.NOT_FOUND)) for _ in requests]
        responses: list[InferenceResponse | None] = [None] * len(requests)
        passed = []
        for i, (inputs, outputs) in enumerate(requests):
            problem = self._check(config, inputs)
            if problem:
                responses[i] = InferenceResponse(error=TritonError(problem, TritonError.INVALID_ARG))
            else:
                passed.append(i)
        model = self.models[model_name]
        if passed and config.backend == "python":
            reqs = [InferenceRequest(inputs=requests[i][0], requested_output_names=requests[i][1], model_name=model_name)
                    for i in passed]
            got = model.execute(reqs)
            self.execute_calls.setdefault(model_name, []).append(len(reqs))
            if not isinstance(got, list) or len(got) != len(reqs) or any(not isinstance(r, InferenceResponse) for r in got):
                raise AssertionError(f"{model_name}.execute must return one InferenceResponse per request, got {got!r}")
            for i, r in zip(passed, got):
                wanted = set(requests[i][1])
                responses[i] = r if r.has_error() else InferenceResponse(
                    output_tensors=[t for t in r.output_tensors() if not wanted or t.name() in wanted])
        for i in passed if config.backend != "python" else ():
            feed = {t.name(): t.as_numpy() for t in requests[i][0]}
            try:
                out = model.infer(feed)
            except Exception as exc:  # the backend's own failure becomes an error response
                responses[i] = InferenceResponse(error=TritonError(str(exc), TritonError.INTERNAL))
                continue
            responses[i] = InferenceResponse(output_tensors=[Tensor(n, np.asarray(out[n])) for n in requests[i][1]])
        return responses

    def close(self) -> None:
        for name, model in self.models.items():
            if hasattr(model, "finalize"):
                model.finalize()
            else:
                model.close()
        InferenceRequest.server = None
