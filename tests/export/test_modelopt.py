"""``--quantizer modelopt``: real NVIDIA ModelOpt ONNX PTQ on the tiny model (the ``[modelopt]`` extra, CPU only).

ModelOpt runs in a child process; each real run takes some 20-40 s here, so the module makes two
(FP16 and FP32 high precision) and the tests read their files.
"""
from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from corese_edge.data.calibration import CalibrationBatches
from corese_edge.data.layouts import load_index
from corese_edge.errors import MissingExtra, UserError
from corese_edge.export import int8 as q
from corese_edge.export.comparator import onnx_logits
from corese_edge.export.onnx_fp32 import read_metadata
from corese_edge.export.qdq_rules import qdq_rule_violations
from corese_edge.preprocessing import Preprocessing

pytest.importorskip("modelopt", reason="needs the [modelopt] extra")
from corese_edge.export.modelopt import quantize_modelopt  # noqa: E402

pytestmark = pytest.mark.slow

PREP = Preprocessing(size=32)
KEEP = "/layer1/layer1.0/conv1/Conv"
WEIGHTED = ("Conv", "Gemm", "MatMul")


def _md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images(synthetic_data):
    index = load_index(synthetic_data)
    calib = [s.path for s in index.split("train")[::20]]  # 14 images, all classes
    test = [s.path for s in index.split("test")[::12]]  # 7 images, one per class
    return calib, np.concatenate(list(CalibrationBatches(test, PREP, 8)))


@pytest.fixture(scope="module")
def runs(lite_onnx, images, tmp_path_factory):
    """{"fp16": path, "fp32": path}; also records the input model's checksum before and after."""
    calib, _ = images
    out = tmp_path_factory.mktemp("modelopt")
    before = _md5(lite_onnx)
    fp16 = quantize_modelopt(lite_onnx, out / "int8-fp16.onnx", CalibrationBatches(calib, PREP, 4),
                             "minmax", keep_fp=[KEEP], high_precision_dtype="fp16")
    fp32 = quantize_modelopt(lite_onnx, out / "int8-fp32.onnx", CalibrationBatches(calib, PREP, 4),
                             "entropy", high_precision_dtype="fp32")
    return {"fp16": fp16, "fp32": fp32, "md5": (before, _md5(lite_onnx)), "dir": out}


def _producers(proto):
    return {o: n for n in proto.graph.node for o in n.output}


def _reads_dq(proto, node, slot) -> bool:
    p = _producers(proto).get(node.input[slot])
    return p is not None and p.op_type == "DequantizeLinear"


def test_weighted_layers_read_int8_qdq_except_the_kept_one(runs):
    proto = onnx.load(str(runs["fp16"]))
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) == 60
    for n in convs:
        quantized = _reads_dq(proto, n, 0) and _reads_dq(proto, n, 1)  # activation and weight
        assert quantized == (n.name != KEEP), n.name
    # weights are stored INT8 and read by a DequantizeLinear directly (no QuantizeLinear on them)
    inits = {t.name: t for t in proto.graph.initializer}
    for n in convs:
        if n.name != KEEP:
            stored = _producers(proto)[n.input[1]].input[0]
            assert stored in inits and inits[stored].data_type == TensorProto.INT8, n.name
    # the entropy/FP32 run has no keeps: every Conv is quantized there
    proto32 = onnx.load(str(runs["fp32"]))
    assert all(_reads_dq(proto32, n, 0) and _reads_dq(proto32, n, 1)
               for n in proto32.graph.node if n.op_type == "Conv")


def test_both_quantizers_pass_the_qdq_rules_under_strong_typing(runs, tiny_export):
    for path in (runs["fp16"], runs["fp32"], tiny_export.artifacts["onnx-int8"]):
        assert qdq_rule_violations(onnx.load(str(path)), strongly_typed=True) == [], path.name


def test_high_precision_dtype_sets_the_type_of_everything_unquantized(runs):
    for dtype, (float_type, absent) in {"fp16": (TensorProto.FLOAT16, TensorProto.FLOAT),
                                        "fp32": (TensorProto.FLOAT, TensorProto.FLOAT16)}.items():
        proto = onnx.load(str(runs[dtype]))
        float_inits = {t.data_type for t in proto.graph.initializer} - {TensorProto.INT8}
        assert float_inits == {float_type}, dtype
        assert all(t.data_type != absent for t in proto.graph.initializer)
        # graph inputs and outputs stay FP32 either way
        io = list(proto.graph.input) + list(proto.graph.output)
        assert {v.type.tensor_type.elem_type for v in io} == {TensorProto.FLOAT}, dtype


def test_runs_in_onnx_runtime_unoptimized_close_to_fp32(runs, images, lite_onnx):
    _, test = images
    reference = onnx_logits(lite_onnx, test)
    scale = np.abs(reference).max()
    for dtype in ("fp16", "fp32"):
        logits = onnx_logits(runs[dtype], test, reference_arithmetic=True)  # graph optimizations disabled
        assert logits.shape == reference.shape and logits.dtype == np.float32
        assert np.abs(logits - reference).max() < 0.15 * scale, dtype
        assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.7, dtype


