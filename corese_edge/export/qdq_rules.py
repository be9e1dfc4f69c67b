"""The Q/DQ rules every INT8 graph must meet before it goes to TensorRT, whichever quantizer made it.

Both quantizers (ONNX Runtime's and NVIDIA ModelOpt's) are checked by :func:`qdq_rule_violations`.
The rules come from TensorRT's "Explicit Quantization" chapter and the ONNX operator spec:

* **zero points**: TensorRT supports only symmetric quantization, so every zero point is a constant
  of a signed quantized type (int8, int4 or fp8) and all zeros; uint8 (ONNX's default when the
  zero point is omitted from a QuantizeLinear) is refused;
* **scales**: constants, positive and finite;
* **per-channel**: a scale with more than one element is 1-D, the ``axis`` is valid for the input's
  rank, and the scale (and zero point) has exactly as many elements as the input along that axis;
* **no Q/DQ on shape tensors**: TensorRT quantizes only execution tensors; a Q/DQ on an int64 /
  int32 tensor, on a tensor computed from ``Shape`` / ``Size``, or feeding a shape input
  (Reshape's shape, Slice's starts, ...) is refused;
* **strong typing** (``strongly_typed=True``, TensorRT 10/11's mode): the DequantizeLinear output
  type is its scale type (before opset 19 DQ always outputs float32, so the scale must be float32),
  and every consumer reads it in that type (the consumer's other inputs of the same type
  constraint agree); a QuantizeLinear's input type equals its scale type.

Each problem is one human-readable line that names the node and the rule.
"""
from __future__ import annotations

import numpy as np

from corese_edge.errors import require
from corese_edge.export.census import FLOAT_TYPES, TypedGraph, typed_graph

#: zero-point / quantized-data element types TensorRT accepts: INT8, INT4, FLOAT8E4M3FN
ALLOWED_QUANT_TYPES = {3: "int8", 22: "int4", 17: "fp8"}
ELEM_NAMES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
              10: "float16", 11: "float64", 16: "bfloat16", 17: "float8e4m3fn", 21: "uint4", 22: "int4"}

#: input slots that hold shapes, indices or axes rather than data (ONNX operator spec)
SHAPE_INPUT_SLOTS = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "ConstantOfShape": (0,),
    "Resize": (1, 2, 3), "Upsample": (1,), "Range": (0, 1, 2), "Pad": (1, 3), "TopK": (1,),
    "Unsqueeze": (1,), "Squeeze": (1,), "Split": (1,), "OneHot": (1,), "Gather": (1,),
    "GatherElements": (1,), "GatherND": (1,), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,),
    "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL2": (1,), "CumSum": (1,),
}
#: for consumers whose inputs do not all share one type: the slots that share the data type
SAME_TYPE_SLOTS = {
    "BatchNormalization": (0,), "Resize": (0,), "Upsample": (0,), "Pow": (0,), "Dropout": (0,),
    "Cast": (), "CastLike": (), "Shape": (), "Size": (), "QuantizeLinear": (), "DequantizeLinear": (),
}


def _name(node) -> str:
    return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"


def _type_name(t: int) -> str:
    return ELEM_NAMES.get(t, f"type {t}")


