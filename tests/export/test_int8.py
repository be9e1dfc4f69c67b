"""Stage 3: INT8 Q/DQ (TensorRT S8S8 and CPU U8S8), streaming calibration, kept layers, auto-keep search."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from corese_edge.data.calibration import CalibrationBatches
from corese_edge.data.layouts import load_index
from corese_edge.errors import UserError
from corese_edge.export import int8 as q
from corese_edge.export.qdq_rules import qdq_rule_violations
from corese_edge.export.comparator import onnx_logits
from corese_edge.preprocessing import Preprocessing

PREP = Preprocessing(size=32)


@pytest.fixture(scope="module")
def calib_paths(synthetic_data):
    return [s.path for s in load_index(synthetic_data).split("train")[::20]]  # 14 images, all classes


@pytest.fixture(scope="module")
def prepared(lite_onnx, tmp_path_factory, calib_paths):
    """(work dir, pre-processed model, ranges per flavour) for the tiny model."""
    work = tmp_path_factory.mktemp("int8")
    pre = q.prepare_for_quantization(lite_onnx, work / "pre.onnx")
    ranges = {}
    for flavour in ("s8s8", "u8s8"):
        reader = q.StreamingCalibrationReader(CalibrationBatches(calib_paths, PREP, 4))
        ranges[flavour] = q.calibrate(pre, reader, work / f"ranges-{flavour}.json", "minmax", flavour)
        assert reader.images == len(calib_paths)
    return work, pre, ranges


@pytest.fixture(scope="module")
def s8s8(prepared, lite_onnx):
    work, pre, ranges = prepared
    return q.quantize_int8(pre, work / "s8s8.onnx", ranges["s8s8"], "s8s8", metadata_from=lite_onnx)


@pytest.fixture(scope="module")
def s8s8_fp32(prepared, lite_onnx):
    """The same Q/DQ graph with FP32 everywhere that is not INT8 (what auto-keep ranks on)."""
    work, pre, ranges = prepared
    return q.quantize_int8(pre, work / "s8s8-fp32.onnx", ranges["s8s8"], "s8s8", metadata_from=lite_onnx,
                           high_precision="fp32")


def _types(proto):
    """Element type of every tensor (ONNX type inference, initializers, Constant outputs)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {t.name: t.data_type for t in inferred.graph.initializer}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    for n in inferred.graph.node:
        if n.op_type == "Constant":
            types[n.output[0]] = n.attribute[0].t.data_type
    return types


_NOT_COMPUTE = {"QuantizeLinear", "DequantizeLinear", "Cast", "Constant", "Shape", "Gather", "Unsqueeze",
                "Concat", "Reshape", "Flatten", "Transpose", "Identity"}


def _compute_precisions(proto):
    """node name -> the float type its float inputs have (compute nodes only)."""
    types = _types(proto)
    out = {}
    for n in proto.graph.node:
        if n.op_type in _NOT_COMPUTE:
            continue
        floats = {types.get(i) for i in n.input if i and types.get(i) in (TensorProto.FLOAT, TensorProto.FLOAT16)}
        if floats:
            assert len(floats) == 1, f"{n.name} mixes float types"  # strong typing needs one type
            out[n.name] = floats.pop()
    return out


def _zero_points(proto):
    inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return [(n, inits[n.input[2]]) for n in proto.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


def test_tensorrt_flavour_zero_points_are_all_int8_zeros(s8s8):
    proto = onnx.load(str(s8s8))
    zps = _zero_points(proto)
    assert len(zps) > 50
    for node, zp in zps:
        assert zp.dtype == np.int8, node.name
        assert not zp.any(), node.name
    assert qdq_rule_violations(proto) == []


def test_tensorrt_flavour_weights_are_per_channel_and_biases_float(s8s8):
    proto = onnx.load(str(s8s8))
    inits = {t.name: t for t in proto.graph.initializer}
    weight_dqs = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                  and len(inits[n.input[0]].dims) == 4]
    assert weight_dqs
    for n in weight_dqs:
        w, scale = inits[n.input[0]], inits[n.input[1]]
        assert w.data_type == TensorProto.INT8
        assert list(scale.dims) == [w.dims[0]] and w.dims[0] > 1  # one scale per output channel
        assert np.abs(numpy_helper.to_array(w)).max() <= 127  # symmetric weights: never -128
    assert not any(t.data_type == TensorProto.INT32 for t in proto.graph.initializer)  # no int32 bias
    weight_dq_out = {n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    assert {n.op_type for n in proto.graph.node if set(n.input) & weight_dq_out} == {"Conv", "Gemm", "MatMul"}
    # every activation Q/DQ pair exists because a weighted op reads it (TensorRT's placement), or, since
    # issue 17, because TensorRT's fusion placement puts it on a residual Add, a pooling op or a
    # Conv -> LayerNorm input (corese_edge/export/qdq_placement.py)
    consumers: dict[str, set] = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, set()).add(n.op_type)
    q_to_dq = {n.input[0]: n.output[0] for n in proto.graph.node if n.op_type == "DequantizeLinear"}
    for n in proto.graph.node:
        if n.op_type == "QuantizeLinear":
            assert consumers[q_to_dq[n.output[0]]] & {"Conv", "Gemm", "MatMul", "Add", "MaxPool", "AveragePool",
                                                      "GlobalAveragePool", "LayerNormalization"}, n.name


