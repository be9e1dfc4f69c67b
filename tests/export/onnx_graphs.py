"""Hand-made ONNX graphs for the census and Q/DQ-rule tests (onnx.helper, no exporter involved)."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F32, F16, I8, U8, I64 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT8, TensorProto.UINT8, TensorProto.INT64
NP = {F32: np.float32, F16: np.float16, I8: np.int8, U8: np.uint8, I64: np.int64}


def const(name: str, value, elem: int):
    return numpy_helper.from_array(np.asarray(value, dtype=NP[elem]), name)


def value(name: str, elem: int, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def model(nodes, inputs, outputs, inits=(), opset: int = 17):
    graph = helper.make_graph(list(nodes), "g", list(inputs), list(outputs), list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 19 else 9
    return m


def qdq(x: str, out: str, scale: str, zp: str, name: str):
    """Q then DQ of tensor ``x`` (per-tensor), output ``out``."""
    return [helper.make_node("QuantizeLinear", [x, scale, zp], [out + "_q"], name=name + "_Q"),
            helper.make_node("DequantizeLinear", [out + "_q", scale, zp], [out], name=name + "_DQ")]


def int8_conv_model(*, act_zp=None, weight_scale=None, weight_zp=None, axis: int = 0, opset: int = 17,
                    act_scale_type: int = F32, weight_scale_type: int = F32, x_type: int = F32, q_scale_type=None):
    """input (batch, 3, 8, 8) -> Q/DQ -> Conv(DQ(int8 weight 4x3x3x3), pads 1) -> output (batch, 4, 8, 8).

    The keyword arguments bend one part away from the TensorRT-ready default (int8 zeros, positive
    per-channel weight scales, float32 everywhere) so each rule can be violated on its own.
    """
    q_scale_type = act_scale_type if q_scale_type is None else q_scale_type
    w = np.arange(4 * 3 * 3 * 3).reshape(4, 3, 3, 3) % 7 - 3
    inits = [
        const("x_scale_q", 0.05, q_scale_type),
        const("x_scale", 0.05, act_scale_type),
        act_zp if act_zp is not None else const("x_zp", 0, I8),
        const("w", w, I8),
        const("w_scale", weight_scale if weight_scale is not None else [0.01, 0.02, 0.03, 0.04], weight_scale_type),
        weight_zp if weight_zp is not None else const("w_zp", [0, 0, 0, 0], I8),
    ]
    zp_name = inits[2].name
    nodes = [
        helper.make_node("QuantizeLinear", ["input", "x_scale_q", zp_name], ["x_q"], name="input_Q"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", zp_name], ["x_dq"], name="input_DQ"),
        helper.make_node("DequantizeLinear", ["w", "w_scale", inits[5].name], ["w_dq"], name="w_DQ", axis=axis),
        helper.make_node("Conv", ["x_dq", "w_dq"], ["y"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y"], ["output"], name="relu"),
    ]
    out_type = weight_scale_type if opset >= 19 else F32
    return model(nodes, [value("input", x_type, ["batch", 3, 8, 8])], [value("output", out_type, ["batch", 4, 8, 8])],
                 inits, opset=opset)


def mixed_model():
    """fp32 Add, fp32 Transpose, Cast to fp16, fp16 LayerNorm, Cast back, fp32 MatMul, shape arithmetic."""
    nodes = [
        helper.make_node("Add", ["input", "bias"], ["a"], name="add32"),
        helper.make_node("Transpose", ["a"], ["t"], name="transpose", perm=[0, 2, 1]),  # (b, 6, 5)
        helper.make_node("Cast", ["t"], ["t16"], name="cast16", to=F16),
        helper.make_node("LayerNormalization", ["t16", "ln_scale", "ln_bias"], ["n16"], name="ln16", axis=-1),
        helper.make_node("Cast", ["n16"], ["n32"], name="cast32", to=F32),
        helper.make_node("MatMul", ["n32", "mm_w"], ["m"], name="matmul"),  # (b, 6, 5) x (5, 7)
        helper.make_node("Shape", ["m"], ["shape"], name="shape"),
        helper.make_node("Mul", ["shape", "two"], ["shape2"], name="shape_mul"),  # int64 arithmetic
        helper.make_node("Slice", ["shape2", "zero", "one"], ["first"], name="slice"),
        helper.make_node("Concat", ["first", "minus_one"], ["new_shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["m", "new_shape"], ["output"], name="reshape"),
    ]
    inits = [const("bias", np.ones(6), F32), const("ln_scale", np.ones(5), F16), const("ln_bias", np.zeros(5), F16),
             const("mm_w", np.ones((5, 7)), F32), const("two", [1, 1, 1], I64), const("zero", [0], I64),
             const("one", [1], I64), const("minus_one", [-1], I64)]
    return model(nodes, [value("input", F32, ["batch", 5, 6])], [value("output", F32, None)], inits)


def save(m, path) -> str:
    onnx.save(m, str(path))
    return str(path)
