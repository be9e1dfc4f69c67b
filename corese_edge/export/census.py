"""Precision census: which precision each layer of an ONNX graph would run in on TensorRT.

Under strong typing (TensorRT 10/11, ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``) a layer's
precision comes from the graph alone: a layer runs in the type of its inputs, and a layer whose
inputs are dequantized INT8 runs in INT8 (TensorRT's Q/DQ fusion, "Explicit Quantization" in the
TensorRT developer guide).  The census applies those rules to the real graph after ONNX type and
shape inference (``onnx.shape_inference`` with data propagation), never to the flags an export
was given, so a graph that silently kept FP32 layers shows them.

Rules (one node at a time, after inference):

* **Not compute** (not counted): Q/DQ, casts, pure shape and data-movement ops
  (:data:`DATA_MOVEMENT_OPS`, for example Transpose, Reshape, Concat, Slice, Gather, Identity),
  control flow (:data:`CONTROL_FLOW_OPS`, whose subgraphs are not descended into), and any node
  with no floating-point input (shape arithmetic on int64 tensors).
* **INT8 (or another quantized type)**: a weighted op (:data:`WEIGHTED_OPS`) whose activation
  input *and* weight both come from a DequantizeLinear (looking through data movement such as a
  Transpose of the weight), or any other compute op whose floating-point inputs all come from
  DequantizeLinear and whose outputs all feed QuantizeLinear (the DQ -> op -> Q pattern).  The
  precision is named after the DQ's input type: ``int8`` (also for uint8), ``fp8``, ``int4``.
  A Cast between the DQ and the layer breaks the pattern (the layer then reads a float tensor,
  which is why ModelOpt folds ``DQ -> Cast`` into the DQ).
* **Otherwise** the node runs in the type of its first floating-point input: ``fp32``,
  ``fp16`` or ``bf16`` (``unknown`` only when inference could not type it).

FLOPs are per forward pass at ``batch`` (every symbolic or unset dimension of a graph input is
set to ``batch`` before inference; corese-edge graphs have only a dynamic batch): 2 per multiply-add for Conv, ConvTranspose, Gemm and MatMul (bias
additions are not counted, the usual convention), and :func:`flops_per_element` for every other
compute op.  A node whose shapes stay unknown after inference counts 0 FLOPs and is listed in
``unknown_flops``.
"""
from __future__ import annotations

import fnmatch
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from corese_edge.errors import UserError, require

log = logging.getLogger(__name__)

CENSUS_SCHEMA = "corese-edge/census/1"

#: ops that carry a weight and do the bulk of the FLOPs (2 per multiply-add)
WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})

#: quantize / dequantize: precision boundaries, not layers
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})

#: type conversions: TensorRT fuses them or runs them as cheap copies
CAST_OPS = frozenset({"Cast", "CastLike"})

#: ops that only compute shapes or move / select data without arithmetic on it
DATA_MOVEMENT_OPS = frozenset({
    "Shape", "Size", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Concat", "Split",
    "Slice", "Gather", "GatherElements", "GatherND", "ScatterElements", "ScatterND", "Expand", "Tile",
    "Pad", "Identity", "Constant", "ConstantOfShape", "Range", "DepthToSpace", "SpaceToDepth",
    "Dropout", "NonZero", "Compress", "EyeLike", "OneHot", "Optional", "OptionalGetElement",
    "OptionalHasElement", "SequenceConstruct", "SequenceAt", "SplitToSequence", "ConcatFromSequence",
})

#: control flow: their bodies are not counted (none appear in CoRes-SE graphs)
CONTROL_FLOW_OPS = frozenset({"If", "Loop", "Scan"})

NOT_COMPUTE_OPS = QDQ_OPS | CAST_OPS | DATA_MOVEMENT_OPS | CONTROL_FLOW_OPS

#: data movement a DQ output may pass through and still reach a weighted op as quantized data
#: (TensorRT propagates DQ forward through these when it fuses Q/DQ into a layer)
DQ_PASS_THROUGH = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})