def test_tensorrt_flavour_is_int8_and_fp16_everywhere_else_with_fp32_io(s8s8, s8s8_fp32):
    proto = onnx.load(str(s8s8))
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {q.FP16_QDQ_OPSET}
    assert proto.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert proto.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    precisions = _compute_precisions(proto)
    assert {"LayerNormalization", "Add", "Mul", "Erf"} <= {n.op_type for n in proto.graph.node if n.name in precisions}
    assert set(precisions.values()) == {TensorProto.FLOAT16}  # no FP32 compute node at all
    assert set(_compute_precisions(onnx.load(str(s8s8_fp32))).values()) == {TensorProto.FLOAT}
    types, inits = _types(proto), {t.name: t for t in proto.graph.initializer}
    consumers = {}
    for n in proto.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    dqs = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert dqs
    for dq in dqs:
        assert inits[dq.input[1]].data_type == TensorProto.FLOAT16  # FP16 scale -> FP16 output
        for c in consumers[dq.output[0]]:
            # the DQ feeds its consumers directly (no Cast between), in their type (strong typing);
            # a shared DQ also feeds the other readers of its tensor (a residual Add, the SE Mul)
            assert c.op_type != "Cast", dq.name
            assert {types[i] for i in c.input if types.get(i) in (TensorProto.FLOAT, TensorProto.FLOAT16)} \
                == {TensorProto.FLOAT16}, c.name
    assert qdq_rule_violations(proto) == []
    np.testing.assert_array_equal(  # same int8 weights as the FP32-scale graph: only the float parts changed
        sorted(numpy_helper.to_array(t).sum() for t in proto.graph.initializer if t.data_type == TensorProto.INT8),
        sorted(numpy_helper.to_array(t).sum() for t in onnx.load(str(s8s8_fp32)).graph.initializer
               if t.data_type == TensorProto.INT8))


def test_named_layers_and_op_types_stay_fp32_in_the_fp16_graph(prepared):
    work, pre, ranges = prepared
    gemm = [n for n in q.quantized_nodes(onnx.load(str(q.quantize_int8(pre, work / "a.onnx", ranges["s8s8"], "s8s8"))))
            if "Gemm" in n][0]
    out = q.quantize_int8(pre, work / "kept-fp32.onnx", ranges["s8s8"], "s8s8", keep_fp=[gemm],
                          keep_fp32_ops=("LayerNormalization",))
    proto = onnx.load(str(out))
    op_of = {n.name: n.op_type for n in proto.graph.node}
    fp32 = {name for name, t in _compute_precisions(proto).items() if t == TensorProto.FLOAT}
    assert gemm in fp32 and gemm not in q.quantized_nodes(proto)
    assert {n for n in fp32 if op_of[n] == "LayerNormalization"} == {n for n, op in op_of.items() if op == "LayerNormalization"}
    assert {op_of[n] for n in fp32} == {"Gemm", "LayerNormalization"}  # nothing else
    with pytest.raises(UserError, match="inside an FP16 graph"):
        q.quantize_int8(pre, work / "b.onnx", ranges["s8s8"], "s8s8", high_precision="fp32",
                        keep_fp32_ops=("LayerNormalization",))


