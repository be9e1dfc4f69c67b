"""Stage 2: FP16 graph with FP32 inputs and outputs; sensitive ops can stay FP32."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto


def test_fp16_keeps_float32_io_and_metadata(tiny_onnx, tmp_path):
    from corese_edge.export.comparator import onnx_logits
    from corese_edge.export.fp16 import convert_fp16
    from corese_edge.export.onnx_fp32 import read_metadata

    out = convert_fp16(tiny_onnx, tmp_path / "model.fp16.onnx")
    proto = onnx.load(str(out))
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    weights = [t for t in proto.graph.initializer if len(t.dims) >= 2]
    assert weights and all(t.data_type == TensorProto.FLOAT16 for t in weights)
    assert read_metadata(out) == read_metadata(tiny_onnx)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    ref, half = onnx_logits(tiny_onnx, x), onnx_logits(out, x)
    assert half.dtype == np.float32
    assert 0 < np.max(np.abs(half - ref)) < 0.05  # FP16 rounding, but the same function


def test_layernorm_can_stay_fp32(tiny_onnx, tmp_path):
    from corese_edge.export.fp16 import convert_fp16

    def ln_input_types(path):
        proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
        types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info}
        types.update({t.name: t.data_type for t in proto.graph.initializer})
        return {types.get(n.input[0]) for n in proto.graph.node if n.op_type == "LayerNormalization"}

    assert ln_input_types(convert_fp16(tiny_onnx, tmp_path / "a.onnx")) == {TensorProto.FLOAT16}
    kept = convert_fp16(tiny_onnx, tmp_path / "b.onnx", keep_fp32_ops=("LayerNormalization",))
    assert ln_input_types(kept) == {TensorProto.FLOAT}


def _cancelling_fp16_graph():
    """x -> FP16 -> (+1024) -> (-1024) -> FP32: in FP16 arithmetic the small part of x is lost
    (FP16 spacing at 1024 is 1), in FP32 it survives."""
    from onnx import helper, numpy_helper

    c = numpy_helper.from_array(np.array([1024.0], np.float16), "c")
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
             helper.make_node("Add", ["h", "c"], ["a"], name="add"),
             helper.make_node("Sub", ["a", "c"], ["b"], name="sub"),
             helper.make_node("Cast", ["b"], ["y"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(nodes, "cancel", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    return model


def test_reference_arithmetic_rounds_every_fp16_tensor_like_the_graph_says():
    """onnxruntime's CPU provider has no FP16 Add/Sub here and runs both in FP32 without rounding in
    between (x survives); the reference arithmetic must give numpy's FP16 result."""
    from corese_edge.export.comparator import onnx_logits
    from corese_edge.runtime.reference import fp16_reference_graph

    model = _cancelling_fp16_graph()
    x = np.array([[0.3, 0.7, 1.4, -0.2]], np.float32)
    c = np.float16(1024)
    want = ((x.astype(np.float16) + c) - c).astype(np.float32)
    assert not np.array_equal(want, x)  # the case is one where FP16 matters
    np.testing.assert_array_equal(onnx_logits(model, x, reference_arithmetic=True), want)
    rewritten = fp16_reference_graph(model)
    ops = [n.op_type for n in rewritten.graph.node]
    assert ops.count("Cast") == 2 + 4 + 2  # the graph's 2, a widening per FP16 input (2 each), a rounding per output
    assert {n.op_type for n in rewritten.graph.node if n.name in ("add", "sub")} == {"Add", "Sub"}