#: FLOPs per output element for ops that are not weighted (documented approximations)
TRANSCENDENTAL_OPS = frozenset({
    "Erf", "Exp", "Log", "Tanh", "Sigmoid", "Softplus", "Softsign", "Gelu", "Mish", "Elu", "Selu",
    "Celu", "HardSigmoid", "HardSwish", "Sin", "Cos", "Tan", "Atan", "Asin", "Acos", "Sinh", "Cosh",
})
NORMALIZATION_FLOPS = {
    "LayerNormalization": 8,  # mean, subtract, square, mean, add eps, rsqrt, scale, shift
    "GroupNormalization": 8,
    "InstanceNormalization": 8,
    "LpNormalization": 3,
    "BatchNormalization": 2,  # inference: one scale, one shift per element
}
SOFTMAX_FLOPS = {"Softmax": 5, "LogSoftmax": 6, "Hardmax": 1}  # max, subtract, exp, sum, divide
#: reductions and global pools cost one FLOP per *input* element
INPUT_ELEMENT_OPS = frozenset({
    "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum", "ReduceMax",
    "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
    "ReduceSumSquare", "ArgMax", "ArgMin",
})
#: windowed pools cost one FLOP per window element per output element
WINDOW_POOL_OPS = frozenset({"MaxPool", "AveragePool", "LpPool"})

FLOAT_TYPES = {1: "fp32", 10: "fp16", 16: "bf16", 11: "fp64"}
#: DequantizeLinear input type -> the precision its consumers compute in when fused
QUANTIZED_TYPES = {3: "int8", 2: "int8", 17: "fp8", 18: "fp8", 19: "fp8", 20: "fp8", 22: "int4", 21: "int4"}
PRECISION_ORDER = ("int8", "int4", "fp8", "fp16", "bf16", "fp32", "fp64", "unknown")
#: always reported, even with zero nodes
BASE_PRECISIONS = ("int8", "fp16", "fp32")


def flops_per_element(op_type: str) -> int:
    """The FLOPs charged per output element to a non-weighted compute op.

    1 for plain arithmetic (Add, Mul, Relu, Div, Clip, ...), 4 for transcendental functions
    (:data:`TRANSCENDENTAL_OPS`: Erf, Sigmoid, Exp, ...), :data:`NORMALIZATION_FLOPS` and
    :data:`SOFTMAX_FLOPS` for those ops.  Reductions and pools are charged by input or window
    elements instead (see :func:`node_flops`).
    """
    if op_type in NORMALIZATION_FLOPS:
        return NORMALIZATION_FLOPS[op_type]
    if op_type in SOFTMAX_FLOPS:
        return SOFTMAX_FLOPS[op_type]
    if op_type in TRANSCENDENTAL_OPS:
        return 4
    return 1


# ------------------------------------------------------------------------------- the graph


def load_onnx(model):
    """A ModelProto from a ModelProto or a path; a bad path or non-ONNX file is a :class:`UserError`."""
    if hasattr(model, "graph"):
        return model
    onnx = require("onnx", "export", "reading ONNX graphs")
    path = Path(os.fspath(model))
    if not path.is_file():
        raise UserError(f"{path} not found")
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError / RuntimeWarning subclasses, all "not ONNX"
        raise UserError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    if not proto.graph.node:
        raise UserError(f"{path}: not an ONNX model (no graph nodes)")
    return proto


@dataclass
class TypedGraph:
    """A graph after inference: element types and (batch-resolved) shapes by tensor name.

    ``shapes`` values are tuples of ints with ``None`` for a dimension inference left unknown.
    ``constants`` maps initializer and Constant outputs to their TensorProto.
    """

    proto: Any
    types: dict[str, int]
    shapes: dict[str, tuple[int | None, ...]]
    constants: dict[str, Any]
    producer: dict[str, Any]
    consumers: dict[str, list[tuple[Any, int]]]
    inferred: bool = True

    def float_type(self, name: str) -> str | None:
        return FLOAT_TYPES.get(self.types.get(name, 0))


