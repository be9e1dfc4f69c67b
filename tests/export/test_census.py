"""Precision census: TensorRT strong-typing precision and FLOPs per node, on hand-made graphs that pin
each rule and on real FP16 / INT8 graphs of the tiny model."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from corese_edge.errors import UserError
from corese_edge.export.census import PrecisionCensus, census_table, precision_census
from tests.export.onnx_graphs import F16, F32, I8, const, int8_conv_model, mixed_model, model, qdq, save, value

CONV_FLOPS_B1 = 2 * (4 * 8 * 8) * (3 * 3 * 3)  # output elements x MACs per element x 2


def by_name(census: PrecisionCensus) -> dict:
    return {n.name: n for n in census.nodes}


def test_dq_conv_is_int8_and_qdq_nodes_are_not_counted():
    c = precision_census(int8_conv_model())
    nodes = by_name(c)
    assert set(nodes) == {"conv", "relu"}  # Q, DQ (activation and weight) are not compute
    assert nodes["conv"].precision == "int8" and nodes["conv"].flops == CONV_FLOPS_B1
    assert nodes["relu"].precision == "fp32" and nodes["relu"].flops == 4 * 8 * 8
    assert c.node_count("int8") == 1 and c.node_count("fp32") == 1
    assert c.int8_flop_share == pytest.approx(CONV_FLOPS_B1 / (CONV_FLOPS_B1 + 256))


def test_conv_with_float_weight_is_not_int8():
    """Only the activation dequantized: TensorRT has no INT8 kernel for it, it runs in float."""
    m = int8_conv_model()
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    conv.input[1] = "w_float"
    m.graph.initializer.append(const("w_float", np.ones((4, 3, 3, 3)), F32))
    assert by_name(precision_census(m))["conv"].precision == "fp32"


def test_types_flops_and_not_compute_ops_of_a_mixed_graph():
    c = precision_census(mixed_model(), batch=1)
    nodes = by_name(c)
    # Transpose, Cast, Shape, Slice, Concat, Reshape and int64 arithmetic are not compute nodes
    assert set(nodes) == {"add32", "ln16", "matmul"}
    assert nodes["add32"].precision == "fp32" and nodes["add32"].flops == 5 * 6
    assert nodes["ln16"].precision == "fp16" and nodes["ln16"].flops == 8 * 6 * 5
    assert nodes["matmul"].precision == "fp32" and nodes["matmul"].flops == 2 * 6 * 7 * 5
    assert [n.name for n in c.fp32_nodes] == ["add32", "matmul"]
    assert c.precisions == ("int8", "fp16", "fp32")
    assert c.node_count("fp16") == 1 and c.flops("fp16") == 240
    assert c.total_flops == 30 + 240 + 420
    assert c.flop_share("fp32") == pytest.approx(450 / 690)
    assert c.unknown_flops == ()


def test_dynamic_batch_takes_the_given_batch():
    one, four = precision_census(mixed_model(), batch=1), precision_census(mixed_model(), batch=4)
    assert four.total_flops == 4 * one.total_flops and four.batch == 4
    assert by_name(precision_census(int8_conv_model(), batch=3))["conv"].flops == 3 * CONV_FLOPS_B1
    with pytest.raises(UserError, match="batch"):
        precision_census(mixed_model(), batch=0)


def test_dq_op_q_pattern_is_int8_but_dq_op_alone_is_float():
    """DQ -> MaxPool -> Q runs in INT8; a DQ -> Add read by a float consumer runs in the DQ's type."""
    nodes = qdq("input", "x", "s", "zp", "in") + [
        helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
    ] + qdq("p", "pq", "s", "zp", "pool_out") + [
        helper.make_node("Add", ["pq", "pq"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["output"], name="relu"),
    ]
    m = model(nodes, [value("input", F32, ["batch", 2, 4, 4])], [value("output", F32, ["batch", 2, 2, 2])],
              [const("s", 0.1, F32), const("zp", 0, I8)])
    nodes = by_name(precision_census(m))
    assert nodes["pool"].precision == "int8" and nodes["pool"].flops == 8 * 4  # 8 outputs x 2x2 window
    assert nodes["add"].precision == "fp32" and nodes["relu"].precision == "fp32"


def test_weight_dq_through_transpose_still_int8():
    nodes = qdq("input", "x", "s", "zp", "in") + [
        helper.make_node("DequantizeLinear", ["w", "s", "zp"], ["w_dq"], name="w_DQ"),
        helper.make_node("Transpose", ["w_dq"], ["w_t"], name="w_T", perm=[1, 0]),
        helper.make_node("MatMul", ["x", "w_t"], ["output"], name="mm"),
    ]
    m = model(nodes, [value("input", F32, ["batch", 6])], [value("output", F32, ["batch", 3])],
              [const("s", 0.1, F32), const("zp", 0, I8), const("w", np.ones((3, 6)), I8)])
    mm = by_name(precision_census(m, batch=2))["mm"]
    assert mm.precision == "int8" and mm.flops == 2 * 2 * 3 * 6


def test_gemm_and_grouped_conv_flops():
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], name="grouped", group=2, pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "fc"], ["output"], name="fc", transB=1)]
    m = model(nodes, [value("input", F32, ["batch", 4, 5, 5])], [value("output", F32, ["batch", 10])],
              [const("w", np.ones((4, 2, 3, 3)), F32), const("fc", np.ones((10, 4)), F32)])
    nodes = by_name(precision_census(m, batch=2))
    assert nodes["grouped"].flops == 2 * (2 * 4 * 5 * 5) * (2 * 3 * 3)  # each output reads C_in/group = 2 channels
    assert nodes["gap"].flops == 2 * 4 * 5 * 5  # one per input element
    assert nodes["fc"].flops == 2 * (2 * 10) * 4
    assert "flat" not in nodes