def test_weakly_typed_form_for_tensorrt_8_6_is_the_same_graph_in_fp32_at_opset_17(s8s8, s8s8_fp32):
    half = onnx.load(str(s8s8))
    weak = q.weakly_typed_qdq(half)
    assert {o.version for o in weak.opset_import if o.domain in ("", "ai.onnx")} == {q.WEAKLY_TYPED_OPSET}
    assert not any(t.data_type == TensorProto.FLOAT16 for t in weak.graph.initializer)
    assert set(_compute_precisions(weak).values()) == {TensorProto.FLOAT}
    assert not any(n.op_type == "Cast" and n.attribute[0].i == TensorProto.FLOAT16 for n in weak.graph.node)
    scales = {n.name: numpy_helper.to_array({t.name: t for t in g.graph.initializer}[n.input[1]])
              for g in (half,) for n in g.graph.node if n.op_type == "DequantizeLinear"}
    weak_inits = {t.name: t for t in weak.graph.initializer}
    for n in weak.graph.node:
        if n.op_type == "DequantizeLinear" and n.name in scales:  # the artifact's own scales, widened exactly
            np.testing.assert_array_equal(numpy_helper.to_array(weak_inits[n.input[1]]), scales[n.name].astype(np.float32))
    assert qdq_rule_violations(weak, strongly_typed=False) == []
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    ref = onnx_logits(s8s8_fp32, x, reference_arithmetic=True)
    np.testing.assert_allclose(onnx_logits(weak, x, reference_arithmetic=True), ref, atol=5e-3)