def typed_graph(model, batch: int = 1) -> TypedGraph:
    """Run ONNX type and shape inference (with data propagation) on a copy of ``model`` whose
    symbolic graph-input dimensions are set to ``batch``.  If inference fails, the types and
    shapes the model already declares are used (``inferred=False``)."""
    onnx = require("onnx", "export", "ONNX shape inference")
    from onnx import shape_inference

    if batch < 1:
        raise UserError(f"batch must be at least 1, not {batch}")
    proto = load_onnx(model)
    work = onnx.ModelProto()
    work.CopyFrom(proto)
    # Declared shapes with symbolic dims would be merged with the concrete ones; let inference redo them.
    del work.graph.value_info[:]
    for vi in work.graph.input:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.HasField("dim_param") or not dim.HasField("dim_value"):
                dim.dim_value = int(batch)
    for vi in work.graph.output:
        for dim in vi.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.Clear()
    inferred = True
    try:
        work = shape_inference.infer_shapes(work, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # an op inference cannot handle: keep what the graph declares
        log.warning("ONNX shape inference failed (%s); using the declared types and shapes", exc)
        work = proto
        inferred = False

    types: dict[str, int] = {}
    shapes: dict[str, tuple[int | None, ...]] = {}

    def note(vi) -> None:
        tt = vi.type.tensor_type
        if tt.elem_type:
            types[vi.name] = tt.elem_type
        if tt.HasField("shape"):
            dims = []
            for d in tt.shape.dim:
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                elif not inferred and d.HasField("dim_param"):
                    dims.append(int(batch))  # declared symbolic dims are the batch
                else:
                    dims.append(None)
            shapes[vi.name] = tuple(dims)

    for vi in list(work.graph.input) + list(work.graph.value_info) + list(work.graph.output):
        note(vi)
    constants: dict[str, Any] = {}
    for t in work.graph.initializer:
        types[t.name] = t.data_type
        shapes[t.name] = tuple(int(d) for d in t.dims)
        constants[t.name] = t
    producer: dict[str, Any] = {}
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in work.graph.node:
        for o in node.output:
            if o:
                producer[o] = node
        for i, name in enumerate(node.input):
            if name:
                consumers.setdefault(name, []).append((node, i))
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            t = node.attribute[0].t
            types.setdefault(node.output[0], t.data_type)
            shapes.setdefault(node.output[0], tuple(int(d) for d in t.dims))
            constants[node.output[0]] = t
    _fill_gaps(work, types, shapes)
    return TypedGraph(work, types, shapes, constants, producer, consumers, inferred)


#: ops whose output has their first input's shape (used to fill what inference left unknown)
SHAPE_PRESERVING_OPS = frozenset({
    "QuantizeLinear", "DequantizeLinear", "Cast", "Identity", "Relu", "Sigmoid", "Tanh", "Erf", "Exp",
    "Neg", "Abs", "Sqrt", "Reciprocal", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Softmax",
    "LayerNormalization", "BatchNormalization", "Dropout",
})


def _fill_gaps(proto, types: dict[str, int], shapes: dict[str, tuple[int | None, ...]]) -> None:
    """Fill types and shapes inference left out, for the ops whose rule is unambiguous: Q/DQ
    (DQ outputs its scale's type, Q its zero point's), Cast (its ``to``), and shape-preserving ops."""
    for node in proto.graph.node:
        if not node.output or not node.output[0] or not node.input:
            continue
        out, x = node.output[0], node.input[0]
        if out not in types:
            if node.op_type == "DequantizeLinear" and len(node.input) > 1 and node.input[1] in types:
                types[out] = types[node.input[1]]
            elif node.op_type == "QuantizeLinear":
                types[out] = types.get(node.input[2], 2) if len(node.input) > 2 and node.input[2] else 2  # uint8
            elif node.op_type == "Cast":
                types[out] = next((int(a.i) for a in node.attribute if a.name == "to"), 0) or types.get(x, 0)
            elif node.op_type in SHAPE_PRESERVING_OPS and x in types:
                types[out] = types[x]
        if out not in shapes and node.op_type in SHAPE_PRESERVING_OPS and x in shapes:
            shapes[out] = shapes[x]


# ------------------------------------------------------------------------------- the census


@dataclass(frozen=True)
class NodePrecision:
    """One compute node: its name, op type, precision and FLOPs (``None`` when shapes are unknown)."""

    name: str
    op_type: str
    precision: str
    flops: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "op_type": self.op_type, "flops": self.flops or 0}