def test_unknown_shapes_fall_back_to_unknown_flops():
    """An input without a shape: the precision still comes from its type, FLOPs are 'unknown'."""
    m = model([helper.make_node("Sigmoid", ["input"], ["output"], name="sig")],
              [value("input", F16, None)], [value("output", F16, None)])
    c = precision_census(m)
    assert by_name(c)["sig"].precision == "fp16" and by_name(c)["sig"].flops is None
    assert c.unknown_flops == ("sig",) and c.total_flops == 0 and c.flop_share("fp16") == 0.0
    assert "FLOPs unknown" in c.table()


def test_failed_shape_inference_uses_declared_types(monkeypatch):
    import onnx.shape_inference

    def broken(*a, **k):
        raise RuntimeError("inference failed")

    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", broken)
    m = int8_conv_model()
    m.graph.value_info.append(value("y", F32, ["batch", 4, 8, 8]))
    c = precision_census(m, batch=2)
    assert not c.inferred and "shape inference failed" in c.table()
    conv = by_name(c)["conv"]
    assert conv.precision == "int8" and conv.flops == 2 * CONV_FLOPS_B1


def test_fp32_nodes_outside_keeps_by_name_pattern_and_op_type():
    c = precision_census(mixed_model())
    assert [n.name for n in c.fp32_nodes_outside([])] == ["add32", "matmul"]
    assert [n.name for n in c.fp32_nodes_outside(["add32"])] == ["matmul"]
    assert [n.name for n in c.fp32_nodes_outside(["mat*"])] == ["add32"]
    assert c.fp32_nodes_outside(["MatMul", "Add"]) == []


def test_to_dict_is_json_and_table_lists_fp32_nodes(tmp_path):
    path = save(mixed_model(), tmp_path / "mixed.onnx")
    c = precision_census(path)
    d = json.loads(json.dumps(c.to_dict()))
    assert d["total_flops"] == 690 and d["compute_nodes"] == 3
    assert d["precisions"]["fp16"] == {"nodes": 1, "flops": 240, "flop_share": pytest.approx(240 / 690, abs=1e-6)}
    assert [n["name"] for n in d["fp32_nodes"]] == ["add32", "matmul"]
    assert d["op_types"]["MatMul"] == {"fp32": {"nodes": 1, "flops": 420}}
    table = c.table()
    assert census_table(d, title="mixed.onnx") == table
    lines = table.splitlines()
    assert lines[0].startswith("precision census of mixed.onnx at batch 1: 3 compute nodes")
    assert any(line.split()[:2] == ["fp16", "1"] and line.endswith("34.78%") for line in lines)
    assert any(line.split()[:2] == ["matmul", "MatMul"] for line in lines)
    assert not any(line.split()[:1] == ["ln16"] for line in lines)  # only FP32 nodes are listed