def test_metadata_is_copied_and_the_input_model_is_left_alone(runs, lite_onnx):
    for dtype in ("fp16", "fp32"):
        assert read_metadata(runs[dtype]) == read_metadata(lite_onnx)
    before, after = runs["md5"]
    assert before == after  # ModelOpt rewrites its input in place; it only ever sees a copy
    assert not [p for p in runs["dir"].iterdir() if p.name.startswith(".")]  # no scratch left


def test_onnx_runtime_quantizer_is_not_changed_by_a_modelopt_run(runs):
    # ModelOpt patches onnxruntime.quantization for the rest of its process (ort_utils.configure_ort
    # removes Relu, Transpose, ... from QDQRegistry and adds HardSwish and LRN; create_calibrator and
    # the calibrators are replaced); it runs in a child process, so our ORT quantizer is as before
    from onnxruntime.quantization import calibrate
    from onnxruntime.quantization.registry import QDQRegistry

    assert "Relu" in QDQRegistry and "Transpose" in QDQRegistry and "HardSwish" not in QDQRegistry
    assert calibrate.create_calibrator.__module__ == "onnxruntime.quantization.calibrate"
    assert "Relu" in q.op_types_to_quantize(q.Flavour("all", "QUInt8", "QInt8", None, (), False))  # registry path


def test_bad_images_are_one_line_and_nothing_is_written(lite_onnx, tmp_path):
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"previous artifact")
    bad = [np.zeros((2, 1, 32, 32), np.float32)]
    with pytest.raises(UserError, match=r"shape 2x1x32x32; the model takes Nx3x32x32") as err:
        quantize_modelopt(lite_onnx, out, bad)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="no calibration images"):
        quantize_modelopt(lite_onnx, out, [])
    with pytest.raises(UserError, match="fp16 or fp32"):
        quantize_modelopt(lite_onnx, out, bad, high_precision_dtype="bf16")
    assert out.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]


def _two_convs(path, channels: int, second_in: int, like):
    """Conv(3 -> channels) -> Relu -> Conv(second_in -> channels), 8x8 input, ``like``'s metadata.

    ``second_in != channels`` makes a model ONNX loads but no runtime can run.
    """
    from onnx import helper, numpy_helper

    from corese_edge.export.onnx_fp32 import set_metadata

    w1 = numpy_helper.from_array(np.ones((channels, 3, 3, 3), np.float32), "w1")
    w2 = numpy_helper.from_array(np.ones((channels, second_in, 3, 3), np.float32), "w2")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w1"], ["h"], name="conv1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("Conv", ["r", "w2"], ["logits"], name="conv2")], "two_convs",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)], [w1, w2])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    set_metadata(proto, read_metadata(like))
    onnx.save(proto, str(path))
    return path


def test_modelopt_failure_is_one_line_and_keeps_the_previous_output(tmp_path, lite_onnx):
    model = _two_convs(tmp_path / "broken.onnx", 16, 20, lite_onnx)
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"previous artifact")
    with pytest.raises(UserError, match=r"^ModelOpt could not quantize .*broken\.onnx: \w+") as err:
        quantize_modelopt(model, out, [np.zeros((2, 3, 8, 8), np.float32)])
    assert "\n" not in str(err.value)
    assert out.read_bytes() == b"previous artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx", "int8.onnx"]


def test_a_graph_modelopt_leaves_unquantized_is_refused(tmp_path, lite_onnx):
    # ModelOpt skips Convs with fewer than 16 channels (graph_utils.find_nodes_from_convs_to_exclude)
    # and then writes an FP16 graph without a single Q/DQ, reporting success
    model = _two_convs(tmp_path / "small.onnx", 4, 4, lite_onnx)
    with pytest.raises(UserError, match="ModelOpt quantized no layer of .*small.onnx"):
        quantize_modelopt(model, tmp_path / "int8.onnx", [np.zeros((2, 3, 8, 8), np.float32)])
    assert not (tmp_path / "int8.onnx").exists()


def test_a_model_without_corese_edge_metadata_is_refused_before_modelopt_runs(tmp_path, lite_onnx, monkeypatch):
    model = _two_convs(tmp_path / "plain.onnx", 16, 16, lite_onnx)
    proto = onnx.load(str(model))
    del proto.metadata_props[:]
    onnx.save(proto, str(model))
    import corese_edge.export.modelopt as mo

    monkeypatch.setattr(mo, "_run_child", lambda *a: pytest.fail("ModelOpt ran"))
    with pytest.raises(UserError, match="not a corese-edge artifact"):
        quantize_modelopt(model, tmp_path / "int8.onnx", [np.zeros((2, 3, 8, 8), np.float32)])


def test_a_missing_modelopt_dependency_names_the_extra(lite_onnx, tmp_path, monkeypatch):
    # modelopt.onnx imports onnx_graphsurgeon at import time and re-raises a failure as ImportError
    # (modelopt/onnx/__init__.py); shadow the package in the child so that import fails
    shadow = tmp_path / "shadow" / "onnx_graphsurgeon"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'onnx_graphsurgeon'\")\n")
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    with pytest.raises(MissingExtra, match=r"onnx_graphsurgeon.*pip install 'corese-edge\[modelopt\]'"):
        quantize_modelopt(lite_onnx, tmp_path / "int8.onnx", [np.zeros((1, 3, 32, 32), np.float32)])
    assert not (tmp_path / "int8.onnx").exists()
