"""What a serving package needs to know about an artifact, read from the artifact itself.

Names, dtypes and shapes of its one input and one output, its batch profile (a plan's), its
precision, the files that belong to it, and the corese-edge metadata (class names and
preprocessing; docs/ARCHITECTURE.md, "Preprocessing travels with the model").  Each format is read
where its metadata lives: ONNX ``metadata_props``, the plan sidecar (:class:`PlanSidecar`), the
OpenVINO IR's rt_info.  Nothing here re-declares a number the artifact carries.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from corese_edge.errors import UserError, require
from corese_edge.metadata import ArtifactMetadata

#: The served input and output names (the ``--embed-preprocess`` form and a softmax output).
FRAMES = "frames"
PROBABILITIES = "probabilities"
LOGITS = "logits"


@dataclass(frozen=True)
class TensorFacts:
    """One tensor: numpy dtype name (``"uint8"``, ``"float32"``) and its dims after the batch."""

    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ArtifactFacts:
    """``kind``: ``"tensorrt"``, ``"onnx"`` or ``"openvino"``.  ``files``: every file the artifact
    consists of (a plan and its sidecar, an IR's ``.xml`` and ``.bin``), the artifact first.
    ``profile``: a plan's ``(min, opt, max)`` batch, ``None`` for a dynamic-batch graph."""

    path: Path
    kind: str
    metadata: ArtifactMetadata
    precision: str
    input: TensorFacts
    output: TensorFacts
    files: tuple[Path, ...]
    profile: tuple[int, int, int] | None = None

    @property
    def takes_frames(self) -> bool:
        """The graph takes uint8 NHWC frames (``--embed-preprocess``), not the normalised float input."""
        return self.input.dtype == "uint8"

    @property
    def num_classes(self) -> int:
        return len(self.metadata.class_names)


def read_artifact(path: str | os.PathLike) -> ArtifactFacts:
    """The :class:`ArtifactFacts` of an ``.onnx``, a ``.plan`` / ``.engine`` (with its sidecar) or an
    ``.xml`` (with its ``.bin``); anything else, or a file without corese-edge metadata, is one
    :class:`UserError` line."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".pt", ".pth")):
        raise UserError(f"{p}: package takes an exported artifact (.onnx, .plan, .xml), not a checkpoint; "
                        "run 'corese-edge export' first")
    if not p.is_file():
        raise UserError(f"artifact not found: {p}")
    if name.endswith((".plan", ".engine")):
        return _plan(p)
    if name.endswith(".onnx"):
        return _onnx(p)
    if name.endswith(".xml"):
        return _openvino(p)
    raise UserError(f"{p}: unknown artifact format; package takes .onnx, .plan (with its .plan.json) or .xml (with its .bin)")


def _check_item(p: Path, tensor: TensorFacts, facts: ArtifactMetadata) -> None:
    size = facts.preprocessing.size
    expected = (size, size, 3) if tensor.dtype == "uint8" else (3, size, size)
    if tensor.dims != expected:
        raise UserError(f"{p}: input {tensor.name!r} has dims {list(tensor.dims)} after the batch; a corese-edge "
                        f"model at {size} px takes {list(expected)} ({'uint8 frames' if tensor.dtype == 'uint8' else 'float32 NCHW'})")


def _plan(p: Path) -> ArtifactFacts:
    from corese_edge.runtime.trt import PlanSidecar, check_plan_file, sidecar_path

    sidecar = PlanSidecar.read(sidecar_path(p))
    check_plan_file(p, sidecar)  # a truncated or foreign plan must not be packaged
    meta = sidecar.metadata()
    prep = meta.preprocessing
    if sidecar.inputs:
        raw_in = sidecar.inputs[0]
        inp = TensorFacts(str(raw_in["name"]), str(raw_in["dtype"]), tuple(int(d) for d in raw_in["shape"][1:]))
    else:  # a sidecar that records no I/O: the export's names, by the preprocessing's layout
        inp = (TensorFacts(FRAMES, "uint8", (prep.size, prep.size, 3)) if prep.layout == "nhwc"
               else TensorFacts("input", "float32", (3, prep.size, prep.size)))
    if sidecar.outputs:
        raw_out = sidecar.outputs[0]
        out = TensorFacts(str(raw_out["name"]), str(raw_out["dtype"]), tuple(int(d) for d in raw_out["shape"][1:]))
    else:
        out = TensorFacts(LOGITS, "float32", (len(meta.class_names),))
    profile = None
    shapes = sidecar.profile.get(inp.name) if sidecar.profile else None
    if shapes:
        profile = (int(shapes["min"][0]), int(shapes["opt"][0]), int(shapes["max"][0]))
    else:
        raise UserError(f"{sidecar_path(p)} records no optimization profile for {inp.name!r}: "
                        "rebuild the engine with corese-edge build-engine")
    _check_item(p, inp, meta)
    return ArtifactFacts(p, "tensorrt", meta, sidecar.precision, inp, out, (p, sidecar_path(p)), profile)


def _onnx_tensor(value_info) -> TensorFacts:
    from onnx import helper

    t = value_info.type.tensor_type
    dims = tuple(int(d.dim_value) if d.dim_value else -1 for d in t.shape.dim[1:])
    return TensorFacts(value_info.name, helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims)


def _onnx(p: Path) -> ArtifactFacts:
    onnx = require("onnx", "export", "to package an .onnx artifact")
    from corese_edge.export.tensorrt import onnx_precision

    try:
        proto = onnx.load(os.fspath(p), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file
        raise UserError(f"{p}: not a readable ONNX model ({type(exc).__name__})") from None
    meta = ArtifactMetadata.from_props({q.key: q.value for q in proto.metadata_props}, source=str(p))
    graph = proto.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UserError(f"{p}: expected one input and one output, found {len(inputs)} and {len(graph.output)}")
    inp, out = _onnx_tensor(inputs[0]), _onnx_tensor(graph.output[0])
    _check_item(p, inp, meta)
    return ArtifactFacts(p, "onnx", meta, onnx_precision(proto), inp, out, (p,))


def _openvino(p: Path) -> ArtifactFacts:
    require("openvino", "openvino", "to package an OpenVINO IR")
    from corese_edge.metadata import read_rt_info
    from corese_edge.runtime.openvino import shared_core

    bin_path = p.with_suffix(".bin")
    if not bin_path.is_file():
        raise UserError(f"{p}: its weights {bin_path.name} are missing beside it; copy the .xml and .bin together")
    try:
        model = shared_core().read_model(os.fspath(p))
    except Exception as exc:
        raise UserError(f"{p}: OpenVINO cannot read the IR ({str(exc).strip().splitlines()[-1][:200]})") from None
    meta, build = read_rt_info(model, str(p))
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{p}: expected one input and one output, found {len(model.inputs)} and {len(model.outputs)}")

    def facts(port) -> TensorFacts:
        shape = port.get_partial_shape()
        dims = tuple(int(d.get_length()) if d.is_static else -1 for d in list(shape)[1:])
        return TensorFacts(port.get_any_name(), port.get_element_type().to_dtype().name, dims)

    inp, out = facts(model.inputs[0]), facts(model.outputs[0])
    _check_item(p, inp, meta)
    return ArtifactFacts(p, "openvino", meta, str(build.get("precision", "fp32")), inp, out, (p, bin_path))