def test_bad_paths_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        precision_census(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_text("this is not protobuf")
    with pytest.raises(UserError, match="not an ONNX model"):
        precision_census(bad)


# ------------------------------------------------------------------ real graphs of the tiny model


def test_fp32_export_is_all_fp32_and_fp16_export_only_keeps_what_it_names(lite_onnx, tmp_path):
    from corese_edge.export.fp16 import convert_fp16

    fp32 = precision_census(lite_onnx)
    assert fp32.flop_share("fp32") == 1.0 and fp32.unknown_flops == ()
    half = precision_census(convert_fp16(lite_onnx, tmp_path / "m.fp16.onnx", keep_fp32_ops=("LayerNormalization",)))
    kept = half.fp32_nodes
    assert kept and {n.op_type for n in kept} == {"LayerNormalization"}
    assert half.fp32_nodes_outside(["LayerNormalization"]) == []
    assert half.total_flops == fp32.total_flops  # the casts add no compute
    assert half.node_count("fp16") + half.node_count("fp32") == len(fp32.nodes)


@pytest.fixture(scope="module")
def tiny_int8(lite_onnx, tmp_path_factory):
    """The tiny model quantized with the ORT path (TensorRT flavour), calibrated on random batches."""
    from corese_edge.export import int8 as q

    work = tmp_path_factory.mktemp("census_int8")
    pre = q.prepare_for_quantization(lite_onnx, work / "pre.onnx")
    rng = np.random.default_rng(0)
    reader = q.StreamingCalibrationReader([rng.standard_normal((4, 3, 32, 32)).astype(np.float32) for _ in range(2)])
    ranges = q.calibrate(pre, reader, work / "ranges.json", "minmax", "s8s8")
    return q.quantize_int8(pre, work / "model.int8.onnx", ranges, "s8s8", metadata_from=lite_onnx)


@pytest.mark.slow
def test_real_ort_int8_graph(tiny_int8, lite_onnx):
    import onnx

    from corese_edge.export.qdq_rules import qdq_rule_violations

    c = precision_census(tiny_int8)
    proto = onnx.load(str(tiny_int8))
    weight_dq = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"
                 and n.input[0] in {t.name for t in proto.graph.initializer}}
    quantized = {n.name for n in proto.graph.node if n.op_type in ("Conv", "Gemm", "MatMul") and set(n.input) & weight_dq}
    int8_nodes = {n.name for n in c.nodes if n.precision == "int8"}
    assert quantized and quantized <= int8_nodes
    # since issue 17 the TensorRT fusion placement (export/qdq_placement.py) also wraps LayerNorms after a
    # Conv, residual Adds and pooling in DQ -> op -> Q; nothing else becomes INT8
    assert {n.op_type for n in c.nodes if n.name in int8_nodes - quantized} <= {"LayerNormalization", "Add", "MaxPool"}
    # the TensorRT flavour quantizes the weighted ops only; every other layer runs in the flavour's
    # high precision (FP32 before issue 7, FP16 after): the census reads it from the graph's types
    from corese_edge.export import int8 as q

    high = getattr(q.get_flavour("s8s8"), "high_precision", "fp32")
    rest = [n for n in c.nodes if n.precision != "int8"]
    assert {n.op_type for n in rest} >= {"LayerNormalization", "Erf", "Add"}
    assert {n.precision for n in rest} == {high}
    assert c.int8_flop_share > 0.95
    assert c.total_flops == pytest.approx(precision_census(lite_onnx).total_flops, rel=1e-3)
    assert qdq_rule_violations(tiny_int8) == []
