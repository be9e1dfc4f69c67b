"""The export of a real (short) training run, for both targets: parity, FP16 and INT8 fidelity."""
from __future__ import annotations

import json

import numpy as np
import pytest

from corese_edge.export import make_export_config, run_export
from corese_edge.export.drift import DriftGateFailed


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorrt", "cpu"])
def test_trained_run_exports_faithfully(trained_run, target, tmp_path):
    cfg = make_export_config(checkpoint=str(trained_run.swa_path), fp16=True, int8=True, target=target,
                             calib_size=64, engine=False, progress=False, out=str(tmp_path))
    try:
        result = run_export(cfg)
        passed = True
    except DriftGateFailed:
        passed = False
    report = json.loads((tmp_path / "drift_report.json").read_text())
    record = json.loads((tmp_path / "export.json").read_text())
    assert record["parity"]["max_abs_logit_diff"] <= 1e-4 and record["parity"]["top1_agreement"] == 1.0
    assert report["reference"]["images"] == 84 and report["passed"] is passed
    fp16, int8 = report["artifacts"]["onnx-fp16"], report["artifacts"]["onnx-int8"]
    assert fp16["agreement"] >= 0.98 and fp16["max_abs_logit_diff"] < 0.01
    assert int8["agreement"] >= 0.95
    # INT8 error is small next to the spread of the logits it perturbs
    from corese_edge.export.comparator import Comparator, drift_ort_runner
    from corese_edge.data.layouts import load_index
    from corese_edge.model.checkpoint import load_checkpoint

    test = load_index(record["dataset"]["root"]).split("test")[:32]
    logits = Comparator.run({"fp32": drift_ort_runner(tmp_path / "model.onnx")}, test,
                            load_checkpoint(trained_run.swa_path).preprocessing).logits
    assert int8["mean_abs_logit_diff"] < 0.1 * float(np.std(logits["fp32"]))
    assert int8["flavour"] == ("s8s8" if target == "tensorrt" else "u8s8")
    if passed:
        assert "onnx-int8" in result.table


