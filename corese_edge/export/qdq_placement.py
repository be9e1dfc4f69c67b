"""Q/DQ placement for TensorRT fusion: the pass the ``s8s8`` flavour runs after ONNX Runtime's quantizer.

ONNX Runtime's static quantizer, as the ``s8s8`` flavour drives it, puts Q/DQ on the inputs of
Conv, Gemm and MatMul only (docs/ARCHITECTURE.md, "Two INT8 flavours").  That is TensorRT's first
placement recommendation, but not the whole of it.  TensorRT's developer guide, "Working with
Quantized Types" > "Explicit Quantization" > "Q/DQ Layer-Placement Recommendations"
(https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/quantized-types-explicit-quantization.html),
also recommends quantizing the **residual input of an element-wise addition**: when the Add's other
operand ``xf1`` is floating-point, the fused Conv+Add kernel must output floating-point and the
trailing Q cannot fuse (the guide's figure 6); when ``xf1`` is quantized, the fused convolution
outputs INT8 and absorbs the Q (figure 7).  The same section warns against an extra Q/DQ between
the convolution and the Add (figure 9): it separates the two, so the branch input stays float.

What :func:`place_fusion_qdq` adds, and why (read from NVIDIA ModelOpt 0.47's ONNX PTQ,
``modelopt/onnx/quantization/graph_utils.py`` and ``partitioning.py``, which places Q/DQ for the
same fusions):

* **Residual Adds** (:func:`residual_adds`): an Add with two activation inputs whose inputs meet at
  a common ancestor, where one path holds a weighted op (the branch) and the other is shorter (the
  skip path: the identity, or a downsample Conv).  ModelOpt's ``build_non_residual_input_map``
  decides the same way: the input on the longer path to the lowest common ancestor is the
  non-residual one.  The skip input always gets Q/DQ (reusing the tensor's existing Q/DQ pair when
  it has one, as ONNX Runtime shares them).
* **The branch input**, only when the branch does *not* end in a Conv that TensorRT can fuse with
  the Add (Conv, then only bias / scale / BatchNorm).  A Conv branch stays float (figure 9).  A
  branch that ends elsewhere (ConvNeXt-Tiny's MLP: MatMul, bias, transpose, layer-scale Mul) gets
  Q/DQ too, so the Add is a quantizable element-wise op with DQ inputs and a Q output (the guide's
  figure 8) and the MatMul's epilogue ends in a Q; ModelOpt quantizes these Adds the same way (an
  Add after a non-Conv partition is a "KGEN head" in ``filter_quantizable_kgen_heads``).
* **MaxPool whose output is quantized**: Q/DQ on its input with the *same* scale as its output Q,
  so Conv -> ReLU -> Q fuses in front of it (ModelOpt's ``find_quantizable_nodes`` quantizes pooling
  ops next to quantized ops; the guide lists pooling among the layers TensorRT runs quantized,
  "Q/DQ Fusion", and max-pooling commutes with a per-tensor quantization, so one scale on both
  sides adds no rounding).  AveragePool / GlobalAveragePool get the same treatment with their
  input's own calibrated range.  CoRes-SE's global means are ReduceMean, which ModelOpt does not
  quantize either, so they stay FP16.
* **LayerNormalization fed by a quantized Conv** (through data movement only): Q/DQ on its input,
  so the Conv outputs INT8 (the guide's figure 3, right) instead of writing an FP16 tensor.
  ModelOpt's ``find_conv_to_layernorm_nodes`` does this for ConvNeXt's depthwise Conv -> LN.

Every inserted pair is per-tensor, symmetric int8, zero point 0 (what :mod:`qdq_rules` checks),
with the scale ONNX Runtime would compute from the calibration range of that tensor
(``compute_scale_zp`` with ``ActivationSymmetric``).  :func:`corese_edge.export.int8.calibrate`
collects ranges for the inputs and outputs of :data:`PLACEMENT_CALIBRATION_OPS` for this reason.
A tensor without a range is left alone and reported.  The ``u8s8`` (CPU) flavour never runs this.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

log = logging.getLogger(__name__)

#: ops whose input / output ranges calibration must collect for this pass
PLACEMENT_CALIBRATION_OPS = ("Add", "MaxPool", "AveragePool", "GlobalAveragePool", "LayerNormalization")
WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
CONV = frozenset({"Conv", "ConvTranspose"})
#: data movement a Q/DQ may be propagated through (TensorRT, "Q/DQ Propagation")
PASS_THROUGH = frozenset({"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"})
#: pooling ops quantized when their output is (ModelOpt: ``is_pooling_or_window_op``)
POOLING = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool"})
#: how far back the residual search looks (a ConvNeXt block is about 12 nodes deep)
MAX_DEPTH = 64


@dataclass(frozen=True)
class ResidualAdd:
    """An Add joining a branch that holds a weighted op with a skip path."""

    name: str
    skip_slot: int  # which input of the Add is the skip (residual) input
    conv_fusable: bool  # the branch ends in a Conv TensorRT can fuse with the Add


@dataclass
class Placement:
    """What :func:`place_fusion_qdq` did: per category, the tensors it quantized, and what it could not."""

    residual_adds: int = 0
    skip_inputs: list[str] = field(default_factory=list)
    branch_inputs: list[str] = field(default_factory=list)
    pooling: list[str] = field(default_factory=list)
    layernorms: list[str] = field(default_factory=list)
    missing_range: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"residual_adds": self.residual_adds, "skip_inputs": len(self.skip_inputs),
                "branch_inputs": len(self.branch_inputs), "pooling": len(self.pooling),
                "layernorms": len(self.layernorms), "missing_range": list(self.missing_range)}


class _Graph:
    def __init__(self, model) -> None:
        self.g = model.graph
        self.refresh()

    def refresh(self) -> None:
        g = self.g
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.constants = {t.name for t in g.initializer} | {
            n.output[0] for n in g.node if n.op_type == "Constant"}
        self.outputs = {o.name for o in g.output}

    def is_const(self, name: str) -> bool:
        if name in self.constants:
            return True
        p = self.producer.get(name)
        # a constant behind a Cast or a DequantizeLinear (a weight) is still a constant
        return p is not None and p.op_type in ("Cast", "DequantizeLinear") and bool(p.input) and self.is_const(p.input[0])

    def source(self, name: str) -> str:
        """The float tensor behind ``name``: through DequantizeLinear(QuantizeLinear(x)) to ``x``."""
        p = self.producer.get(name)
        if p is not None and p.op_type == "DequantizeLinear":
            q = self.producer.get(p.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                return self.source(q.input[0])
        return name

    def dequantized(self, name: str) -> bool:
        p = self.producer.get(name)
        while p is not None and p.op_type in PASS_THROUGH:
            p = self.producer.get(p.input[0])
        return p is not None and p.op_type == "DequantizeLinear"

    def ancestors(self, name: str) -> dict[str, int]:
        """Every float tensor ``name`` depends on (through Q/DQ), with its distance in nodes."""
        start = self.source(name)
        dist = {start: 0}
        frontier = [start]
        while frontier:
            nxt = []
            for t in frontier:
                p = self.producer.get(t)
                if p is None or dist[t] >= MAX_DEPTH:
                    continue
                for i in p.input:
                    if not i or self.is_const(i):
                        continue
                    s = self.source(i)
                    if s not in dist:
                        dist[s] = dist[t] + 1
                        nxt.append(s)
            frontier = nxt
        return dist


def _branch_conv_fusable(g: _Graph, tensor: str) -> bool:
    """Whether ``tensor`` is a Conv's output after only bias / scale / BatchNorm (TensorRT fuses
    those and the Add into the convolution)."""
    t = g.source(tensor)
    for _ in range(8):
        p = g.producer.get(t)
        if p is None:
            return False
        if p.op_type in CONV:
            return True
        data = [i for i in p.input if i and not g.is_const(i)]
        if p.op_type == "BatchNormalization" or (p.op_type in ("Add", "Mul") and len(data) == 1):
            t = g.source(data[0] if p.op_type != "BatchNormalization" else p.input[0])
            continue
        return False
    return False


def residual_adds(model) -> list[ResidualAdd]:
    """The residual Adds of an ONNX graph (ModelProto), in graph order; see the module doc."""
    g = model if isinstance(model, _Graph) else _Graph(model)
    found = []
    for node in g.g.node:
        if node.op_type != "Add" or len(node.input) != 2 or any(g.is_const(i) for i in node.input):
            continue
        a, b = g.ancestors(node.input[0]), g.ancestors(node.input[1])
        common = set(a) & set(b)
        if not common:
            continue
        lca = min(common, key=lambda t: (a[t] + b[t], t))
        if a[lca] == b[lca]:
            continue  # two parallel branches, no skip path
        branch, skip = (0, 1) if a[lca] > b[lca] else (1, 0)
        dist = (a, b)[branch]
        depth = dist[lca]
        weighted = any(p.op_type in WEIGHTED for t, d in dist.items() if d < depth
                       for p in [g.producer.get(t)] if p is not None)
        if not weighted:
            continue
        found.append(ResidualAdd(node.name, skip, _branch_conv_fusable(g, node.input[branch])))
    return found


def _symmetric_int8_scale(rmin: float, rmax: float) -> np.float32:
    """The scale ONNX Runtime computes for a symmetric int8 activation (``ActivationSymmetric``)."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    qmin, qmax = get_qmin_qmax_for_qType(TensorProto.INT8, reduce_range=False, symmetric=True)
    zero, scale = compute_scale_zp(np.float32(rmin), np.float32(rmax), qmin, qmax, True)
    if int(np.asarray(zero)) != 0:  # symmetric int8 always gives 0; TensorRT needs it
        raise RuntimeError(f"symmetric int8 zero point is {zero}, not 0")
    return np.float32(np.asarray(scale).reshape(()))


