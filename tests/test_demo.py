"""``corese-edge demo`` end to end, in its quick mode: every file it promises exists, and the
accuracy it prints is the one in the run's report.json."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from corese_edge.cli import cli

#: what the closing summary lists (label -> must it be there?)
SUMMARY_FILES = ("checkpoint", "report", "confusion matrix", "training curves", "export dir", "drift plot",
                 "bench json", "bench plot")
EXPORT_FILES = ("model.onnx", "model.fp16.onnx", "model.int8.onnx", "drift_report.json", "drift_report.md",
                "export.json")


@pytest.mark.slow
def test_quick_demo_writes_what_it_promises_and_prints_the_reported_accuracy(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--epochs", "2", "--img-size", "32",
                                   "--images-per-class", "12", "--bench-seconds", "0.2"])
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    text = res.output
    summary = text[text.index("\nsummary\n"):]
    listed = dict(re.findall(r"^  (\S+(?: \S+)*?) {2,}(.+)$", summary, flags=re.M))
    for label in SUMMARY_FILES:
        assert label in listed, f"summary lacks {label!r}:\n{summary}"
        assert Path(listed[label]).exists(), f"{label}: {listed[label]} does not exist"
    export_dir = Path(listed["export dir"])
    for name in EXPORT_FILES:
        assert (export_dir / name).is_file(), name
    # the quick options took effect
    report = json.loads(Path(listed["report"]).read_text())
    assert report["test"]["num_images"] == 7 * 3
    config = (out / "run" / "config.yaml").read_text()
    assert re.search(r"^img_size: 32$", config, flags=re.M) and re.search(r"^epochs: 2$", config, flags=re.M)
    # the accuracy printed (twice) is the SWA model's test accuracy from report.json
    want = f"{report['test']['accuracy']:.2%}"
    assert listed["test accuracy"] == want
    assert re.search(rf"SWA model: test accuracy {re.escape(want)}", text)
    # the fastest CPU model within the gate is named, in the export's line and in the summary
    best = json.loads((export_dir / "export.json").read_text())["cpu_best"]
    assert best["reason"] in text.splitlines() and listed["fastest CPU"].startswith(f"{best['file']} (")
    from corese_edge.export.openvino import openvino_unavailable

    if openvino_unavailable() is None:  # the extra is installed: the demo went on through OpenVINO
        drift = json.loads((export_dir / "drift_report.json").read_text())["artifacts"]
        compare = json.loads(Path(listed["bench json"]).read_text())
        rows = {r["name"]: r for r in compare["rows"]}
        for name, file in (("openvino-float", "model.xml"), ("openvino-int8", "model.int8.xml")):
            assert (export_dir / file).is_file() and drift[name]["backend"] == "openvino"
            assert rows[name]["status"] == "ok" and rows[name]["p50_ms_batch1"] > 0
        assert set(best["p50_ms_by_candidate"]) == {"onnx-fp32", "onnx-fp16", "onnx-int8", "openvino-float",
                                                    "openvino-int8"}


@pytest.mark.slow
def test_demo_export_without_openvino_says_it_skipped_it_and_goes_on(trained_run, tmp_path, monkeypatch, capsys):
    import corese_edge.export.openvino as ov_stage
    from corese_edge.demo import DemoConfig, _export_and_bench

    missing = "openvino is not installed (OpenVINO IR export): pip install 'corese-edge[openvino]'"
    monkeypatch.setattr(ov_stage, "openvino_unavailable", lambda: missing)  # as without the extra
    info = _export_and_bench(trained_run.swa_path, tmp_path, DemoConfig(progress=False, bench_seconds=0.2))
    output = capsys.readouterr().out
    assert f"      OpenVINO artifacts skipped: {missing}" in output.splitlines()
    assert info["fastest_cpu"].startswith("model")
    export_dir = tmp_path / "export"
    assert not list(export_dir.glob("*.xml"))
    for name in EXPORT_FILES:
        assert (export_dir / name).is_file(), name
    compare = json.loads((export_dir / "bench_compare.json").read_text())
    assert {r["name"] for r in compare["rows"]} == {"onnx-fp32", "onnx-fp16", "onnx-int8"}
    assert "fastest passing CPU model: model" in output


@pytest.mark.parametrize("option,value,message", [
    ("--img-size", "8", "--img-size must be at least 32"),
    ("--images-per-class", "2", "--images-per-class must be at least 4"),
    ("--epochs", "0", "--epochs must be at least 1"),
    ("--bench-seconds", "0", "--bench-seconds must be more than 0"),
])
def test_bad_quick_options_are_one_line(tmp_path, option, value, message):
    res = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), option, value])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"error: {res.output.strip()[7:]}"]
    assert message in res.output
    assert not (tmp_path / "d").exists()