@dataclass(frozen=True)
class PrecisionCensus:
    """The precision of every compute node of one graph, and its FLOPs at ``batch``."""

    nodes: tuple[NodePrecision, ...]
    batch: int = 1
    inferred: bool = True
    source: str = ""
    fusion: "FusionView | None" = None  # Q/DQ graphs only

    @property
    def total_flops(self) -> int:
        return sum(n.flops or 0 for n in self.nodes)

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions reported: always int8, fp16, fp32, plus any other that occurs, in a fixed order."""
        present = {n.precision for n in self.nodes} | set(BASE_PRECISIONS)
        return tuple(p for p in PRECISION_ORDER if p in present) + tuple(sorted(present - set(PRECISION_ORDER)))

    def node_count(self, precision: str) -> int:
        return sum(1 for n in self.nodes if n.precision == precision)

    def flops(self, precision: str) -> int:
        return sum(n.flops or 0 for n in self.nodes if n.precision == precision)

    def flop_share(self, precision: str) -> float:
        """Fraction (0..1) of all compute FLOPs that run in ``precision``; 0.0 for an empty graph."""
        total = self.total_flops
        return self.flops(precision) / total if total else 0.0

    @property
    def int8_flop_share(self) -> float:
        return self.flop_share("int8")

    @property
    def fp32_nodes(self) -> tuple[NodePrecision, ...]:
        return tuple(n for n in self.nodes if n.precision == "fp32")

    @property
    def unknown_flops(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.nodes if n.flops is None)

    def fp32_nodes_outside(self, keeps: Iterable[str]) -> list[NodePrecision]:
        """FP32 compute nodes not covered by ``keeps``.

        A keep covers a node when it equals the node's name, matches it as an fnmatch pattern
        (``/classifier/*``, as ``--keep-fp`` accepts) or equals its op type (``LayerNormalization``,
        as the FP16 stage's kept op types are named).  An empty result means "no FP32 compute
        node outside the named keeps".
        """
        keeps = [k for k in keeps if k]
        return [n for n in self.fp32_nodes
                if not any(k == n.name or k == n.op_type or fnmatch.fnmatchcase(n.name, k) for k in keeps)]

    def by_op_type(self) -> dict[str, dict[str, dict[str, int]]]:
        """op type -> precision -> {"nodes": count, "flops": FLOPs}, op types sorted by FLOPs."""
        table: dict[str, dict[str, dict[str, int]]] = {}
        for n in self.nodes:
            cell = table.setdefault(n.op_type, {}).setdefault(n.precision, {"nodes": 0, "flops": 0})
            cell["nodes"] += 1
            cell["flops"] += n.flops or 0
        order = sorted(table, key=lambda op: -sum(c["flops"] for c in table[op].values()))
        return {op: table[op] for op in order}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the form export.json, the drift report and the plan sidecar carry)."""
        return {
            "schema": CENSUS_SCHEMA,
            "batch": self.batch,
            "compute_nodes": len(self.nodes),
            "total_flops": self.total_flops,
            "precisions": {p: {"nodes": self.node_count(p), "flops": self.flops(p),
                               "flop_share": round(self.flop_share(p), 6)} for p in self.precisions},
            "int8_flop_share": round(self.int8_flop_share, 6),
            "fp32_nodes": [n.to_dict() for n in self.fp32_nodes],
            "op_types": self.by_op_type(),
            "unknown_flops": list(self.unknown_flops),
            "shape_inference": self.inferred,
            **({"fusion": self.fusion.to_dict()} if self.fusion is not None else {}),
        }

    def table(self) -> str:
        return census_table(self.to_dict(), title=self.source)


def census_table(census: dict[str, Any], title: str = "") -> str:
    """The text table of a census dict (:meth:`PrecisionCensus.to_dict`, for example read back from
    export.json or a plan sidecar): per precision the node count and FLOP share, then every FP32
    compute node with its op type and FLOPs."""
    total = int(census.get("total_flops", 0))
    head = f"precision census{f' of {title}' if title else ''} at batch {census.get('batch', 1)}: " \
           f"{census.get('compute_nodes', 0)} compute nodes, {total / 1e9:.3f} GFLOP"
    lines = [head, f"{'precision':10} {'nodes':>6} {'GFLOP':>10} {'FLOP share':>11}"]
    for p, row in census.get("precisions", {}).items():
        lines.append(f"{p:10} {row['nodes']:>6d} {row['flops'] / 1e9:>10.3f} {100 * row['flop_share']:>10.2f}%")
    fp32 = census.get("fp32_nodes", [])
    if fp32:
        width = max(24, min(72, max(len(n["name"]) for n in fp32)))
        lines += ["", f"FP32 compute nodes ({len(fp32)}):", f"{'name':{width}} {'op type':20} {'MFLOP':>10}"]
        for n in fp32:
            lines.append(f"{n['name']:{width}} {n['op_type']:20} {n['flops'] / 1e6:>10.3f}")
    else:
        lines += ["", "FP32 compute nodes: none"]
    unknown = census.get("unknown_flops") or []
    if unknown:
        lines.append(f"FLOPs unknown (shapes not inferred) for {len(unknown)} node(s): {', '.join(unknown[:5])}"
                     + (" ..." if len(unknown) > 5 else ""))
    if census.get("shape_inference") is False:
        lines.append("ONNX shape inference failed on this graph; declared types and shapes were used")
    fusion = census.get("fusion")
    if fusion and fusion.get("weighted_int8"):
        res = fusion.get("residual_adds", {})
        lines += ["", f"TensorRT INT8 fusion: {fusion['fusable']} of {fusion['weighted_int8']} INT8 weighted ops "
                      f"fuse with their epilogue and output INT8; residual Adds with a quantized residual input: "
                      f"{res.get('quantized', 0)} of {res.get('total', 0)}",
                  f"precision boundaries: {fusion['int8_to_fp16']} INT8->FP16 (DQ feeding float compute), "
                  f"{fusion['fp16_to_int8']} FP16->INT8 (float compute feeding a Q)"]
    return "\n".join(lines)


def precision_census(model, batch: int = 1) -> PrecisionCensus:
    """The precision census of an ONNX graph (path or ModelProto) at ``batch``; see the module doc."""
    g = typed_graph(model, batch)
    nodes = []
    for index, node in enumerate(g.proto.graph.node):
        if node.op_type in NOT_COMPUTE_OPS:
            continue
        float_inputs = [name for name in node.input if name and g.float_type(name)]
        dq_inputs = [name for name in node.input if name and _dequantized_type(g, name)]
        if not float_inputs and not dq_inputs:
            untyped = any(name and name not in g.types for name in node.input)
            if not (untyped and any(g.float_type(o) for o in node.output if o)):
                continue  # arithmetic on integer (shape) tensors
        precision = _node_precision(g, node, float_inputs)
        name = node.name or f"{node.op_type}_{index}"
        nodes.append(NodePrecision(name, node.op_type, precision, node_flops(g, node)))
    source = "" if hasattr(model, "graph") else Path(os.fspath(model)).name
    fusion = fusion_view(g, {n.name: n.precision for n in nodes}) if any(
        n.op_type in QDQ_OPS for n in g.proto.graph.node) else None
    return PrecisionCensus(tuple(nodes), batch=int(batch), inferred=g.inferred, source=source, fusion=fusion)


def _dequantized_type(g: TypedGraph, name: str, depth: int = 0) -> str | None:
    """The quantized precision of ``name`` if it is a DequantizeLinear output (possibly after
    :data:`DQ_PASS_THROUGH` data movement), else None."""
    node = g.producer.get(name)
    if node is None or depth > 8:
        return None
    if node.op_type == "DequantizeLinear":
        return QUANTIZED_TYPES.get(g.types.get(node.input[0], 0), "int8")
    if node.op_type in DQ_PASS_THROUGH and node.input:
        return _dequantized_type(g, node.input[0], depth + 1)
    return None


def _node_precision(g: TypedGraph, node, float_inputs: list[str]) -> str:
    if node.op_type in WEIGHTED_OPS and len(node.input) >= 2:
        act, weight = _dequantized_type(g, node.input[0]), _dequantized_type(g, node.input[1])
        if act and weight:
            return act if act == weight else f"{act}/{weight}"
    data = [name for name in node.input if name and name not in g.constants] or float_inputs
    quantized = [_dequantized_type(g, name) for name in data]
    outs = [o for o in node.output if o]
    if data and all(quantized) and outs and all(_feeds_only_q(g, o) for o in outs):
        return quantized[0]
    for name in float_inputs:
        return g.float_type(name)
    for o in outs:
        if g.float_type(o):
            return g.float_type(o)
    return "unknown"


def _feeds_only_q(g: TypedGraph, name: str, depth: int = 0) -> bool:
    """Whether every reader of ``name`` is a QuantizeLinear, looking through :data:`DQ_PASS_THROUGH`
    data movement (TensorRT propagates a Q backward across it: "Q/DQ Propagation" in the
    developer guide's "Explicit Quantization")."""
    readers = g.consumers.get(name)
    if not readers or depth > 8 or name in {o.name for o in g.proto.graph.output}:
        return False
    return all(c.op_type == "QuantizeLinear" or (c.op_type in DQ_PASS_THROUGH and c.output and c.output[0]
                                                 and _feeds_only_q(g, c.output[0], depth + 1)) for c, _ in readers)


def _numel(shape: tuple[int | None, ...] | None) -> int | None:
    if shape is None or any(d is None for d in shape):
        return None
    return math.prod(shape)


def node_flops(g: TypedGraph, node) -> int | None:
    """FLOPs of one compute node at the graph's batch; None when a needed shape is unknown."""
    op = node.op_type
    shape = g.shapes.get
    out = shape(node.output[0]) if node.output else None
    if op in ("Conv", "ConvTranspose"):
        w = shape(node.input[1])
        if w is None or any(d is None for d in w) or len(w) < 3:
            return None
        group = _int_attr(node, "group", 1)
        if op == "Conv":
            n_out = _numel(out)
            # w: (C_out, C_in / group, k...): each output element is C_in/group * prod(k) MACs
            return None if n_out is None else 2 * n_out * math.prod(w[1:])
        x = shape(node.input[0])
        n_in = _numel(x)
        # w: (C_in, C_out / group, k...): each input element scatters into C_out/group * prod(k) outputs
        return None if n_in is None else 2 * n_in * math.prod(w[1:])
    if op == "Gemm":
        a = shape(node.input[0])
        n_out = _numel(out)
        if a is None or len(a) != 2 or a[0] is None or a[1] is None or n_out is None:
            return None
        k = a[0] if _int_attr(node, "transA", 0) else a[1]
        return 2 * n_out * k
    if op == "MatMul":
        a = shape(node.input[0])
        n_out = _numel(out)
        if not a or a[-1] is None or n_out is None:
            return None
        return 2 * n_out * a[-1]
    if op in INPUT_ELEMENT_OPS:
        return _numel(shape(node.input[0]))
    n_out = _numel(out)
    if n_out is None:
        return None
    if op in WINDOW_POOL_OPS:
        kernel = _ints_attr(node, "kernel_shape")
        return n_out * (math.prod(kernel) if kernel else 1)
    return n_out * flops_per_element(op)


def _int_attr(node, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default


def _ints_attr(node, name: str) -> list[int]:
    for a in node.attribute:
        if a.name == name:
            return [int(v) for v in a.ints]
    return []


# ------------------------------------------------------------------------------- fusion view
#
# Which INT8 layers TensorRT can fuse so that they also *write* INT8, and where the graph changes
# between INT8 and floating point.  Every rule is from TensorRT's developer guide, "Working with
# Quantized Types" > "Explicit Quantization"
# (https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html):
#
# * "Q/DQ Fusion": a weighted layer with DQ inputs fuses the trailing Q into its kernel when its
#   output goes only to that Q; the layer then outputs INT8 (figure 3, right).  Otherwise the
#   fused layer outputs floating point.
# * "Q/DQ Layer-Placement Recommendations": bias, scale and BatchNormalization fold into the
#   convolution (figure 5) and an activation after it fuses (figure 4); an element-wise Add fuses
#   into a Conv when its other input ("xf1", the residual) is quantized -- then the fused
#   convolution outputs INT8 and absorbs the Q (figure 7); when xf1 is floating point it cannot
#   (figure 6).  That Add fusion is a convolution fusion; a Gemm/MatMul gets bias/scale and an
#   activation only.
# * "Q/DQ Propagation": Q and DQ move across layers that commute with quantization (data
#   movement such as Transpose and Reshape), so those do not break a chain.

#: activations TensorRT fuses into a convolution / GEMM epilogue ("Q/DQ Layer-Placement Recommendations", figure 4)
FUSED_ACTIVATIONS = frozenset({"Relu", "Clip", "LeakyRelu"})
#: data movement a Q is propagated backward through ("Q/DQ Propagation")
Q_PASS_THROUGH = DQ_PASS_THROUGH


@dataclass(frozen=True)
class WeightedFusion:
    """One INT8 weighted op: whether its consumer chain ends in a Q TensorRT fuses, the chain, or why not."""

    name: str
    op_type: str
    fusable: bool
    chain: tuple[str, ...]  # op types after the weighted op, ending in QuantizeLinear when fusable
    reason: str = ""


@dataclass(frozen=True)
class FusionView:
    """The fusion view of a Q/DQ graph (see the rules above :data:`FUSED_ACTIVATIONS`)."""

    weighted: tuple[WeightedFusion, ...]
    int8_to_fp16: int  # DequantizeLinear nodes whose output feeds compute that does not run in INT8
    fp16_to_int8: int  # QuantizeLinear nodes whose input comes from compute that does not run in INT8
    residual_adds: int
    residual_quantized: int

    @property
    def fusable(self) -> int:
        return sum(1 for w in self.weighted if w.fusable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weighted_int8": len(self.weighted),
            "fusable": self.fusable,
            "int8_to_fp16": self.int8_to_fp16,
            "fp16_to_int8": self.fp16_to_int8,
            "residual_adds": {"total": self.residual_adds, "quantized": self.residual_quantized},
            "not_fusable": [{"name": w.name, "op_type": w.op_type, "why": w.reason} for w in self.weighted if not w.fusable],
        }


def _node_name(node, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def _is_constant(g: TypedGraph, name: str) -> bool:
    if name in g.constants:
        return True
    p = g.producer.get(name)
    return p is not None and p.op_type in CAST_OPS | {"DequantizeLinear"} and bool(p.input) and _is_constant(g, p.input[0])


def _chain(g: TypedGraph, node) -> tuple[bool, tuple[str, ...], str]:
    """Walk ``node``'s consumers as TensorRT's Q/DQ fusion would (rules above)."""
    outputs = {o.name for o in g.proto.graph.output}
    t = node.output[0]
    chain: list[str] = []
    added = activated = False
    for _ in range(16):
        consumers = [c for c, _ in g.consumers.get(t, [])]
        if consumers and t not in outputs and all(c.op_type == "QuantizeLinear" for c in consumers):
            return True, tuple(chain + ["QuantizeLinear"]), ""
        if t in outputs:
            return False, tuple(chain), "output is a graph output"
        if len(consumers) != 1:
            return False, tuple(chain), f"output read by {len(consumers)} consumers, not all Q"
        c = consumers[0]
        data = [i for i in c.input if i and not _is_constant(g, i)]
        if c.op_type in Q_PASS_THROUGH:
            pass
        elif (not added and not activated and (c.op_type == "BatchNormalization"
                                                or (c.op_type in ("Add", "Mul") and len(data) == 1))):
            pass  # bias / scale / BatchNorm fold into the kernel (figure 5)
        elif (node.op_type in ("Conv", "ConvTranspose") and not added and not activated and c.op_type == "Add"
              and len(data) == 2 and all(_dequantized_type(g, i) for i in data if i != t)):
            added = True  # Conv + Add with a quantized residual (figures 6 and 7)
        elif not activated and c.op_type in FUSED_ACTIVATIONS:
            activated = True
        else:
            why = f"{c.op_type} {c.name or ''}".strip()
            if c.op_type == "Add" and len(data) == 2:
                why += " has a float residual input" if node.op_type in ("Conv", "ConvTranspose") else \
                    " (only a convolution fuses a residual Add)"
            return False, tuple(chain), f"{why} runs in float"
        chain.append(c.op_type)
        t = c.output[0]
    return False, tuple(chain), "chain too long"


def fusion_view(g: TypedGraph, precision: dict[str, str]) -> FusionView:
    """The fusion view of the typed graph ``g``; ``precision`` is the census's node name -> precision."""
    from corese_edge.export.qdq_placement import residual_adds

    index = {id(n): i for i, n in enumerate(g.proto.graph.node)}
    name_of = lambda n: _node_name(n, index[id(n)])  # noqa: E731
    weighted = []
    fused: set[str] = set()
    for node in g.proto.graph.node:
        if node.op_type not in WEIGHTED_OPS or precision.get(name_of(node)) not in QUANTIZED_TYPES.values():
            continue
        ok, chain, why = _chain(g, node)
        weighted.append(WeightedFusion(name_of(node), node.op_type, ok, chain, why))
        if ok:  # the epilogue nodes run inside the INT8 kernel
            t = node.output[0]
            for _ in chain[:-1]:
                c = g.consumers[t][0][0]
                fused.add(name_of(c))
                t = c.output[0]

    def int8(n) -> bool:
        return n.op_type in QDQ_OPS or name_of(n) in fused or precision.get(name_of(n)) in QUANTIZED_TYPES.values()

    def float_compute_reached(t: str, depth: int = 0) -> bool:
        """Whether tensor ``t`` reaches compute outside INT8 (through data movement and casts)."""
        if t in {o.name for o in g.proto.graph.output}:
            return True
        for c, _ in g.consumers.get(t, []):
            if c.op_type in (DATA_MOVEMENT_OPS | CAST_OPS) and depth < 8:
                if any(float_compute_reached(o, depth + 1) for o in c.output if o):
                    return True
            elif c.op_type not in NOT_COMPUTE_OPS and not int8(c):
                return True
        return False

    def float_compute_behind(t: str, depth: int = 0) -> bool:
        p = g.producer.get(t)
        if p is None:
            return t not in g.constants  # a graph input
        if p.op_type in (DATA_MOVEMENT_OPS | CAST_OPS) and depth < 8:
            data = [i for i in p.input if i and not _is_constant(g, i)]
            return any(float_compute_behind(i, depth + 1) for i in data[:1])
        return p.op_type not in NOT_COMPUTE_OPS and not int8(p)

    to_fp16 = sum(1 for n in g.proto.graph.node if n.op_type == "DequantizeLinear"
                  and not _is_constant(g, n.input[0]) and float_compute_reached(n.output[0]))
    to_int8 = sum(1 for n in g.proto.graph.node if n.op_type == "QuantizeLinear"
                  and not _is_constant(g, n.input[0]) and float_compute_behind(n.input[0]))
    adds = residual_adds(g.proto)
    nodes = {n.name: n for n in g.proto.graph.node}
    quantized = sum(1 for a in adds if _dequantized_type(g, nodes[a.name].input[a.skip_slot]))
    return FusionView(tuple(weighted), to_fp16, to_int8, len(adds), quantized)
