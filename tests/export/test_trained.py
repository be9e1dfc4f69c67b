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
    from corese_edge.export.evaluation import OnnxLogits, collect_logits
    from corese_edge.data.layouts import load_index
    from corese_edge.model.checkpoint import load_checkpoint

    test = load_index(record["dataset"]["root"]).split("test")[:32]
    _, logits = collect_logits(test, load_checkpoint(trained_run.swa_path).preprocessing,
                               {"fp32": OnnxLogits(tmp_path / "model.onnx")})
    assert int8["mean_abs_logit_diff"] < 0.1 * float(np.std(logits["fp32"]))
    assert int8["flavour"] == ("s8s8" if target == "tensorrt" else "u8s8")
    if passed:
        assert "onnx-int8" in result.table


@pytest.mark.slow
def test_auto_keep_keeps_the_most_sensitive_layers_until_the_limit_holds(trained_run, tmp_path):
    """Calibrating on a few flat grey frames wrecks the activation ranges; --auto-keep must repair it
    by keeping the top-ranked layers in FP32, choosing on the validation split carved from train."""
    import cv2
    import onnx

    from corese_edge.export.int8 import quantized_nodes

    frames = tmp_path / "grey"
    frames.mkdir()
    for i in range(4):
        cv2.imwrite(str(frames / f"{i}.png"), np.full((48, 48, 3), 100 + i, np.uint8))
    limit = 4.0
    cfg = make_export_config(checkpoint=str(trained_run.swa_path), int8=True, target="tensorrt", calib_data=str(frames),
                             auto_keep=True, max_drift=limit, val_split="val", engine=False, progress=False,
                             out=str(tmp_path / "out"))
    try:
        run_export(cfg)
    except DriftGateFailed:
        pass  # judged on the same split here; the search result is what this test checks
    record = json.loads((tmp_path / "out" / "export.json").read_text())
    search = record["auto_keep"]
    assert search["drop_pp_before"] > limit  # the damage the search has to repair
    kept = search["kept"]
    ranked = [r["node"] for r in search["ranking"]]
    assert kept and kept == ranked[: len(kept)]  # the most sensitive first, nothing else
    if search["reached_limit"]:
        assert search["drop_pp_after"] <= limit
        fewer = [t["drop_pp"] for t in search["trials"] if t["kept"] == len(kept) - 1]
        assert all(d > limit for d in fewer)  # one layer fewer was not enough
    model = onnx.load(str(tmp_path / "out" / "model.int8.onnx"))
    assert not set(kept) & set(quantized_nodes(model))  # really left in FP32
    report = json.loads((tmp_path / "out" / "drift_report.json").read_text())
    assert report["artifacts"]["onnx-int8"]["kept_fp"] == kept
    assert record["kept_fp"] == kept