def test_cpu_flavour_is_u8s8(prepared, lite_onnx):
    work, pre, ranges = prepared
    out = q.quantize_int8(pre, work / "u8s8.onnx", ranges["u8s8"], "u8s8", metadata_from=lite_onnx)
    proto = onnx.load(str(out))
    kinds = {zp.dtype for _, zp in _zero_points(proto)}
    assert np.dtype(np.uint8) in kinds  # activations
    assert np.dtype(np.int8) in kinds  # weights
    assert qdq_rule_violations(proto)  # not TensorRT-ready, by design
    assert {o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")} == {17}  # untouched: FP32, opset 17
    assert set(_compute_precisions(proto).values()) == {TensorProto.FLOAT}
    assert sorted(p.key for p in proto.metadata_props) == sorted(p.key for p in onnx.load(str(lite_onnx)).metadata_props)


def test_streamed_calibration_equals_one_big_batch(prepared, calib_paths):
    from onnxruntime.quantization.calibrate import load_tensors_data

    work, pre, ranges = prepared
    whole = q.calibrate(pre, q.StreamingCalibrationReader(CalibrationBatches(calib_paths, PREP, len(calib_paths))),
                        work / "whole.json", "minmax", "s8s8")
    streamed = load_tensors_data(ranges["s8s8"]).data
    single = load_tensors_data(whole).data
    assert set(streamed) == set(single) and len(single) > 20
    for name in single:
        np.testing.assert_allclose(streamed[name].range_value, single[name].range_value, rtol=1e-6, atol=1e-7)


def test_reader_decodes_one_batch_at_a_time():
    made = []

    def batches():
        for i in range(5):
            made.append(i)
            yield np.full((2, 3, 4, 4), i, dtype=np.float32)

    reader = q.StreamingCalibrationReader(batches(), total=5)
    first = reader.get_next()
    assert made == [0] and first["input"][0, 0, 0, 0] == 0
    assert len(list(reader)) == 4 and made == [0, 1, 2, 3, 4]
    assert reader.get_next() is None and reader.images == 10


def test_keep_fp_leaves_the_named_layers_unquantized(prepared, lite_onnx):
    work, pre, ranges = prepared
    names = q.quantized_nodes(onnx.load(str(q.quantize_int8(pre, work / "all.onnx", ranges["s8s8"], "s8s8"))))
    keep = q.match_nodes(["*Gemm*"], names)
    assert keep and all("Gemm" in k for k in keep)
    out = q.quantize_int8(pre, work / "kept.onnx", ranges["s8s8"], "s8s8", keep_fp=keep)
    assert set(q.quantized_nodes(onnx.load(str(out)))) == set(names) - set(keep)
    with pytest.raises(UserError, match="matches no quantizable layer"):
        q.match_nodes(["/no/such/layer"], names)


def test_keep_in_float_rebuilds_the_fp32_function(prepared, s8s8_fp32, lite_onnx):
    work, pre, _ = prepared
    qdq, fp = onnx.load(str(s8s8_fp32)), onnx.load(str(pre))
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    fp32 = onnx_logits(lite_onnx, x)
    int8 = onnx_logits(qdq, x, reference_arithmetic=True)
    everything = q.keep_in_float(qdq, fp, q.quantized_nodes(qdq))
    assert not any(n.op_type == "DequantizeLinear" for n in everything.graph.node)
    np.testing.assert_allclose(onnx_logits(everything, x), fp32, atol=1e-4)
    assert np.max(np.abs(int8 - fp32)) > 1e-4  # the quantized model really differs
    one = q.quantized_nodes(qdq)[0]
    only_one = q.keep_in_float(qdq, fp, set(q.quantized_nodes(qdq)) - {one})
    assert q.quantized_nodes(only_one) == [one]


def test_search_keep_finds_the_fewest_layers():
    ranking = [(f"layer{i}", 10.0 - i) for i in range(10)]
    evaluated = []

    def drop_of(kept):  # each kept layer (in rank order) removes 1 pp of a 6 pp drop
        evaluated.append(len(kept))
        return 6.0 - len(kept)

    result = q.search_keep(ranking, drop_of, limit_pp=1.0, drop_before=6.0)
    assert result.reached and result.kept == tuple(f"layer{i}" for i in range(5))
    assert result.drop_pp_after == 1.0
    assert len(evaluated) < 10  # doubling + bisection, not a linear scan
    unreachable = q.search_keep(ranking, lambda kept: 3.0, limit_pp=1.0, drop_before=6.0)
    assert not unreachable.reached and unreachable.drop_pp_after == 3.0
    nothing = q.search_keep(ranking, drop_of, limit_pp=7.0, drop_before=6.0)
    assert nothing.kept == () and nothing.reached


def test_rank_sensitivity_puts_the_most_damaging_layer_first():
    damage = {"a": 0.1, "b": 0.9, "c": 0.5}
    reference = np.zeros((2, 3), dtype=np.float32)

    class FakeModel:
        def __init__(self, quantized):
            self.quantized = quantized

    def logits_of(model):
        return reference + damage[model.quantized]

    import corese_edge.export.int8 as module

    original = module.keep_in_float
    module.keep_in_float = lambda qdq, fp, keep: FakeModel((set(damage) - set(keep)).pop())
    try:
        ranking = q.rank_sensitivity(None, None, list(damage), logits_of, reference)
    finally:
        module.keep_in_float = original
    assert [name for name, _ in ranking] == ["b", "c", "a"]
    assert ranking[0][1] == pytest.approx(0.9)


def test_tensorrt_flavour_quantizes_every_residual_input_so_conv_add_relu_fuses(s8s8):
    """Issue 17: every residual Add of coresse-lite (ResNet-18 and ConvNeXt-Atto) reads a quantized
    residual, so every INT8 Conv before an Add fuses Conv + Add + ReLU + Q in TensorRT."""
    from corese_edge.export.census import precision_census

    fusion = precision_census(s8s8).fusion
    assert fusion.residual_adds == 8 + 12  # ResNet-18's basic blocks and ConvNeXt-Atto's blocks
    assert fusion.residual_quantized == fusion.residual_adds
    fused_adds = [w for w in fusion.weighted if w.fusable and "Add" in w.chain]
    assert len(fused_adds) >= 8  # at least every ResNet block's second conv
    assert not [w for w in fusion.weighted if "float residual" in w.reason]
    assert qdq_rule_violations(s8s8) == []


def test_cpu_flavour_keeps_its_placement(prepared, lite_onnx):
    """The u8s8 flavour neither calibrates for nor runs the TensorRT fusion placement."""
    assert q.op_types_to_calibrate(q.get_flavour("u8s8")) == list(q.CPU_OP_TYPES)
    assert not q.get_flavour("u8s8").fusion_placement
    work, pre, ranges = prepared
    out = q.quantize_int8(pre, work / "u8s8-placement.onnx", ranges["u8s8"], "u8s8", metadata_from=lite_onnx)
    proto = onnx.load(str(out))
    assert not [n.name for n in proto.graph.node if n.name.endswith(("_fusion_QuantizeLinear", "_fusion_DequantizeLinear"))]
    quantized = {n.op_type for n in proto.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
                 and any(i.endswith("DequantizeLinear_Output") for i in n.input)}
    assert "LayerNormalization" not in quantized and "MaxPool" not in quantized
