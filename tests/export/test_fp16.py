"""Stage 2: FP16 graph with FP32 inputs and outputs; sensitive ops can stay FP32."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto


def test_fp16_keeps_float32_io_and_metadata(tiny_onnx, tmp_path):
    from corese_edge.export.evaluation import OnnxLogits
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
    ref, half = OnnxLogits(tiny_onnx)(x), OnnxLogits(out)(x)
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
