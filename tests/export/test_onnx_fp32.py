"""Stage 1: the FP32 ONNX: metadata round trip, clean graph, dynamic batch, parity with PyTorch."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from corese_edge.metadata import ONNX_KEYS


def test_metadata_has_exactly_the_keys_and_round_trips(lite_onnx, lite_checkpoint):
    from corese_edge.export.onnx_fp32 import read_metadata
    from corese_edge.model.checkpoint import file_sha256, load_checkpoint

    proto = onnx.load(str(lite_onnx))
    assert sorted(p.key for p in proto.metadata_props) == sorted(ONNX_KEYS)
    meta = read_metadata(lite_onnx)
    ckpt = load_checkpoint(lite_checkpoint)
    assert list(meta.class_names) == ckpt.class_names
    assert meta.preprocessing == ckpt.preprocessing
    assert meta.model == "coresse-lite"
    assert meta.checkpoint_sha256 == file_sha256(lite_checkpoint)
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["class_names"]) == ckpt.class_names
    assert json.loads(props["preprocessing"])["size"] == ckpt.preprocessing.size


def test_graph_is_clean_and_passes_the_full_checker(lite_onnx):
    proto = onnx.load(str(lite_onnx))
    onnx.checker.check_model(proto, full_check=True)
    ops = {n.op_type for n in proto.graph.node}
    assert "Identity" not in ops and "Constant" not in ops
    used = {i for n in proto.graph.node for i in n.input}
    assert all(t.name in used for t in proto.graph.initializer)
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_pytorch_at_any_batch(lite_onnx, lite_checkpoint, batch):
    import torch

    from corese_edge.export.comparator import onnx_logits
    from corese_edge.model.checkpoint import load_checkpoint

    model = load_checkpoint(lite_checkpoint).build_model(se_mode="sample")
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(x)).numpy()
    got = onnx_logits(lite_onnx, x)
    assert got.shape == (batch, 7)
    assert np.max(np.abs(got - expected)) <= 1e-4
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_constant_nodes_fold_into_initializers():
    from onnx import TensorProto, helper

    from corese_edge.export.onnx_fp32 import fold_constant_nodes, remove_identities

    nodes = [
        helper.make_node("Constant", [], ["two"], value_float=2.0),
        helper.make_node("Constant", [], ["shape"], value_ints=[1, 4]),
        helper.make_node("Identity", ["x"], ["x_id"]),
        helper.make_node("Mul", ["x_id", "two"], ["y"]),
        helper.make_node("Reshape", ["y", "shape"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4])])
    model = remove_identities(fold_constant_nodes(helper.make_model(graph)))
    assert [n.op_type for n in model.graph.node] == ["Mul", "Reshape"]
    assert {t.name for t in model.graph.initializer} == {"two", "shape"}
    onnx.checker.check_model(model, full_check=True)

    from corese_edge.export.comparator import drift_ort_runner

    x = np.arange(4, dtype=np.float32).reshape(2, 2)
    (out,) = drift_ort_runner(model).activate().infer({"x": x}).values()
    np.testing.assert_array_equal(out, (2 * x).reshape(1, 4))


def test_parity_is_recorded_and_within_limits(tiny_export):
    record = json.loads(tiny_export.export_json.read_text())
    parity = record["parity"]
    assert parity["images"] >= 64
    assert parity["max_abs_logit_diff"] <= 1e-4
    assert parity["top1_agreement"] == 1.0
