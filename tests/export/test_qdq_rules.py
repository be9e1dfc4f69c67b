"""The Q/DQ rules check: a TensorRT-ready graph passes, and each rule, broken once, is reported."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from corese_edge.export.qdq_rules import qdq_rule_violations
from tests.export.onnx_graphs import F16, F32, I8, I64, U8, const, int8_conv_model, model, save, value


def one(problems: list[str], *words: str) -> str:
    """The single problem reported, checked to name every word given."""
    assert len(problems) == 1, problems
    for w in words:
        assert w in problems[0], problems[0]
    return problems[0]


def test_tensorrt_ready_graphs_pass(tmp_path):
    assert qdq_rule_violations(int8_conv_model()) == []
    assert qdq_rule_violations(save(int8_conv_model(), tmp_path / "m.onnx")) == []
    # the FP16 form (opset 19: FP16 input, FP16 scales, FP16 DQ outputs into an FP16 Conv)
    assert qdq_rule_violations(int8_conv_model(opset=19, x_type=F16, act_scale_type=F16, weight_scale_type=F16)) == []


def test_uint8_zero_point():
    problems = qdq_rule_violations(int8_conv_model(act_zp=const("x_zp", 128, U8)))
    assert len(problems) == 2  # the Q and the DQ share it
    assert all("zero point is uint8" in p for p in problems)
    assert {p.split("'")[1] for p in problems} == {"input_Q", "input_DQ"}


def test_nonzero_and_missing_zero_points():
    one(qdq_rule_violations(int8_conv_model(weight_zp=const("w_zp", [0, 0, 1, 0], I8))), "w_DQ", "not all zeros")
    m = int8_conv_model()
    q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    del q.input[2]
    one(qdq_rule_violations(m), "input_Q", "uint8")


@pytest.mark.parametrize("scales,words", [
    ([0.01, -0.02, 0.03, 0.04], ("w_DQ", "<= 0")),
    ([0.01, 0.0, 0.03, 0.04], ("w_DQ", "<= 0")),
    ([0.01, np.inf, 0.03, 0.04], ("w_DQ", "non-finite")),
])
def test_scales_must_be_positive_and_finite(scales, words):
    one(qdq_rule_violations(int8_conv_model(weight_scale=scales)), *words)


def test_per_channel_scale_count_and_axis():
    problems = qdq_rule_violations(int8_conv_model(weight_scale=[0.01, 0.02, 0.03],
                                                   weight_zp=const("w_zp", [0, 0, 0], I8)))
    one(problems, "w_DQ", "3 per-channel scales", "4 channels along axis 0")
    one(qdq_rule_violations(int8_conv_model(axis=1)), "w_DQ", "4 per-channel scales", "3 channels along axis 1")
    one(qdq_rule_violations(int8_conv_model(axis=4)), "w_DQ", "axis 4 is out of range")
    one(qdq_rule_violations(int8_conv_model(weight_zp=const("w_zp", [0, 0], I8))), "w_DQ", "zero point has 2 elements")


def test_dq_output_type_must_match_its_consumer_under_strong_typing():
    """Activation DQ outputs FP32 (FP32 scale) into a Conv whose dequantized weight is FP16."""
    m = int8_conv_model(opset=19, x_type=F32, act_scale_type=F32, weight_scale_type=F16)
    problems = qdq_rule_violations(m)
    assert len(problems) == 2, problems
    assert any(p.startswith("DequantizeLinear 'input_DQ'") and "float32 into Conv 'conv'" in p
               and "input 1 is float16" in p for p in problems)
    assert any(p.startswith("DequantizeLinear 'w_DQ'") and "float16 into Conv 'conv'" in p for p in problems)
    assert qdq_rule_violations(m, strongly_typed=False) == []


def test_q_input_type_must_match_its_scale_under_strong_typing():
    m = int8_conv_model(opset=19, x_type=F16, q_scale_type=F32, act_scale_type=F16, weight_scale_type=F16)
    one(qdq_rule_violations(m), "input_Q", "input is float16 but the scale is float32")
    assert qdq_rule_violations(m, strongly_typed=False) == []


def test_fp16_scale_before_opset_19():
    m = int8_conv_model(opset=17, act_scale_type=F16, q_scale_type=F32)
    problems = qdq_rule_violations(m)
    assert any("input_DQ" in p and "before opset 19" in p for p in problems), problems


def _shape_graph(via_cast: bool):
    """input -> Shape -> (Cast float -> Q -> DQ -> Cast int64 | Q -> DQ) -> Reshape's shape input."""
    nodes = [helper.make_node("Shape", ["input"], ["shape"], name="shape")]
    if via_cast:
        nodes += [helper.make_node("Cast", ["shape"], ["shape_f"], name="to_float", to=F32),
                  helper.make_node("QuantizeLinear", ["shape_f", "s", "zp"], ["sq"], name="shape_Q"),
                  helper.make_node("DequantizeLinear", ["sq", "s", "zp"], ["sdq"], name="shape_DQ"),
                  helper.make_node("Cast", ["sdq"], ["new_shape"], name="to_int", to=I64)]
        inits = [const("s", 1.0, F32), const("zp", 0, I8)]
    else:
        nodes += [helper.make_node("QuantizeLinear", ["shape", "s", "zp"], ["sq"], name="shape_Q"),
                  helper.make_node("DequantizeLinear", ["sq", "s", "zp"], ["new_shape"], name="shape_DQ")]
        inits = [const("s", 1.0, F32), const("zp", 0, I8)]
    nodes.append(helper.make_node("Reshape", ["input", "new_shape"], ["output"], name="reshape"))
    return model(nodes, [value("input", F32, ["batch", 6])], [value("output", F32, None)], inits)


def test_no_qdq_on_shape_tensors():
    problems = qdq_rule_violations(_shape_graph(via_cast=True))
    assert len(problems) == 2, problems  # both the Q and the DQ read a tensor computed from Shape
    assert all("computed from a shape" in p for p in problems)
    problems = qdq_rule_violations(_shape_graph(via_cast=False))
    assert any("shape_Q" in p and "int64" in p for p in problems), problems
    assert any("shape_DQ" in p and "shape input 1 of Reshape 'reshape'" in p for p in problems), problems
