"""Reference arithmetic for FP16 and Q/DQ graphs under ONNX Runtime (docs/ARCHITECTURE.md, "Two INT8 flavours").

A TensorRT-flavour graph is judged the way TensorRT computes it, not the way a CPU's fused kernels
would: :class:`~corese_edge.runtime.ort.OrtRunner` with ``reference_arithmetic=True`` disables
every graph optimization (Q/DQ pairs run unfused) and runs the graph rewritten by
:func:`fp16_reference_graph`.  onnx is imported only here, and only when a rewrite is asked for,
so an app that runs plain ``.onnx`` files never loads it.
"""
from __future__ import annotations

import os
from typing import Any

from corese_edge.errors import require

#: ops that get no FP32 detour: they make FP16 values rather than compute on them
_FP16_SOURCES = frozenset({"Cast", "CastLike", "Constant", "ConstantOfShape"})


def model_proto(model: Any):
    """A ModelProto from a path, ``bytes`` or ModelProto (returned as is)."""
    onnx = require("onnx", "export", "reference arithmetic")
    if hasattr(model, "graph"):
        return model
    return onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(os.fspath(model))


def has_fp16(proto) -> bool:
    """Whether ``proto`` holds FP16 weights or casts to FP16 anywhere."""
    from onnx import TensorProto

    return any(t.data_type == TensorProto.FLOAT16 for t in proto.graph.initializer) or any(
        a.name == "to" and a.i == TensorProto.FLOAT16
        for n in proto.graph.node if n.op_type == "Cast" for a in n.attribute)


def fp16_reference_graph(model):
    """A copy of ``model`` where every node that reads FP16 computes in FP32 between explicit casts.

    Each FP16 input of such a node is widened with ``Cast(to=FLOAT)`` (exact) and each FP16 output
    is produced in FP32 and rounded with ``Cast(to=FLOAT16)``, under the output's own name.  So
    every FP16 tensor of the graph holds the FP16 rounding of an FP32 computation of its node:
    the correctly rounded result for Add, Mul, Div and the data-movement ops, and FP32
    accumulation for Conv / Gemm / MatMul, as TensorRT's FP16 and INT8 kernels accumulate.

    Why not run the FP16 graph as it is: onnxruntime's CPU provider has no FP16 kernel for many
    ops (1.32 on x86-64: Conv, Gemm, MatMul, Add, Mul, Div, Transpose, Concat, most
    QuantizeLinear / DequantizeLinear), and for those its ``InsertCastTransformer`` (which runs
    even with graph optimizations disabled) moves whole runs of adjacent nodes to FP32 with casts
    only at the run's ends, so the FP16 roundings inside a run would silently disappear.  With the
    explicit casts every node has an FP32 kernel and there is nothing left for it to move.
    """
    onnx = require("onnx", "export", "reference arithmetic")
    from onnx import TensorProto, helper

    model = model_proto(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {t.name: t.data_type for t in inferred.graph.initializer}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for node in inferred.graph.node:  # Constant outputs are typed by their value
        if node.op_type == "Constant" and node.attribute and node.attribute[0].type == onnx.AttributeProto.TENSOR:
            types[node.output[0]] = node.attribute[0].t.data_type
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes = []
    for k, node in enumerate(out.graph.node):
        if node.op_type in _FP16_SOURCES or not any(types.get(i) == TensorProto.FLOAT16 for i in node.input if i):
            nodes.append(node)
            continue
        stem = f"{node.name or node.op_type + str(k)}/fp16_reference"
        for i, name in enumerate(node.input):
            if name and types.get(name) == TensorProto.FLOAT16:
                wide = f"{stem}/in{i}"
                nodes.append(helper.make_node("Cast", [name], [wide], name=f"{stem}/widen{i}", to=TensorProto.FLOAT))
                node.input[i] = wide
        rounding = []
        for i, name in enumerate(node.output):
            if name and types.get(name) == TensorProto.FLOAT16:
                wide = f"{stem}/out{i}"
                node.output[i] = wide
                rounding.append(helper.make_node("Cast", [wide], [name], name=f"{stem}/round{i}", to=TensorProto.FLOAT16))
        nodes.append(node)
        nodes.extend(rounding)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    del out.graph.value_info[:]  # the widened tensors changed type; ORT infers the rest
    return out


def reference_model(model: Any):
    """``model`` as reference arithmetic runs it: rewritten by :func:`fp16_reference_graph` when it
    holds FP16 tensors, otherwise as given (a path stays a path)."""
    proto = model_proto(model)
    return fp16_reference_graph(proto) if has_fp16(proto) else model