def qdq_rule_violations(model, strongly_typed: bool = True) -> list[str]:
    """Every way the Q/DQ nodes of ``model`` (ONNX path or ModelProto) break the rules in the
    module doc; an empty list means the graph passes."""
    require("onnx", "export", "checking Q/DQ graphs")
    from onnx import numpy_helper

    from corese_edge.export.onnx_fp32 import onnx_opset

    g = typed_graph(model)
    opset = onnx_opset(g.proto)
    shape_tensors = _shape_tensors(g)
    problems: list[str] = []
    for node in g.proto.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        who = f"{node.op_type} {_name(node)!r}"
        x = node.input[0]
        scale_name = node.input[1] if len(node.input) > 1 else ""
        zp_name = node.input[2] if len(node.input) > 2 else ""

        # zero point
        if not zp_name:
            if node.op_type == "QuantizeLinear":
                problems.append(f"{who}: no zero point, so ONNX quantizes to uint8; TensorRT needs an int8 zero point of 0")
            elif g.types.get(x) is not None and g.types[x] not in ALLOWED_QUANT_TYPES:
                problems.append(f"{who}: dequantizes {_type_name(g.types[x])}; TensorRT needs int8")
        elif zp_name not in g.constants:
            problems.append(f"{who}: zero point {zp_name!r} is computed, not a constant")
        else:
            zp_t = g.constants[zp_name]
            zp = numpy_helper.to_array(zp_t)
            if zp_t.data_type not in ALLOWED_QUANT_TYPES:
                problems.append(f"{who}: zero point is {_type_name(zp_t.data_type)}; TensorRT needs int8 (symmetric)")
            elif np.any(zp.astype(np.float32) != 0):
                problems.append(f"{who}: zero point is not all zeros (TensorRT quantization is symmetric)")

        # scale
        scale = None
        if scale_name not in g.constants:
            problems.append(f"{who}: scale {scale_name!r} is computed, not a constant")
        else:
            scale_t = g.constants[scale_name]
            scale = numpy_helper.to_array(scale_t).astype(np.float64)
            if not np.all(np.isfinite(scale)):
                problems.append(f"{who}: scale has non-finite values")
            elif not np.all(scale > 0):
                problems.append(f"{who}: scale has values <= 0 (min {scale.min():g}); scales must be positive")

        # per-channel
        if scale is not None and scale.size > 1 and not _int_attr(node, "block_size", 0):
            x_shape = g.shapes.get(x)
            axis = _int_attr(node, "axis", 1)
            if scale.ndim != 1:
                problems.append(f"{who}: per-channel scale has shape {list(scale.shape)}; it must be 1-D")
            elif x_shape is not None:
                rank = len(x_shape)
                if not -rank <= axis < rank:
                    problems.append(f"{who}: axis {axis} is out of range for a rank-{rank} input")
                elif x_shape[axis] is not None and x_shape[axis] != scale.size:
                    problems.append(f"{who}: {scale.size} per-channel scales but the input has {x_shape[axis]} "
                                    f"channels along axis {axis}")
            if zp_name in g.constants and scale.ndim == 1:
                zp_size = int(np.prod(g.constants[zp_name].dims)) if g.constants[zp_name].dims else 1
                if zp_size != scale.size:
                    problems.append(f"{who}: zero point has {zp_size} elements but the scale has {scale.size}")

        # shape tensors
        x_type = g.types.get(x)
        if node.op_type == "QuantizeLinear" and x_type in (6, 7):
            problems.append(f"{who}: quantizes an {_type_name(x_type)} tensor {x!r}; Q/DQ belongs on execution tensors, not shapes")
        elif x in shape_tensors:
            problems.append(f"{who}: its input {x!r} is computed from a shape (Shape/Size); no Q/DQ on shape tensors")
        for out in node.output:
            for consumer, slot in g.consumers.get(out, []):
                if slot in SHAPE_INPUT_SLOTS.get(consumer.op_type, ()):
                    problems.append(f"{who}: feeds the shape input {slot} of {consumer.op_type} {_name(consumer)!r}; "
                                    "no Q/DQ on shape tensors")

        if not strongly_typed or scale_name not in g.constants:
            continue
        scale_type = g.constants[scale_name].data_type
        if node.op_type == "QuantizeLinear":
            if x_type in FLOAT_TYPES and x_type != scale_type:
                problems.append(f"{who}: input is {_type_name(x_type)} but the scale is {_type_name(scale_type)}; "
                                "under strong typing they must match")
            continue
        if opset < 19 and scale_type != 1:
            problems.append(f"{who}: scale is {_type_name(scale_type)}, but DequantizeLinear before opset 19 "
                            "outputs float32 and needs a float32 scale")
        out = node.output[0]
        declared = g.types.get(out)
        out_type = 1 if opset < 19 else scale_type
        if declared is not None and declared != out_type:
            problems.append(f"{who}: output is declared {_type_name(declared)} but DequantizeLinear outputs "
                            f"{_type_name(out_type)} (its scale type)")
        for consumer, slot in g.consumers.get(out, []):
            problems += _consumer_type_problems(g, who, out_type, consumer, slot)
    return problems


def _consumer_type_problems(g: TypedGraph, who: str, out_type: int, consumer, slot: int) -> list[str]:
    group = SAME_TYPE_SLOTS.get(consumer.op_type)
    if group is not None and slot not in group:
        return []
    if slot in SHAPE_INPUT_SLOTS.get(consumer.op_type, ()):
        return []  # reported as a shape-tensor problem
    slots = range(len(consumer.input)) if group is None else group
    problems = []
    for i in slots:
        if i == slot or i >= len(consumer.input) or not consumer.input[i]:
            continue
        if i in SHAPE_INPUT_SLOTS.get(consumer.op_type, ()):
            continue
        other = g.types.get(consumer.input[i])
        if other in FLOAT_TYPES and other != out_type:
            problems.append(f"{who}: outputs {_type_name(out_type)} into {consumer.op_type} {_name(consumer)!r}, "
                            f"whose input {i} is {_type_name(other)}; under strong typing the consumer's input "
                            "type must equal the DQ output type")
            break
    return problems


def _shape_tensors(g: TypedGraph) -> set[str]:
    """Tensors computed from Shape / Size outputs through shape arithmetic (data slots only)."""
    shape: set[str] = set()
    for node in g.proto.graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in ("Shape", "Size"):
            shape.update(o for o in node.output if o)
            continue
        skip = SHAPE_INPUT_SLOTS.get(node.op_type, ())
        data = [name for i, name in enumerate(node.input) if name and i not in skip]
        if data and any(n in shape for n in data) and all(n in shape or n in g.constants for n in data):
            shape.update(o for o in node.output if o)
    return shape


def _int_attr(node, name: str, default: int) -> int:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return default
