"""The INT8 policy alone (int8.Int8Policy): given drops, it decides what stays FP32; the FP16
fallback (fp16.keep_sensitive_ops_if_better) is the one both FP16 graphs use."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto

from corese_edge.data.calibration import CalibrationBatches
from corese_edge.data.layouts import load_index
from corese_edge.export import int8 as q
from corese_edge.export.fp16 import SENSITIVE_FP16_OPS, keep_sensitive_ops_if_better
from corese_edge.preprocessing import Preprocessing


def test_the_fallback_is_tried_only_over_the_limit_and_kept_only_when_it_helps(tmp_path):
    dest = tmp_path / "model.onnx"
    made: list[tuple[str, ...]] = []

    def make_trial(ops):
        made.append(ops)
        trial = tmp_path / "trial.onnx"
        trial.write_text("trial")
        return trial

    dest.write_text("plain")
    within = keep_sensitive_ops_if_better(dest, 0.5, 1.0, make_trial, lambda p: pytest.fail("measured"))
    assert not within.kept and made == [] and dest.read_text() == "plain" and within.note("FP16") is None
    worse = keep_sensitive_ops_if_better(dest, 3.0, 1.0, make_trial, lambda p: 4.0)
    assert not worse.kept and made == [SENSITIVE_FP16_OPS] and dest.read_text() == "plain"
    better = keep_sensitive_ops_if_better(dest, 3.0, 1.0, make_trial, lambda p: 0.5)
    assert better.keep_fp32_ops == SENSITIVE_FP16_OPS and dest.read_text() == "trial"
    assert better.note("INT8", " instead of FP16") == (
        "INT8 dropped 3.00 pp on the validation split carved from train; LayerNormalization kept in FP32 "
        "instead of FP16 (0.50 pp)")


@pytest.fixture(scope="module")
def policy(tiny_onnx, synthetic_data, tmp_path_factory):
    work = tmp_path_factory.mktemp("policy")
    pre = q.prepare_for_quantization(tiny_onnx, work / "pre.onnx")
    paths = [s.path for s in load_index(synthetic_data).split("train")[::20]]
    reader = q.StreamingCalibrationReader(CalibrationBatches(paths, Preprocessing(size=32), 4))
    ranges = q.calibrate(pre, reader, work / "ranges.json", "minmax", "s8s8")
    return q.Int8Policy(pre, ranges, q.get_flavour("s8s8"), "minmax", Path(tiny_onnx), 1.0, work)


def _ln_input_types(path):
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info}
    return {types.get(n.input[0]) for n in proto.graph.node if n.op_type == "LayerNormalization"}


@pytest.mark.parametrize("drops, kept", [((3.0, 0.5), SENSITIVE_FP16_OPS), ((0.5,), ())])
def test_a_drop_over_the_limit_picks_the_fp32_op_fallback_and_one_within_does_not(policy, tmp_path, drops, kept):
    measured, seen = iter(drops), []

    def drop(model):
        seen.append(model)
        return next(measured)

    dest = tmp_path / "model.int8.onnx"
    decision = policy.apply(dest, drop)
    assert len(seen) == len(drops) and seen[0] == dest  # the plain graph is measured first, then the trial
    assert decision.keep_fp32_ops == kept and decision.kept == () and decision.auto_keep is None
    assert list(decision.reasons) == list(kept) and bool(decision.notes) == bool(kept)
    assert _ln_input_types(dest) == ({TensorProto.FLOAT} if kept else {TensorProto.FLOAT16})
