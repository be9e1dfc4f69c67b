"""benchmarks/gpu_check.py without a GPU: the refusal, the plan and its budgets, the step bookkeeping
and the RESULTS.md record (on a temporary copy).  Not marked ``gpu``: none of this needs one."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from corese_edge.statistics import summarize

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gc():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve string annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("gpu_check", None)


def _machine(gpu: bool = True, jetson: dict | None = None) -> dict:
    m = {
        "host": {"cpu": "Test CPU", "cpu_features": ["avx2"], "logical_cores": 16, "usable_cores": 16,
                 "os": "Linux", "arch": "x86_64", "python": "3.12"},
        "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "driver_version": "13.0"}] if gpu else [],
        "versions": {"torch": "2.14.1", "tensorrt": "10.13.3"},
    }
    if not gpu:
        m["no_gpu_reason"] = "cudaErrorNoDevice (100)"
    if jetson:
        m["jetson"] = jetson
    return m


@pytest.fixture
def no_subprocess(monkeypatch, gc):
    def refuse(*a, **k):
        raise AssertionError(f"gpu_check started a process: {a}")
    monkeypatch.setattr(gc.subprocess, "run", refuse)


def _torch_without_cuda(monkeypatch):
    """A torch whose ``cuda.is_available()`` is False (gpu_check's second opinion), without importing
    the real one (seconds) in a test that needs nothing else from it."""
    from types import SimpleNamespace

    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False)))


def _fake_env(monkeypatch, gc, machine, trt_reason=None):
    import corese_edge.bench.machine as machine_mod

    monkeypatch.setattr(machine_mod, "machine_info", lambda: machine)
    monkeypatch.setattr(gc, "trt_unavailable", lambda: trt_reason)
    monkeypatch.setattr(gc, "ort_has_cuda", lambda: False)


# --------------------------------------------------------------------------- refusal and plan


def _out(tmp_path) -> list[str]:
    """Where a run that should not record would record (never the repository's RESULTS.md)."""
    return ["--results-dir", str(tmp_path / "results"), "--markdown", str(tmp_path / "RESULTS.md")]


def test_refuses_without_gpu_in_one_line(monkeypatch, capsys, gc, no_subprocess, tmp_path):
    _fake_env(monkeypatch, gc, _machine(gpu=False))
    _torch_without_cuda(monkeypatch)
    assert gc.main(_out(tmp_path)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("error: no CUDA GPU visible (cudaErrorNoDevice (100))")
    assert not list(tmp_path.iterdir())


def test_trt_bench_step_without_tensorrt_is_one_line(monkeypatch, capsys, gc, tmp_path):
    import corese_edge.export.tensorrt as trt_stage

    def unavailable():
        raise trt_stage.EngineUnavailable("TensorRT is not installed (test)")

    monkeypatch.setattr(trt_stage, "engine_environment", unavailable)
    assert gc.main(["--step", "trt-bench", "--work", str(tmp_path / "w")]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == ("", "error: TensorRT is not installed (test)\n")
    assert not (tmp_path / "w").exists()  # stopped before preparing anything


@pytest.mark.slow
def test_refuses_without_gpu_as_a_command(tmp_path):
    """The real command on this machine (skipped where a GPU is visible: it would run the check)."""
    from corese_edge.bench.machine import gpus

    if gpus()[0]:
        pytest.skip("a GPU is visible here")
    md = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--markdown", str(md), "--results-dir", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: no CUDA GPU visible")
    assert "Traceback" not in proc.stderr
    assert not md.exists() and not (tmp_path / "r").exists()


def test_dry_run_prints_the_plan_and_runs_nothing(monkeypatch, capsys, gc, no_subprocess, tmp_path):
    _fake_env(monkeypatch, gc, _machine(), trt_reason=None)
    assert gc.main(["--dry-run", *_out(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "NVIDIA H100 80GB HBM3" in out
    for name in ("tests", "trt-bench", "gpu-backends", "train-throughput"):
        assert f" {name} " in out
    assert "-m 'gpu or trt' tests/gpu" in out and "benchmarks/train_throughput.py" in out
    assert "skipped" not in out and "total budget 600 s" in out
    assert not list(tmp_path.iterdir())


def test_dry_run_without_gpu_or_tensorrt_says_what_would_happen(monkeypatch, capsys, gc, no_subprocess, tmp_path):
    _fake_env(monkeypatch, gc, _machine(gpu=False), trt_reason="TensorRT is not installed")
    _torch_without_cuda(monkeypatch)
    assert gc.main(["--dry-run", *_out(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "skipped: TensorRT: TensorRT is not installed" in out
    assert "a real run stops at once with exit status 2" in out


def test_budgets_fit_ten_minutes_on_a_desktop_and_scale_on_a_jetson(gc, tmp_path, monkeypatch, capsys, no_subprocess):
    steps = gc.make_plan(_machine(), None, 1.0, tmp_path)
    assert [s.name for s in steps] == ["tests", "trt-bench", "gpu-backends", "train-throughput"]
    assert sum(s.budget_s for s in steps) + gc.RESERVE_S <= gc.TOTAL_BUDGET_S == 600
    jetson = {"model": "NVIDIA Jetson AGX Orin", "jetpack": "6.2", "nvpmodel": {"name": "MAXN", "id": 0}, "jetson_clocks": "off"}
    assert gc.budget_scale(_machine(jetson=jetson), None) == gc.JETSON_SCALE
    scaled = gc.make_plan(_machine(jetson=jetson), None, gc.JETSON_SCALE, tmp_path)
    assert [s.budget_s for s in scaled] == [round(s.budget_s * gc.JETSON_SCALE) for s in steps]
    _fake_env(monkeypatch, gc, _machine(jetson=jetson))
    assert gc.main(["--dry-run", *_out(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "nvpmodel MAXN jetson_clocks off" in out
    assert "warning: jetson_clocks is off" in out
    assert gc.main(["--dry-run", "--budget-scale", "0", *_out(tmp_path)]) == 2


# --------------------------------------------------------------------------- running steps


def test_run_plan_enforces_budgets_and_the_total(gc, tmp_path):
    """A step gets min(its budget, time left); one that runs over is stopped; later ones may not start."""
    now = [0.0]
    seen = []

    def runner(argv, timeout, **kw):
        seen.append(timeout)
        now[0] += timeout  # every step uses all the time it is given, then times out
        raise subprocess.TimeoutExpired(argv, timeout, output=b"partial", stderr=b"")

    steps = [gc.Step("a", 300, ("x",), "a"), gc.Step("b", 300, ("y",), "b"), gc.Step("c", 50, ("z",), "c"),
             gc.Step("d", 10, ("w",), "d", skip="no TensorRT")]
    results = gc.run_plan(steps, 600, tmp_path, echo=lambda m: None, runner=runner, clock=lambda: now[0])
    assert seen == [300, 600 - gc.RESERVE_S - 300]
    assert [r.status for r in results] == ["timeout", "timeout", "not run", "skipped"]
    assert "partial" in (tmp_path / "a.log").read_text()
    assert not any(r.ok for r in results[:3]) and results[3].ok


def test_trt_bench_rows_survive_a_timeout(gc, tmp_path):
    """The step rewrites its JSON after each precision; a timeout keeps what was finished."""
    step = gc.make_plan(_machine(), None, 1.0, tmp_path)[1]
    assert step.name == "trt-bench"

    def runner(argv, timeout, **kw):
        (tmp_path / "trt-bench.json").write_text(json.dumps({"results": [_trt_row("int8", "trt", 1)], "build_s": {"int8": 80.0}}))
        raise subprocess.TimeoutExpired(argv, timeout)

    r = gc.run_step(step, 165, tmp_path, runner)
    assert r.status == "timeout" and "kept 1 rows" in r.summary
    [gpu, _] = gc.build_runs([r], "2026-12-01T10:00:00+00:00", 170.0)
    assert [row["precision"] for row in gpu["results"]] == ["int8"]
    assert gpu["not_run"][0]["reason"].startswith("stopped after 165 s; kept 1 rows")


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="2" tests="4">
<testcase classname="tests.gpu.test_trt_engines" name="test_a[fp16]" time="1.0"/>
<testcase classname="tests.gpu.test_trt_engines" name="test_b" time="1.0"><failure message="AssertionError: INT8 plan 9 B vs FP16 plan 10 B">trace</failure></testcase>
<testcase classname="tests.gpu.test_torch_cuda" name="test_c" time="0"><skipped type="pytest.skip" message="torch cannot use the GPU | really">skip</skipped></testcase>
<testcase classname="tests.gpu.test_torch_cuda" name="test_d" time="0"><skipped type="pytest.skip" message="torch cannot use the GPU | really">skip</skipped></testcase>
</testsuite></testsuites>"""


def test_tests_step_reads_the_junit_report(gc, tmp_path):
    junit = tmp_path / "tests.junit.xml"
    junit.write_text(JUNIT)
    step = gc.Step("tests", 240, ("python", "-m", "pytest", f"--junitxml={junit}"), "tests")
    r = gc.interpret(step, 1, "", "", 12.0, tmp_path / "tests.log")
    assert (r.status, r.summary) == ("failed", "1 passed, 1 failed, 2 skipped")
    assert r.data["failures"] == [{"test": "tests.gpu.test_trt_engines::test_b", "message": "AssertionError: INT8 plan 9 B vs FP16 plan 10 B"}]
    junit.unlink()
    assert gc.interpret(step, 0, "", "boom", 1.0, tmp_path / "tests.log").status == "failed"  # no report: not a pass


def test_train_throughput_output_is_understood(gc, monkeypatch, capsys):
    """The parser against what benchmarks/train_throughput.py really prints (its timing replaced)."""
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    tt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tt)
    speeds = iter([123.4, 308.5])  # FP32 first, then bf16 + channels-last, as --precision calls ceiling()
    monkeypatch.setattr(tt, "ceiling", lambda *a, **k: next(speeds))
    monkeypatch.setattr(sys, "argv", ["train_throughput.py", "--precision", "--device", "cpu"])
    tt.main()
    stdout = capsys.readouterr().out
    step = gc.make_plan(_machine(), None, 1.0, ROOT)[3]
    r = gc.interpret(step, 0, stdout, "", 3.0, ROOT / "unused.log")
    assert r.status == "passed"
    assert r.data == {"fp32": 123.4, "bf16_channels_last": 308.5}
    assert r.summary.endswith("(2.50x)")
    assert gc.interpret(step, 0, "machine: x\n", "", 3.0, ROOT / "unused.log").status == "failed"  # no table: no pass


# --------------------------------------------------------------------------- the record


def _trt_row(precision: str, backend: str, batch: int) -> dict:
    lat = summarize([1.0 + 0.01 * i for i in range(20)])
    return {"model": "coresse", "artifact": f"model.{precision}.plan", "backend": backend, "precision": precision,
            "batch": batch, "iterations": 20, "latency_ms": lat, "gpu_compute_ms": lat, "throughput_qps": 900.0,
            "throughput_ips": 900.0 * batch}


def _results(gc, tmp_path):
    junit = tmp_path / "tests.junit.xml"
    junit.write_text(JUNIT)
    tests = gc.interpret(gc.Step("tests", 240, (f"--junitxml={junit}",), "t"), 1, "", "", 100.0, tmp_path / "t.log")
    trt = gc.StepResult("trt-bench", "passed", 150.0, 180, "4 rows", {
        "results": [_trt_row("int8", "trt", 8), _trt_row("int8", "trt+graph", 8), _trt_row("fp16", "trt", 1), _trt_row("fp16", "trt", 8)],
        "settings": {"warmup_ms": 200, "duration_s": 1.0, "min_iterations": 10, "cuda_graph": "off and on", "include_transfers": True},
    })
    backends = gc.StepResult("gpu-backends", "timeout", 90.0, 90, "stopped after 90 s")
    train = gc.StepResult("train-throughput", "passed", 40.0, 60, "...", {"fp32": 400.0, "bf16_channels_last": 1000.0})
    return [tests, trt, backends, train]


@pytest.mark.slow
def test_record_appends_a_well_formed_section_atomically(gc, tmp_path, monkeypatch):
    results_dir, md = tmp_path / "results", tmp_path / "RESULTS.md"
    shutil.copytree(ROOT / "benchmarks" / "results", results_dir)
    shutil.copy(ROOT / "benchmarks" / "RESULTS.md", md)
    before = md.read_text()
    jetson = {"model": "NVIDIA Jetson AGX Orin", "jetpack": "6.2", "nvpmodel": {"name": "MAXN", "id": 0}, "jetson_clocks": "on"}
    machine = _machine(jetson=jetson)
    runs = gc.build_runs(_results(gc, tmp_path), "2026-12-01T10:00:00+00:00", 380.0)
    path = gc.record(runs, machine, results_dir, md)

    doc = json.loads(path.read_text())
    assert doc["schema"] == "corese-edge/bench-results/1" and doc["machine"] == machine
    assert [(r["kind"], r["name"]) for r in doc["runs"]] == [("gpu", "gpu_check"), ("ratios", "gpu_check")]
    text = md.read_text()
    # what was there is still there
    first_section = before.split("\n## ", 2)[1].split("\n", 1)[0]
    assert f"## {first_section}" in text
    # the new section: the machine with its Jetson state, the TensorRT rows, the checks
    from corese_edge.bench.machine import describe

    heading = f"## {describe(machine)}"
    assert heading in text and "nvpmodel MAXN jetson_clocks on" in heading
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    median = summarize([1.0 + 0.01 * i for i in range(20)])["median"]
    assert f"| coresse | trt+graph | int8 | 8 | {median:.2f} |" in section
    assert "| coresse | trt | fp16 | 1 |" in section
    rows = [line for line in section.splitlines() if line.startswith("| gpu_check | ")]
    assert rows == [
        "| gpu_check | tests/gpu (pytest -m 'gpu or trt') | 1 passed, 1 failed, 2 skipped | 0 failed | FAILED | 2026-12-01 |",
        "| gpu_check | failed: tests.gpu.test_trt_engines::test_b | AssertionError: INT8 plan 9 B vs FP16 plan 10 B |  | FAILED | 2026-12-01 |",
        "| gpu_check | skipped: 2 test(s) | torch cannot use the GPU / really |  | skipped | 2026-12-01 |",
        "| gpu_check | training img/s, coresse batch 32 at 224 px: FP32 -> --amp bf16 --channels-last | 400.0 -> 1000.0 | bf16 faster | 2.50x | 2026-12-01 |",
        f"| gpu_check | TensorRT INT8 vs FP16 p50 latency, coresse batch 8 (trt) | fp16 {median:.3f} ms -> int8 {median:.3f} ms | INT8 faster | 1.00x | 2026-12-01 |",
        "| gpu_check | step gpu-backends | stopped after 90 s | within 90 s | TIMEOUT | 2026-12-01 |",
    ]
    assert "gpu-backends timeout 90/90 s" in section and "total 380 s" in section
    for line in section.splitlines():
        if line.startswith("| ") and "| --- |" not in line and "not run" not in line:
            header = 10 if line.count("|") == 11 else 6  # the suite table (with its artifact column) or the ratios table
            assert line.count("|") == header + 1, f"a cell broke the table: {line}"

    # a crash while RESULTS.md is being written leaves the previous file whole and no temporary behind
    good = md.read_bytes()
    import corese_edge.atomic as atomic

    real_fsync = atomic.os.fsync

    def crash(fd):
        if Path(f"/proc/self/fd/{fd}").resolve().name.startswith(".RESULTS.md.tmp-"):
            raise OSError("disk full")
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        gc.record(runs, machine, results_dir, md)
    assert md.read_bytes() == good
    assert not list(tmp_path.glob(".RESULTS.md.tmp-*"))


def test_int8_vs_fp16_row_is_the_latency_ratio_per_backend_and_batch(gc):
    def row(precision, backend, batch, ms):
        r = _trt_row(precision, backend, batch)
        r["latency_ms"] = summarize([ms] * 20)
        return r

    rows = [row("int8", "trt", 8, 2.0), row("fp16", "trt", 8, 3.0), row("int8", "trt+graph", 8, 1.5),
            row("fp16", "trt+graph", 8, 3.0), row("int8", "trt", 32, 4.0)]  # batch 32 has no FP16 row
    items = gc.int8_vs_fp16_items(rows)
    assert [(i["what"], i["value"], i["verdict"]) for i in items] == [
        ("TensorRT INT8 vs FP16 p50 latency, coresse batch 8 (trt)", "fp16 3.000 ms -> int8 2.000 ms", "1.50x"),
        ("TensorRT INT8 vs FP16 p50 latency, coresse batch 8 (trt+graph)", "fp16 3.000 ms -> int8 1.500 ms", "2.00x"),
    ]
    trt = gc.StepResult("trt-bench", "passed", 150.0, 180, "5 rows", {"results": rows})
    [_, ratios] = gc.build_runs([trt], "2026-12-01T10:00:00+00:00", 150.0)
    assert [i["verdict"] for i in ratios["items"]] == ["1.50x", "2.00x"]


def test_trt_skip_and_failed_steps_are_recorded_as_not_run(gc, tmp_path):
    skipped = gc.StepResult("trt-bench", "skipped", 0.0, 180, "TensorRT: not installed")
    [gpu, ratios] = gc.build_runs([skipped], "2026-12-01T10:00:00+00:00", 10.0, trt_reason="TensorRT is not installed | lean only")
    assert gpu["results"] == []
    assert gpu["not_run"] == [{"model": "coresse", "backend": "trt", "precision": "fp16/int8", "reason": "TensorRT is not installed / lean only"}]
    assert ratios["items"] == []  # a skip by design is not a failure
    failed = gc.StepResult("trt-bench", "failed", 30.0, 180, "exit 2: error: TensorRT could not parse")
    [gpu, ratios] = gc.build_runs([failed], "2026-12-01T10:00:00+00:00", 30.0)
    assert gpu["not_run"][0]["reason"] == "exit 2: error: TensorRT could not parse"
    assert ratios["items"] == [{"what": "step trt-bench", "value": "exit 2: error: TensorRT could not parse",
                                "target": "within 180 s", "verdict": "FAILED"}]


# --------------------------------------------------------------------------- the suite gpu_check runs


@pytest.mark.slow
def test_gpu_suite_skips_cleanly_here_with_reasons(tmp_path):
    """What gpu_check's first step runs, on a machine without a GPU: every test skipped, each with
    its reason, and no fixture (training, export) started."""
    from corese_edge.bench.machine import gpus

    if gpus()[0]:
        pytest.skip("a GPU is visible here: the suite would run")
    junit = tmp_path / "junit.xml"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu or trt", "tests/gpu", "-q", "-ra",
                           "-p", "no:cacheprovider", f"--junitxml={junit}", f"--basetemp={tmp_path / 'base'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    spec = importlib.util.spec_from_file_location("gpu_check_junit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check_junit"] = module
    try:
        spec.loader.exec_module(module)
        report = module.parse_junit(junit)
    finally:
        sys.modules.pop("gpu_check_junit", None)
    assert report["passed"] == report["failed"] == 0 and report["skipped"] >= 15
    for skip in report["skips"]:
        assert skip["message"].startswith("no CUDA GPU: "), skip
        if ".test_trt_engines::" in skip["test"]:
            assert "TensorRT with its builder is not installed" in skip["message"], skip
    assert "SKIPPED" in proc.stdout and "no CUDA GPU" in proc.stdout  # -ra names the reason
    assert not (tmp_path / "base").exists() or not any((tmp_path / "base").rglob("*.pt"))  # nothing was trained
