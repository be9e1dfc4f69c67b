"""The ``cpu`` INT8 flavour (U8S8) is placed so that ONNX Runtime's CPU kernels fuse it (issue 9).

Two small hand-built graphs stand for the two halves of CoRes-SE: a ConvNeXt-style MLP
(MatMul -> bias Add -> erf-GELU -> MatMul -> bias Add, as torch exports ``nn.Linear`` + ``nn.GELU``)
and a ResNet-style Conv -> Relu -> Conv.  Each is calibrated and quantized by the real stages, then
ONNX Runtime's optimized graph is read back (``SessionOptions.optimized_model_filepath``, at the
portable EXTENDED level) to see what it will run.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from corese_edge.export import int8 as q

RNG = np.random.default_rng(0)
TOKENS, DIM, HIDDEN = 49, 32, 128


def _mlp_graph():
    def init(name, *shape, scale=0.2):
        return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)

    nodes = [
        helper.make_node("MatMul", ["input", "w1"], ["h0"], name="fc1/MatMul"),
        helper.make_node("Add", ["b1", "h0"], ["h1"], name="fc1/Add"),
        # erf-GELU as torch writes it: x * 0.5 * (1 + erf(x / sqrt(2)))
        helper.make_node("Div", ["h1", "sqrt2"], ["g0"], name="act/Div"),
        helper.make_node("Erf", ["g0"], ["g1"], name="act/Erf"),
        helper.make_node("Add", ["g1", "one"], ["g2"], name="act/Add"),
        helper.make_node("Mul", ["h1", "g2"], ["g3"], name="act/Mul"),
        helper.make_node("Mul", ["g3", "half"], ["g4"], name="act/Mul_1"),
        helper.make_node("MatMul", ["g4", "w2"], ["y0"], name="fc2/MatMul"),
        helper.make_node("Add", ["b2", "y0"], ["y"], name="fc2/Add"),
    ]
    inits = [init("w1", DIM, HIDDEN), init("b1", HIDDEN), init("w2", HIDDEN, DIM), init("b2", DIM),
             numpy_helper.from_array(np.float32(np.sqrt(2.0)), "sqrt2"), numpy_helper.from_array(np.float32(1.0), "one"),
             numpy_helper.from_array(np.float32(0.5), "half")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", TOKENS, DIM])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", TOKENS, DIM])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (1, TOKENS, DIM)


def _conv_graph():
    def init(name, *shape):
        return numpy_helper.from_array((RNG.standard_normal(shape) * 0.2).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["y"], name="conv2"),
    ]
    inits = [init("w1", 16, 8, 3, 3), init("b1", 16), init("w2", 16, 16, 1, 1), init("b2", 16)]
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 12, 12])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), (1, 8, 12, 12)


@pytest.fixture(scope="module", params=["mlp", "convs"])
def quantized(request, tmp_path_factory):
    """(FP32 path, u8s8 Q/DQ path, ORT's optimized Q/DQ graph, input shape) for one graph."""
    model, shape = {"mlp": _mlp_graph, "convs": _conv_graph}[request.param]()
    work = tmp_path_factory.mktemp(f"ort-int8-{request.param}")
    fp32 = work / "model.onnx"
    onnx.save(model, str(fp32))
    pre = q.prepare_for_quantization(fp32, work / "pre.onnx")
    batches = [RNG.uniform(-2, 2, shape).astype(np.float32) for _ in range(4)]
    ranges = q.calibrate(pre, q.StreamingCalibrationReader(batches), work / "ranges.json", "minmax", "u8s8")
    int8 = q.quantize_int8(pre, work / "model.int8.onnx", ranges, "u8s8")
    opts = ort.SessionOptions()
    # EXTENDED: the QDQ fusions and BiasGelu/Gelu fusion, without the hardware-specific NCHWc layouts
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(work / "optimized.onnx")
    ort.InferenceSession(str(int8), opts, providers=["CPUExecutionProvider"])
    return request.param, fp32, int8, onnx.load(str(work / "optimized.onnx")), shape


def _ops(model) -> collections.Counter:
    return collections.Counter((n.domain + ":" if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in model.graph.node)


def test_only_the_weighted_ops_read_quantized_tensors(quantized):
    _, _, int8, _, _ = quantized
    proto = onnx.load(str(int8))
    op_of = {n.name: n.op_type for n in proto.graph.node}
    readers = {op_of[name] for name in q.quantized_nodes(proto)}
    # a Relu between two quantized tensors is dropped by ORT (its Q clamps at the zero point already)
    assert readers and readers <= {"Conv", "MatMul", "Gemm", "Relu"} and readers & {"Conv", "MatMul"}, readers


def test_matmul_outputs_stay_float_and_conv_outputs_are_quantized(quantized):
    _, _, int8, _, _ = quantized
    proto = onnx.load(str(int8))
    consumers = collections.defaultdict(list)
    for n in proto.graph.node:
        for i in n.input:
            consumers[i].append(n.op_type)
    for n in proto.graph.node:
        if n.op_type in ("MatMul", "Gemm"):
            assert "QuantizeLinear" not in consumers[n.output[0]], n.name
        if n.op_type == "Conv":  # QLinearConv needs its output quantized (DQ -> Conv -> Q)
            assert consumers[n.output[0]] == ["QuantizeLinear"] or "Relu" in consumers[n.output[0]], n.name


def test_onnx_runtime_fuses_every_weighted_op_and_the_gelu(quantized):
    name, _, _, optimized, _ = quantized
    ops = _ops(optimized)
    assert not {"Conv", "MatMul", "Gemm"} & set(ops), ops  # no float compute left
    if name == "mlp":
        # DQ -> MatMul (float out) becomes MatMulIntegerToFloat; the bias Add and the erf-GELU
        # after it fuse into one BiasGelu as in the FP32 graph, no Erf runs
        assert ops["com.microsoft:MatMulIntegerToFloat"] == 2, ops
        assert "Erf" not in ops and ops["com.microsoft:BiasGelu"] + ops["com.microsoft:Gelu"] == 1, ops
    else:
        assert ops["QLinearConv"] == 2, ops


#: ONNX Runtime's docs (quantization, "When and why do I need to try U8U8?"): on x86-64 with AVX2 or
#: AVX-512 but no VNNI, its U8S8 kernels use VPMADDUBSW, whose int16 pair sums can saturate.  On such
#: a CPU (an AVX2-only AMD EPYC in CI) this test's fused graph drifted 6.7 % where VNNI hosts stay
#: under 5 %; the unfused Q/DQ arithmetic has no integer kernel and holds 5 % everywhere.
SATURATING_BOUND = 0.15


def _int8_kernels_saturate() -> bool:
    from corese_edge.machine import cpu_isa

    isa = cpu_isa()
    return not (isa.get("avx512_vnni") or isa.get("avx_vnni") or isa.get("amx_tile"))


def test_quantized_graph_tracks_fp32(quantized):
    """The quantization itself (scales, zero points, which ops) is judged by the unfused Q/DQ
    arithmetic on every CPU; ORT's fused integer kernels are held to the same 5 % where they do not
    saturate, and to a documented looser bound where they do."""
    from corese_edge.runtime.ort import OrtRunner

    _, fp32, int8, _, shape = quantized
    x = np.random.default_rng(7).uniform(-2, 2, shape).astype(np.float32)
    ref = ort.InferenceSession(str(fp32), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with OrtRunner(int8, providers=["cpu"], reference_arithmetic=True) as r:
        unfused = next(iter(r.infer({"input": x}).values()))
    assert np.abs(unfused - ref).mean() < 0.05 * np.abs(ref).mean()
    got = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    bound = SATURATING_BOUND if _int8_kernels_saturate() else 0.05
    assert np.abs(got - ref).mean() < bound * np.abs(ref).mean()