def load_ranges(path) -> dict[str, tuple[float, float]]:
    """Tensor name -> (min, max) from ONNX Runtime's calibration cache (``save_tensors_data``)."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(path)
    out = {}
    for name in data:
        lo, hi = data[name].range_value
        out[name] = (float(np.asarray(lo).reshape(-1)[0]), float(np.asarray(hi).reshape(-1)[0]))
    return out


def place_fusion_qdq(model, ranges: dict[str, tuple[float, float]], keep_nodes: Iterable[str] = ()) -> Placement:
    """Add the Q/DQ pairs of the module doc to ``model`` (ONNX Runtime's FP32 Q/DQ ModelProto, in place).

    ``ranges`` maps tensor names to calibrated (min, max) (:func:`load_ranges`); ``keep_nodes`` are
    nodes left in float on purpose (``--keep-fp``): their inputs are not touched.
    """
    from onnx import helper, numpy_helper

    g = _Graph(model)
    keep = set(keep_nodes)
    done = Placement()
    pairs: dict[str, str] = {}  # float tensor -> the DQ output that reads it
    new_nodes: dict[str, list] = {}  # consumer node name -> Q/DQ nodes to insert before it
    inits = {t.name for t in g.g.initializer}

    def existing_dq(tensor: str) -> str | None:
        for q in g.consumers.get(tensor, []):
            if q.op_type == "QuantizeLinear":
                for dq in g.consumers.get(q.output[0], []):
                    if dq.op_type == "DequantizeLinear":
                        return dq.output[0]
        return None

    def quantized(tensor: str, before: str, scale_from: tuple[str, str] | None = None) -> str | None:
        """The DQ output of ``tensor`` (an existing pair, or one inserted before node ``before``)."""
        if tensor in pairs:
            return pairs[tensor]
        dq_out = existing_dq(tensor)
        if dq_out is None:
            if scale_from is not None:
                scale_name, zp_name = scale_from
            else:
                if tensor not in ranges:
                    done.missing_range.append(tensor)
                    return None
                base = tensor.replace("/", "_").strip("_") + "_fusion"
                scale_name, zp_name = base + "_scale", base + "_zero_point"
                if scale_name not in inits:
                    g.g.initializer.extend([
                        numpy_helper.from_array(np.asarray(_symmetric_int8_scale(*ranges[tensor]), np.float32), scale_name),
                        numpy_helper.from_array(np.asarray(0, np.int8), zp_name)])
                    inits.update((scale_name, zp_name))
            base = tensor.replace("/", "_").strip("_") + "_fusion"
            q_out, dq_out = base + "_QuantizeLinear_Output", base + "_DequantizeLinear_Output"
            new_nodes.setdefault(before, []).extend([
                helper.make_node("QuantizeLinear", [tensor, scale_name, zp_name], [q_out], name=base + "_QuantizeLinear"),
                helper.make_node("DequantizeLinear", [q_out, scale_name, zp_name], [dq_out], name=base + "_DequantizeLinear"),
            ])
        pairs[tensor] = dq_out
        return dq_out

    def quantize_input(node, slot: int, scale_from=None) -> str | None:
        name = node.input[slot]
        if g.dequantized(name):
            return name
        dq_out = quantized(g.source(name), node.name, scale_from)
        if dq_out is not None:
            node.input[slot] = dq_out
        return dq_out

    nodes = {n.name: n for n in g.g.node}
    for add in residual_adds(g):
        node = nodes[add.name]
        if node.name in keep:
            continue
        done.residual_adds += 1
        if quantize_input(node, add.skip_slot) is not None:
            done.skip_inputs.append(node.name)
        if not add.conv_fusable and quantize_input(node, 1 - add.skip_slot) is not None:
            done.branch_inputs.append(node.name)
    for node in g.g.node:
        if node.name in keep or not node.input or g.dequantized(node.input[0]):
            continue
        if node.op_type in POOLING:
            outs = g.consumers.get(node.output[0], [])
            qs = [c for c in outs if c.op_type == "QuantizeLinear"]
            if not outs or len(qs) != len(outs) or node.output[0] in g.outputs:
                continue
            same_scale = (qs[0].input[1], qs[0].input[2]) if node.op_type == "MaxPool" else None
            if quantize_input(node, 0, same_scale) is not None:
                done.pooling.append(node.name)
        elif node.op_type == "LayerNormalization":
            p = g.producer.get(node.input[0])
            while p is not None and p.op_type in PASS_THROUGH:
                p = g.producer.get(p.input[0])
            if p is not None and p.op_type in CONV and g.dequantized(p.input[0]) and quantize_input(node, 0) is not None:
                done.layernorms.append(node.name)
    if new_nodes:
        ordered = []
        for n in g.g.node:
            ordered.extend(new_nodes.get(n.name, []))
            ordered.append(n)
        del g.g.node[:]
        g.g.node.extend(ordered)
    _toposort(g.g)
    if done.missing_range:
        log.warning("no calibration range for %d tensor(s) the TensorRT placement would quantize (%s); left in float",
                    len(done.missing_range), ", ".join(done.missing_range[:3]))
    return done


def _toposort(graph) -> None:
    """Stable topological order (a reused DQ may sit after the node that now reads it)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        rest = []
        for n in pending:
            if all(i in available for i in n.input):
                ordered.append(n)
                available.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError(f"graph has a cycle or a missing input at {rest[0].name!r}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)

