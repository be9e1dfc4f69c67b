"""Each stage, run alone, returns a frozen result that holds what export.json then records."""
from __future__ import annotations

import dataclasses
import json

import pytest

from corese_edge.export import make_export_config
from corese_edge.export.results import DriftResult, Fp16Result, Fp32Result, Int8Result


@pytest.mark.slow
def test_stage_results_are_what_export_json_records(tiny_checkpoint, synthetic_data, tmp_path):
    from corese_edge.export.pipeline import (prepare_export, stage_drift, stage_engine, stage_fp16, stage_fp32,
                                             stage_int8, stage_write)

    cfg = make_export_config(checkpoint=str(tiny_checkpoint), data=str(synthetic_data), out=str(tmp_path),
                             progress=False, calib_size=8, max_drift=100.0, fp16=True, int8=True, engine=False)
    state = prepare_export(cfg)
    fp32 = stage_fp32(state)
    assert isinstance(fp32, Fp32Result) and fp32.path == tmp_path / "model.onnx" and state.fp32 is fp32
    assert fp32.parity["images"] >= 64 and fp32.parity["max_abs_logit_diff"] <= 1e-4
    assert len(fp32.labels) == len(fp32.logits["reference"]) == len(fp32.logits["onnx-fp32"]) == 84
    fp16 = stage_fp16(state)
    assert isinstance(fp16, Fp16Result) and fp16.keep_fp32_ops == () and fp16.note is None  # 100 pp: never over
    int8 = stage_int8(state)
    assert isinstance(int8, Int8Result) and int8.path == tmp_path / "model.int8.onnx"
    assert (int8.flavour, int8.quantizer, int8.high_precision, int8.kept, int8.keep_fp32_ops, int8.opset) == (
        "s8s8", "ort", "fp16", (), (), 19)
    assert int8.calibration["images"] == 8 and int8.calibration["method"] == "minmax"
    with pytest.raises(dataclasses.FrozenInstanceError):
        int8.kept = ("x",)
    state.close()
    drift = stage_drift(state)
    assert isinstance(drift, DriftResult) and set(drift.census) == {"onnx-fp32", "onnx-fp16", "onnx-int8"}
    assert stage_engine(state) is None  # --no-engine: no engine stage result
    result = stage_write(state)

    record = json.loads(result.export_json.read_text())
    assert record["parity"] == fp32.parity
    assert record["fp16"] == {"keep_fp32_ops": list(fp16.keep_fp32_ops)}
    assert record["int8"] == {"high_precision": int8.high_precision, "keep_fp32_ops": list(int8.keep_fp32_ops),
                              "keep_fp32_nodes": list(int8.kept), "opset": int8.opset}
    assert record["calibration"] == {**int8.calibration, "per_class": record["calibration"]["per_class"]}
    assert record["kept_fp"] == list(int8.kept) and record["census"] == json.loads(json.dumps(drift.census))
    assert list(record["artifacts"]) == ["onnx-fp32", "onnx-fp16", "onnx-int8"]
    assert record["notes"] == [] and record["drift"]["passed"] is drift.report.passed
    report = json.loads((tmp_path / "drift_report.json").read_text())
    assert report["artifacts"]["onnx-int8"]["keep_fp32_ops"] == list(int8.keep_fp32_ops)
    assert report["artifacts"]["onnx-int8"]["ort_graph_optimizations"] == "disabled"
    assert report["artifacts"]["onnx-fp16"]["ort_graph_optimizations"] == "disabled"
