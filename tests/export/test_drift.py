"""Stage 4: drift metrics, the report's JSON shape and the gate."""
from __future__ import annotations

import json

import numpy as np
import pytest

from corese_edge.export.drift import DriftGateFailed, DriftReport

CLASSES = ("a", "b", "c")


def _onehot(preds, n=3, scale=5.0):
    out = np.zeros((len(preds), n), dtype=np.float32)
    out[np.arange(len(preds)), preds] = scale
    return out


@pytest.fixture()
def report():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0, 1])
    reference = _onehot([0, 0, 1, 1, 2, 2, 2, 0, 0, 1])  # 9/10 right
    return DriftReport(CLASSES, labels, reference, max_drift_pp=10.0)


def test_metrics_against_the_reference(report):
    worse = _onehot([0, 1, 1, 1, 2, 2, 2, 0, 0, 1])  # one more class-0 image wrong
    entry = report.add("onnx-int8", worse + 0.25)
    assert report.reference_accuracy == pytest.approx(0.9)
    assert entry["accuracy"] == pytest.approx(0.8)
    assert entry["accuracy_drop_pp"] == pytest.approx(10.0)
    assert entry["agreement"] == pytest.approx(0.9)
    assert entry["per_class_recall_drop_pp"] == {"a": pytest.approx(100 / 3), "b": 0.0, "c": 0.0}
    assert entry["max_abs_logit_diff"] == pytest.approx(5.25)
    assert entry["passed"]  # exactly at the limit passes


def test_gate_fails_when_the_limit_is_below_the_drop(report):
    worse = _onehot([0, 1, 1, 1, 2, 2, 2, 0, 0, 1])
    report.max_drift_pp = 9.99
    report.add("onnx-fp32", report.reference_logits)
    report.add("onnx-int8", worse)
    assert report.failed == ["onnx-int8"] and not report.passed
    with pytest.raises(DriftGateFailed, match="onnx-int8 dropped 10.00 pp"):
        report.check()


def test_a_better_artifact_never_fails(report):
    report.max_drift_pp = 0.0
    entry = report.add("onnx-fp16", _onehot([0, 0, 1, 1, 2, 2, 2, 2, 0, 1]))  # 10/10
    assert entry["accuracy_drop_pp"] == pytest.approx(-10.0) and entry["passed"]
    report.check()


def test_written_report_has_the_documented_shape(report, tmp_path):
    report.add("onnx-fp32", report.reference_logits)
    report.add("onnx-int8", _onehot([0, 1, 1, 1, 2, 2, 2, 0, 0, 1]), kept_fp=["/classifier/Gemm"])
    paths = report.write(tmp_path)
    assert [p.name for p in paths] == ["drift_report.json", "drift_report.md", "drift.png"]
    data = json.loads(paths[0].read_text())
    assert data["schema"] == "corese-edge/drift/1"
    assert {"reference", "max_drift_pp", "passed", "artifacts"} <= set(data)
    assert data["passed"] is True and data["max_drift_pp"] == 10.0
    for entry in data["artifacts"].values():
        assert {"accuracy", "accuracy_drop_pp", "agreement", "max_abs_logit_diff", "mean_abs_logit_diff",
                "per_class_recall_drop_pp"} <= set(entry)
        assert set(entry["per_class_recall_drop_pp"]) == set(CLASSES)
    md = paths[1].read_text()
    assert "| onnx-int8 | 80.00% | +10.00 |" in md and "/classifier/Gemm" in md
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_class_without_images_is_reported_as_unknown():
    labels = np.array([0, 0, 1])
    r = DriftReport(CLASSES, labels, _onehot([0, 0, 1]), 1.0)
    assert r.add("onnx-fp32", _onehot([0, 0, 1]))["per_class_recall_drop_pp"]["c"] is None


def test_shapes_must_match(report):
    with pytest.raises(ValueError):
        report.add("onnx-int8", np.zeros((3, 3), dtype=np.float32))


def test_census_travels_in_the_entries_and_the_markdown(report, tmp_path):
    census = {"precisions": {"int8": {"nodes": 3, "flops": 90, "flop_share": 0.9},
                             "fp16": {"nodes": 1, "flops": 4, "flop_share": 0.04},
                             "fp32": {"nodes": 2, "flops": 6, "flop_share": 0.06}},
              "fp32_nodes": [{"name": "/head/Gemm", "op_type": "Gemm", "flops": 4},
                             {"name": "/ln", "op_type": "LayerNormalization", "flops": 2}]}
    report.add("onnx-int8", _onehot([0, 0, 1, 1, 2, 2, 2, 0, 0, 1]), census=census)
    report.add("onnx-fp16", _onehot([0, 0, 1, 1, 2, 2, 2, 0, 0, 1]))
    json_path, md_path, _ = report.write(tmp_path)
    assert json.loads(json_path.read_text())["artifacts"]["onnx-int8"]["census"] == census
    md = md_path.read_text()
    assert "| onnx-int8 | 90.00% | 4.00% | 6.00% | 2: `/head/Gemm`, `/ln` |" in md
    assert "| onnx-fp16 | " not in md.split("Precision census")[1]  # no census, no row


def test_the_plot_draws_a_recall_gain_upward_and_a_loss_downward(report, tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    better = _onehot([0, 0, 1, 1, 2, 2, 2, 2, 0, 1])  # class c: 3/4 -> 4/4
    worse = _onehot([0, 1, 1, 1, 2, 2, 2, 0, 0, 1])  # class a: 3/3 -> 2/3
    report.add("onnx-fp16", better)
    report.add("onnx-int8", worse)
    bars, labels = {}, []
    real_bar, real_ylabel = Axes.bar, Axes.set_ylabel

    def bar(self, x, height, *args, label=None, **kwargs):
        if label is not None:
            bars[label] = list(height)
        return real_bar(self, x, height, *args, label=label, **kwargs)

    def set_ylabel(self, text, *args, **kwargs):
        labels.append(text)
        return real_ylabel(self, text, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", bar)
    monkeypatch.setattr(Axes, "set_ylabel", set_ylabel)
    report.plot(tmp_path / "drift.png")
    assert bars["onnx-fp16"] == pytest.approx([0.0, 0.0, 25.0])  # recall rose 25 pp: a bar going up
    assert bars["onnx-int8"] == pytest.approx([-100 / 3, 0.0, 0.0])  # recall fell: a bar going down
    assert any("recall change" in t and "up = better" in t for t in labels), labels
    # the tables keep "drop" (positive = worse), and say so in one line
    assert report.artifacts["onnx-fp16"]["per_class_recall_drop_pp"]["c"] == pytest.approx(-25.0)
    assert "positive = worse than the reference" in report.to_markdown()
