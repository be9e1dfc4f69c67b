"""The bench harness on real ONNX Runtime runners and (contract) on the fake TensorRT runner;
the --compare table, the suite, and the bench CLI."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.bench.timing import SCHEMA, format_results, run_benchmarks
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
    assert "Versions of this run" not in text  # the same versions as the header's

    # a later run on other library versions moves the header; the earlier run names its own
    newer = {**doc["machine"], "versions": {**doc["machine"]["versions"], "numpy": "0.0-test"}}
    suite.record_ratios("later", [{"what": "x", "value": 1.0, "target": "", "verdict": "info"}], "n",
                        results, md, machine=newer)
    text = md.read_text()
    assert "numpy 0.0-test" in text.split("### Suite")[0]  # the header: the latest run's versions
    old_numpy = doc["machine"]["versions"]["numpy"]
    assert f"Versions of this run: numpy {old_numpy}." in text.split("### Suite")[1]  # the suite's own


# ------------------------------------------------------------------ the runner timing hook, the output folder


class _AcceleratorRunner(Runner):
    """A backend the harness has never heard of: its own device time and queue time, its own facts."""

    backend = "npu-sim"

    def _activate(self):
        self.inputs = (TensorSpec("input", np.dtype(np.float32), (None, 2)),)
        self.outputs = (TensorSpec("y", np.dtype(np.float32), (None, 2)),)
        self.max_batch = 4
        self.prepared = None
        self.queries = 0

    def _infer(self, feed):
        return {"y": feed["input"] * 2}

    def _close(self):
        pass

    def prepare_timing(self, feed, *, cuda_graph=False, include_transfers=True):
        super().prepare_timing(feed, cuda_graph=cuda_graph, include_transfers=include_transfers)
        self.prepared = (next(iter(feed.values())).shape[0], cuda_graph, include_transfers)

    def timed_query(self, inputs=None):
        self.queries += 1
        times = super().timed_query(inputs)
        return {**times, "gpu_compute_ms": 2.0 if self.queries % 2 else 2.02, "queue_ms": 0.25}

    def execution_facts(self, batch=None):
        return {"result": {"npu_cores": 2, "batch_seen": batch}, "device": {"npu": {"firmware": "1.2"}},
                "settings": {"threads": 3}}


def test_a_backends_own_timing_breakdown_reaches_the_report_without_the_harness_knowing_it():
    import inspect

    import corese_edge.timing as harness

    runner = _AcceleratorRunner("model.npu")
    settings = BenchSettings(batches=(1, 3), warmup_ms=0, iterations=6, cuda_graph=True, include_transfers=False)
    doc = run_benchmarks(runner, settings, machine={"host": {"logical_cores": 1}})
    assert runner.prepared == (3, True, False)  # the query mode reached the runner
    assert doc["device"]["npu"] == {"firmware": "1.2"} and doc["device"]["host"] == {"logical_cores": 1}
    assert doc["settings"]["threads"] == 3 and doc["settings"]["cuda_graph"] is True
    for res, batch in zip(doc["results"], (1, 3)):
        assert res["backend"] == "npu-sim" and res["batch"] == batch and res["iterations"] == 6
        assert res["queue_ms"]["median"] == 0.25 and res["gpu_compute_ms"]["median"] == pytest.approx(2.01)
        assert res["latency_ms"]["median"] > 0
        assert res["npu_cores"] == 2 and res["batch_seen"] == batch
        for key in ("h2d_ms", "d2h_ms", "enqueue_ms", "providers", "execution", "cuda_graph_captured"):
            assert key not in res  # nothing the runner did not report
        # the variation is judged on the device time the runner measured (0.5 %), not the host time
        assert res["warnings"] == []
    with pytest.raises(UserError, match="exceeds .* maximum batch 4"):
        benchmark_runner(runner, 5, settings)
    with pytest.raises(UserError, match="--end-to-end needs a corese-edge artifact"):
        benchmark_runner(runner, 1, BenchSettings(warmup_ms=0, iterations=1, end_to_end=True))
    table = format_results(doc).splitlines()
    assert "gpu_compute p50" in table[0] and "queue p50" in table[0]  # the table shows what was measured
    source = inspect.getsource(harness)
    assert "hasattr" not in source and "backend ==" not in source and "type: ignore" not in source


def test_cv_warning_is_logged_unless_the_caller_asks_for_quiet(caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="corese_edge.timing"):
        loud = benchmark_runner(_JitteryRunner("jitter"), 1, BenchSettings(warmup_ms=0, iterations=10))
    assert any("coefficient of variation" in w for w in loud["warnings"]) and "coefficient of variation" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="corese_edge.timing"):
        quiet = benchmark_runner(_JitteryRunner("jitter"), 1, BenchSettings(warmup_ms=0, iterations=10), warn=False)
    assert any("coefficient of variation" in w for w in quiet["warnings"]) and caplog.text == ""


def _tree(root):
    """{file: mtime_ns} under ``root``, bytecode caches left out."""
    from pathlib import Path

    return {p: p.stat().st_mtime_ns for p in Path(root).rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_bench_and_the_suite_write_nothing_into_the_package_or_the_checkout(tmp_path, tiny_onnx, monkeypatch):
    from pathlib import Path

    import corese_edge
    from corese_edge.bench import suite

    package = Path(corese_edge.__file__).resolve().parent
    checkout_benchmarks = package.parent / "benchmarks"
    before = {**_tree(package), **_tree(checkout_benchmarks)}
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    res = CliRunner().invoke(cli, ["bench", "--onnx", str(tiny_onnx), "--iterations", "2", "--warmup-ms", "0",
                                   "--json", "b.json"])
    assert res.exit_code == 0, res.output
    cfg = suite.SuiteConfig(models=("coresse-lite",), backends=("ort",), precisions=("fp32",), batches=(1,),
                            warmup_ms=0, duration_s=0.0, min_iterations=2, img_size=32, calib_images=2, threads=1)
    suite.run_suite(cfg, progress=lambda m: None)
    assert (work / "b.json").is_file() and (work / "benchmarks" / "RESULTS.md").is_file()
    assert len(list((work / "benchmarks" / "results").glob("*.json"))) == 1
    assert {**_tree(package), **_tree(checkout_benchmarks)} == before

    # --out names the suite's folder; without --suite it is refused
    seen = []
    monkeypatch.setattr(suite, "run_suite", lambda c, progress: seen.append(c))
    res = CliRunner().invoke(cli, ["bench", "--suite", "--out", str(tmp_path / "elsewhere")])
    assert res.exit_code == 0, res.output
    assert Path(seen[0].results_dir) == tmp_path / "elsewhere" / "results"
    assert Path(seen[0].markdown) == tmp_path / "elsewhere" / "RESULTS.md"
    res = CliRunner().invoke(cli, ["bench", "--onnx", str(tiny_onnx), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--out names the --suite results folder" in res.output


def test_suite_fp16_is_the_exports_conversion_with_unshared_initializers(tmp_path, monkeypatch):
    import onnx

    from corese_edge.bench import suite
    from corese_edge.export import fp16

    unshared = []
    real = fp16.unshare_initializers

    def spy(model, blocked_ops, *rest):
        unshared.append(set(blocked_ops))
        return real(model, blocked_ops, *rest)

    monkeypatch.setattr(fp16, "unshare_initializers", spy)
    paths = suite.prepare_models("coresse-lite", tmp_path, 32, 2, ("fp16",))
    assert unshared, "the suite's FP16 graph skipped unshare_initializers"
    half = onnx.load(str(paths["fp16"]))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # FP32 I/O kept
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    assert {p.key for p in half.metadata_props} >= {p.key for p in onnx.load(str(paths["fp32"])).metadata_props}


def test_end_to_end_feeds_every_timed_query_the_preprocessed_frames():
    class Preprocessing(_AcceleratorRunner):
        def _infer(self, feed):
            self.fed.append(feed["input"].copy())
            return {"y": feed["input"]}

        def frame_preprocessor(self):
            return lambda frames: np.full((len(frames), 2), 7.0, dtype=np.float32)

    runner = Preprocessing("pre")
    runner.fed = []
    res = benchmark_runner(runner, 2, BenchSettings(warmup_ms=0, iterations=4, end_to_end=True, frame_size=8))
    assert len(runner.fed) == 5 and all(np.all(x == 7.0) and x.shape == (2, 2) for x in runner.fed)  # warm-up + 4
    assert res["end_to_end_ms"]["median"] >= res["latency_ms"]["median"]
