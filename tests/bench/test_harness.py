"""The bench harness on real ONNX Runtime runners and (contract) on the fake TensorRT runner;
the --compare table, the suite, and the bench CLI."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.bench.timing import SCHEMA, run_benchmarks
from corese_edge.cli import cli
from corese_edge.errors import UserError
from corese_edge.runtime import OrtRunner
from corese_edge.runtime.base import Runner, TensorSpec
from corese_edge.runtime.trt import TrtRunner
from corese_edge.timing import BenchSettings, benchmark_runner
from tests.runtime.fakes import FakeCuda, FakeTrt, write_plan

TRT_ONLY = ("gpu_compute_ms", "h2d_ms", "d2h_ms", "enqueue_ms")


def test_ort_result_has_latency_and_no_gpu_metrics(tiny_onnx):
    settings = BenchSettings(batches=(1, 3), warmup_ms=0, iterations=4)
    with OrtRunner(tiny_onnx, providers="cpu", threads=1) as r:
        doc = run_benchmarks(r, settings)
    assert doc["schema"] == SCHEMA
    assert doc["settings"]["cuda_graph"] is False and doc["settings"]["include_transfers"] is True
    assert doc["settings"]["threads"] == 1
    assert doc["device"]["host"]["logical_cores"] >= 1 and "versions" in doc["device"]
    assert [res["batch"] for res in doc["results"]] == [1, 3]
    for res in doc["results"]:
        assert res["backend"] == "ort" and res["precision"] == "fp32" and res["iterations"] == 4
        assert set(res["latency_ms"]) >= {"min", "mean", "median", "p90", "p95", "p99"}
        assert res["latency_ms"]["min"] <= res["latency_ms"]["median"] <= res["latency_ms"]["max"]
        for key in TRT_ONLY + ("end_to_end_ms",):
            assert key not in res  # absent, not zero
        assert res["throughput_ips"] == pytest.approx(res["throughput_qps"] * res["batch"], rel=1e-3)
        assert res["throughput_qps"] == pytest.approx(res["iterations"] / res["walltime_s"], rel=1e-2)


def test_end_to_end_adds_preprocessing_time(tiny_onnx):
    settings = BenchSettings(batches=(2,), warmup_ms=0, iterations=3, end_to_end=True, frame_size=100)
    with OrtRunner(tiny_onnx) as r:
        res = benchmark_runner(r, 2, settings)
    assert res["end_to_end_ms"]["median"] >= res["latency_ms"]["median"]


def test_duration_and_min_iterations(tiny_onnx):
    settings = BenchSettings(warmup_ms=10, duration_s=0.2, min_iterations=3)
    with OrtRunner(tiny_onnx) as r:
        res = benchmark_runner(r, 1, settings)
    assert res["iterations"] >= 3 and res["walltime_s"] >= 0.2 and res["warmup_queries"] >= 1


class _JitteryRunner(Runner):
    """A runner whose calls alternate between 1 ms and 6 ms (for the CV warning)."""

    backend = "test"

    def _activate(self):
        self.inputs = (TensorSpec("input", np.dtype(np.float32), (None, 2)),)
        self.outputs = (TensorSpec("y", np.dtype(np.float32), (None, 2)),)
        self._n = 0

    def _infer(self, feed):
        self._n += 1
        time.sleep(0.001 if self._n % 2 else 0.006)
        return {"y": feed["input"]}

    def _close(self):
        pass


def test_cv_above_two_and_a_half_percent_warns():
    res = benchmark_runner(_JitteryRunner("jitter"), 1, BenchSettings(warmup_ms=0, iterations=10))
    assert res["latency_ms"]["cv"] > 0.025
    assert any("coefficient of variation" in w for w in res["warnings"])


@pytest.mark.contract
@pytest.mark.parametrize("transfers", [True, False])
@pytest.mark.parametrize("graph", [False, True])
def test_trt_results_carry_trtexec_metrics(tmp_path, transfers, graph):
    plan = write_plan(tmp_path, max_batch=4, size=8)
    settings = BenchSettings(batches=(1, 4), warmup_ms=0, iterations=5, include_transfers=transfers, cuda_graph=graph)
    cuda = FakeCuda()
    with TrtRunner(plan, cuda=cuda, trt=FakeTrt(), cuda_graph=graph) as r:
        doc = run_benchmarks(r, settings)
        with pytest.raises(UserError, match="exceeds .* maximum batch 4"):
            benchmark_runner(r, 8, settings)
    assert doc["device"]["tensorrt_runtime"]["version"] == "11.4.0.106"
    for res in doc["results"]:
        assert res["backend"] == "trt" and res["precision"] == "fp16"
        assert res["cuda_graph"] is graph and res["include_transfers"] is transfers
        assert "gpu_compute_ms" in res and "enqueue_ms" in res and "latency_ms" in res
        assert ("h2d_ms" in res) is transfers and ("d2h_ms" in res) is transfers
    assert (cuda.graph_launches > 0) is graph


def _export_dir(tmp_path, tiny_onnx):
    d = tmp_path / "export"
    d.mkdir()
    shutil.copy(tiny_onnx, d / "model.onnx")
    write_plan(d, "model.fp16.plan")
    drift = {"schema": "corese-edge/drift/1", "reference": "onnx-fp32", "max_drift_pp": 1.0, "passed": True,
             "artifacts": {"onnx-fp32": {"accuracy": 0.8125, "accuracy_drop_pp": 0.0},
                           "trt-fp16": {"accuracy": 0.81, "accuracy_drop_pp": 0.25}}}
    (d / "drift_report.json").write_text(json.dumps(drift))
    return d


def test_compare_table_json_and_plot(tmp_path, tiny_onnx):
    d = _export_dir(tmp_path, tiny_onnx)
    result = CliRunner().invoke(cli, ["bench", "--compare", str(d), "--batch", "1,2", "--iterations", "3", "--warmup-ms", "0"])
    assert result.exit_code == 0, result.output
    doc = json.loads((d / "bench_compare.json").read_text())
    assert (d / "bench_compare.png").stat().st_size > 1000
    rows = {r["name"]: r for r in doc["rows"]}
    assert set(rows) == {"onnx-fp32", "trt-fp16"}
    onnx_row = rows["onnx-fp32"]
    assert onnx_row["status"] == "ok" and onnx_row["accuracy"] == 0.8125 and onnx_row["accuracy_drop_pp"] == 0.0
    assert onnx_row["size_mb"] == pytest.approx((d / "model.onnx").stat().st_size / 1e6, abs=0.01)
    ran = [r for r in doc["results"] if r["name"] == "onnx-fp32"]
    assert onnx_row["p50_ms_batch1"] == [r for r in ran if r["batch"] == 1][0]["latency_ms"]["median"]
    assert onnx_row["best_ips"] == max(r["throughput_ips"] for r in ran)
    assert rows["trt-fp16"]["accuracy_drop_pp"] == 0.25
    if not doc["device"]["gpus"]:
        assert rows["trt-fp16"]["status"].startswith("not run: no CUDA GPU found")
    assert "onnx-fp32" in result.output and "trt-fp16" in result.output
    # INT8-FLOPs column: computed from the FP32 graph (none), unknown for a plan without a census
    assert onnx_row["int8_flop_share"] == 0.0 and rows["trt-fp16"]["int8_flop_share"] is None
    assert "INT8 FLOPs" in result.output


def test_bench_cli_onnx_json_and_errors(tmp_path, tiny_onnx):
    out = tmp_path / "b.json"
    result = CliRunner().invoke(cli, ["bench", "--onnx", str(tiny_onnx), "--batch", "1,2", "--iterations", "3",
                                      "--warmup-ms", "0", "--threads", "1", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["schema"] == "corese-edge/bench/1" and [r["batch"] for r in doc["results"]] == [1, 2]
    assert "machine:" in result.output and "p50 ms" in result.output
    two = CliRunner().invoke(cli, ["bench", "--onnx", str(tiny_onnx), "--checkpoint", "x.pt"])
    assert two.exit_code == 2 and "exactly one of" in two.output
    both = CliRunner().invoke(cli, ["bench", "--onnx", str(tiny_onnx), "--iterations", "3", "--duration-s", "1"])
    assert both.exit_code == 2 and "exclude each other" in both.output
    bad_batch = CliRunner().invoke(cli, ["bench", "--onnx", str(tiny_onnx), "--batch", "1,x"])
    assert bad_batch.exit_code == 2 and "comma-separated integers" in bad_batch.output


def test_bench_cli_engine_without_gpu(tmp_path):
    from corese_edge.bench.machine import gpus

    if gpus()[0]:
        pytest.skip("a GPU is present")
    plan = write_plan(tmp_path, version_compatible=True)
    result = CliRunner().invoke(cli, ["bench", "--engine", str(plan)])
    assert result.exit_code == 2
    assert result.output.startswith("error: no CUDA GPU found") and len(result.output.strip().splitlines()) == 1


def test_suite_appends_results_and_renders_markdown(tmp_path, monkeypatch):
    from corese_edge.bench import suite

    results, md = tmp_path / "results", tmp_path / "RESULTS.md"
    cfg = suite.SuiteConfig(models=("coresse-lite",), backends=("ort", "torch", "trt"), precisions=("fp32", "int8"),
                            batches=(1, 2), warmup_ms=0, duration_s=0.0, min_iterations=2, img_size=32,
                            calib_images=2, results_dir=str(results), markdown=str(md), threads=1)
    run = suite.run_suite(cfg, progress=lambda m: None)
    got = {(r["backend"], r["precision"], r["batch"]) for r in run["results"]}
    assert got == {("ort", "fp32", 1), ("ort", "fp32", 2), ("ort", "int8", 1), ("ort", "int8", 2),
                   ("torch", "fp32", 1), ("torch", "fp32", 2)}
    not_run = {(r["backend"], r["precision"]) for r in run["not_run"]}
    assert ("torch", "int8") in not_run and ("trt", "int8") in not_run
    [f] = list(results.glob("*.json"))
    doc = json.loads(f.read_text())
    assert doc["schema"] == suite.RESULTS_SCHEMA and len(doc["runs"]) == 1 and doc["description"]
    text = md.read_text()
    assert doc["description"] in text and "| coresse-lite | ort | int8 | 2 |" in text
    assert "not run:" in text
    assert (results / "plots" / f"{f.stem}-coresse-lite.png").is_file()

    # a second run appends; RESULTS.md shows only the latest suite run per machine
    suite.append_run(results, doc["machine"], {**run, "date": "2099-01-01T00:00:00+00:00"})
    suite.render_markdown(results, md)
    assert len(json.loads(f.read_text())["runs"]) == 2
    text = md.read_text()
    assert "### Suite (2099-01-01)" in text and text.count("### Suite") == 1
