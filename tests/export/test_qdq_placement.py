"""TensorRT fusion placement (issue 17): residual Adds found and quantized, and the census fusion view, on a hand-made graph."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from corese_edge.export.census import precision_census
from corese_edge.export.qdq_placement import place_fusion_qdq, residual_adds
from tests.export.onnx_graphs import F32, I8, const, model, qdq, value

pytest.importorskip("onnxruntime")


def _conv(name: str, x: str, cin: int, cout: int, inits: list, nodes: list) -> str:
    """An INT8 Conv (int8 weight behind a per-channel DQ, pads 1) reading ``x``; returns its output."""
    w = (np.arange(cout * cin * 9).reshape(cout, cin, 3, 3) % 5 - 2).astype(np.int8)
    inits += [const(f"{name}_w", w, I8), const(f"{name}_ws", np.full(cout, 0.01), F32), const(f"{name}_wz", np.zeros(cout), I8)]
    nodes += [helper.make_node("DequantizeLinear", [f"{name}_w", f"{name}_ws", f"{name}_wz"], [f"{name}_wdq"],
                               name=f"{name}_wDQ", axis=0),
              helper.make_node("Conv", [x, f"{name}_wdq"], [f"{name}_out"], name=name, pads=[1, 1, 1, 1])]
    return f"{name}_out"


def resnet_like():
    """x -> Q/DQ -> conv1 -> Relu -> Q/DQ -> conv2 -> add1(+ downsample conv of x) -> Relu = y;
    y -> Q/DQ -> conv3 -> add2(+ y) -> output.  add1's skip is the downsample Conv output (the
    shorter path from x), add2's is y itself; ORT-style, y's DQ is shared by conv3 and add2."""
    inits = [const("s", 0.05, F32), const("z", 0, I8)]
    nodes = list(qdq("input", "x_dq", "s", "z", "x"))
    c1 = _conv("conv1", "x_dq", 4, 4, inits, nodes)
    nodes.append(helper.make_node("Relu", [c1], ["r1"], name="relu1"))
    nodes += qdq("r1", "r1_dq", "s", "z", "r1")
    c2 = _conv("conv2", "r1_dq", 4, 4, inits, nodes)
    ds = _conv("downsample", "x_dq", 4, 4, inits, nodes)
    nodes += [helper.make_node("Add", [c2, ds], ["a1"], name="add1"), helper.make_node("Relu", ["a1"], ["y"], name="relu2")]
    nodes += qdq("y", "y_dq", "s", "z", "y")
    c3 = _conv("conv3", "y_dq", 4, 4, inits, nodes)
    nodes.append(helper.make_node("Add", [c3, "y_dq"], ["output"], name="add2"))
    shape = ["batch", 4, 8, 8]
    return model(nodes, [value("input", F32, shape)], [value("output", F32, shape)], inits)


def test_residual_adds_name_the_skip_input():
    found = {a.name: a for a in residual_adds(resnet_like())}
    assert set(found) == {"add1", "add2"}
    assert found["add1"].skip_slot == 1 and found["add2"].skip_slot == 1  # the downsample path, then y
    assert found["add1"].conv_fusable and found["add2"].conv_fusable  # both branches end in a Conv


def test_placement_quantizes_the_skip_input_only_with_a_symmetric_scale():
    m = resnet_like()
    placed = place_fusion_qdq(m, {"downsample_out": (-1.0, 2.0), "conv2_out": (-9.0, 9.0)})
    nodes = {n.name: n for n in m.graph.node}
    producer = {o: n for n in m.graph.node for o in n.output}
    # add1's residual now reads a new Q/DQ pair of the downsample output; its Conv branch stays float (fig. 9)
    dq = producer[nodes["add1"].input[1]]
    assert dq.op_type == "DequantizeLinear" and producer[dq.input[0]].input[0] == "downsample_out"
    assert nodes["add1"].input[0] == "conv2_out"
    inits = {t.name: t for t in m.graph.initializer}
    from onnx import numpy_helper

    assert numpy_helper.to_array(inits[dq.input[1]]) == pytest.approx(2.0 / 127)  # ORT's symmetric int8: max(|min|, |max|) / 127
    assert numpy_helper.to_array(inits[dq.input[2]]).dtype == np.int8 and numpy_helper.to_array(inits[dq.input[2]]) == 0
    # add2's residual already shared y's DQ: nothing new
    assert nodes["add2"].input[1] == "y_dq"
    assert placed.residual_adds == 2 and placed.skip_inputs == ["add1", "add2"] and not placed.branch_inputs
    assert sum(1 for n in m.graph.node if n.op_type == "QuantizeLinear") == 4
    from corese_edge.export.qdq_rules import qdq_rule_violations

    assert qdq_rule_violations(m, strongly_typed=False) == []


def test_a_missing_range_leaves_the_tensor_float_and_says_so():
    m = resnet_like()
    placed = place_fusion_qdq(m, {})
    assert placed.missing_range == ["downsample_out"]
    assert {n.name: n for n in m.graph.node}["add1"].input[1] == "downsample_out"


def test_census_fusion_view_counts_fusable_blocks_and_boundaries():
    before = precision_census(resnet_like()).fusion
    assert (before.residual_adds, before.residual_quantized) == (2, 1)
    assert {w.name: w.fusable for w in before.weighted} == {"conv1": True, "conv2": False, "downsample": False,
                                                           "conv3": False}
    assert "float residual" in {w.name: w.reason for w in before.weighted}["conv2"]
    # INT8->FP16: y's DQ feeds the float add2; FP16->INT8: the graph input and relu2 (not fused) feed a Q
    assert (before.int8_to_fp16, before.fp16_to_int8) == (1, 2)

    m = resnet_like()
    place_fusion_qdq(m, {"downsample_out": (-1.0, 2.0)})
    after = precision_census(m).fusion
    assert (after.residual_adds, after.residual_quantized) == (2, 2)
    fused = {w.name: w for w in after.weighted}
    assert {n: w.fusable for n, w in fused.items()} == {"conv1": True, "conv2": True, "downsample": True, "conv3": False}
    assert fused["conv2"].chain == ("Add", "Relu", "QuantizeLinear")  # Conv + Add(quantized residual) + ReLU + Q
    assert fused["conv3"].reason == "output is a graph output"
    # relu2 now runs inside conv2's INT8 kernel: only the graph input's Q and y's DQ into add2 remain
    assert (after.int8_to_fp16, after.fp16_to_int8) == (1, 1)
    d = precision_census(m).to_dict()["fusion"]
    assert d["fusable"] == 3 and d["weighted_int8"] == 4 and d["not_fusable"][0]["name"] == "conv3"
    assert "TensorRT INT8 fusion: 3 of 4" in precision_census(m).table()


def test_a_float_graph_has_no_fusion_view():
    from tests.export.onnx_graphs import mixed_model

    c = precision_census(mixed_model())
    assert c.fusion is None and "fusion" not in c.to_dict()
