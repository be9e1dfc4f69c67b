"""One command for a person with an NVIDIA GPU or a Jetson: the GPU test suite, the GPU benchmarks, one record.

    python benchmarks/gpu_check.py              # about 10 minutes on an H100-class GPU
    python benchmarks/gpu_check.py --dry-run    # print the plan and the budgets; run nothing

Steps, each a subprocess with its own time budget (its timeout), run in this order:

1. ``tests``: ``pytest -m "gpu or trt" tests/gpu`` (the TensorRT tests skip themselves, with the
   reason, where TensorRT's builder is missing);
2. ``trt-bench`` (only with TensorRT): the full ``coresse`` (random weights, 224 px) exported to
   FP16 and INT8 ONNX (TensorRT flavour), then per precision, INT8 first, its plan built here and
   timed at batch 1, 8 and 32 with CUDA graphs off and on, transfers included (rows finished
   before a timeout are kept);
3. ``gpu-backends``: ``benchmarks/gpu_backends.py`` (PyTorch CUDA FP16 and ONNX Runtime), which
   records its own run in the default ``benchmarks/results`` (whatever ``--results-dir`` says);
4. ``train-throughput``: ``benchmarks/train_throughput.py`` (FP32 against ``--amp bf16
   --channels-last``, coresse, batch 32, 224 px).

The outcome -- test counts and failures, TensorRT rows, training throughput, each step's time --
is appended with the machine (GPU, driver, library versions; on a Jetson the JetPack release, the
nvpmodel mode and the jetson_clocks state) to ``benchmarks/results/<machine>.json``, and
``benchmarks/RESULTS.md`` is regenerated from those files (each file is written atomically; the
Markdown is generated, so a hand-appended section would be lost at the next regeneration).

Budgets are for an H100-class GPU and add up to under 10 minutes; on a Jetson they are multiplied
by ``--budget-scale`` (3 by default there: engine builds take minutes on an Orin).  Without a GPU
the command stops at once with one line and exit status 2.  Exit status 1 means a step failed or
ran out of time; the record says which.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere in a source checkout
    sys.path.insert(0, str(ROOT))

#: the whole run must fit in this many seconds on an H100-class GPU (issue 7, section 5)
TOTAL_BUDGET_S = 600
#: what the record and the final table need after the steps
RESERVE_S = 25
JETSON_SCALE = 3.0
MIN_STEP_S = 20  # a step with less time than this left is not started
TRT_BATCHES = (1, 8, 32)
#: how the trt-bench step times (recorded with its rows, and with its "not run" row when it fails)
TRT_SETTINGS = {"batches": list(TRT_BATCHES), "warmup_ms": 200, "duration_s": 1.0, "min_iterations": 10,
                "cuda_graph": "off and on (backend trt+graph)", "include_transfers": True, "img_size": 224,
                "weights": "random init (speed only)", "int8_flavour": "tensorrt (S8S8 Q/DQ)"}


@dataclass(frozen=True)
class Step:
    """One step of the plan: ``argv`` runs in ``ROOT``; ``skip`` says why it will not run here."""

    name: str
    budget_s: float
    argv: tuple[str, ...]
    what: str
    skip: str | None = None


@dataclass
class StepResult:
    name: str
    status: str  # passed | failed | timeout | skipped | not run
    seconds: float
    budget_s: float
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status in ("passed", "skipped")


# --------------------------------------------------------------------------- environment


def gpu_present(machine: dict[str, Any]) -> tuple[bool, str]:
    """``(present, reason when not)``: the machine record's GPUs, else torch's view of CUDA."""
    if machine.get("gpus"):
        return True, ""
    reason = machine.get("no_gpu_reason") or "no NVIDIA GPU found"
    try:
        import torch
    except ImportError:
        return False, reason
    if torch.cuda.is_available():  # e.g. a Jetson whose cuda-python does not match its driver
        return True, ""
    return False, reason


def trt_unavailable() -> str | None:
    """Why TensorRT engines cannot be built here (None: they can)."""
    from corese_edge.errors import UserError
    from corese_edge.export.tensorrt import import_tensorrt, tensorrt_line

    try:
        trt = import_tensorrt()
        tensorrt_line(trt.__version__)
    except UserError as exc:
        return str(exc)
    return None


def ort_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def budget_scale(machine: dict[str, Any], requested: float | None) -> float:
    if requested is not None:
        return requested
    return JETSON_SCALE if machine.get("jetson") else 1.0


def jetson_warnings(machine: dict[str, Any]) -> list[str]:
    """Benchmark hygiene on a Jetson (shared/TENSORRT.md): a locked clock and a known power mode."""
    j = machine.get("jetson")
    if not j:
        return []
    out = []
    if j.get("jetson_clocks") != "on":
        out.append(f"jetson_clocks is {j.get('jetson_clocks')}: run 'sudo jetson_clocks' first, or the timings will vary")
    if not (j.get("nvpmodel") or {}).get("name"):
        out.append("the nvpmodel power mode could not be read ('sudo nvpmodel -q'); it is part of every result")
    return out


# --------------------------------------------------------------------------- the plan


def make_plan(machine: dict[str, Any], trt_reason: str | None, scale: float, work: Path,
              python: str = sys.executable, ort_cuda: bool = False) -> list[Step]:
    """The steps, in order, with budgets (seconds, already scaled) and why any is skipped."""
    def s(seconds: float) -> float:
        return round(seconds * scale)

    junit = work / "tests.junit.xml"
    return [
        Step("tests", s(270), (python, "-m", "pytest", "-m", "gpu or trt", "tests/gpu", "-q", "-rA",
                               "-p", "no:cacheprovider", f"--junitxml={junit}"),
             "the GPU test suite (TensorRT tests skip themselves without TensorRT)"),
        Step("trt-bench", s(165), (python, os.fspath(Path(__file__).resolve()), "--step", "trt-bench", "--work", os.fspath(work)),
             "coresse INT8 then FP16 plans (224 px, random weights) built here; bench batch "
             + "/".join(map(str, TRT_BATCHES)) + ", CUDA graph off and on, transfers included",
             skip=f"TensorRT: {trt_reason}" if trt_reason else None),
        Step("gpu-backends", s(80), (python, "benchmarks/gpu_backends.py", "--batches", "1,8,64", "--duration-s", "1",
                                     "--ort-max-batch", "64" if ort_cuda else "8"),
             "PyTorch CUDA FP16 and ONNX Runtime (" + ("CUDA provider" if ort_cuda else "CPU provider: no onnxruntime-gpu")
             + ") on coresse, batch 1/8/64; records its own run"),
        Step("train-throughput", s(50), (python, "benchmarks/train_throughput.py", "--precision", "--steps", "20", "--warmup", "5"),
             "training img/s, coresse batch 32 at 224 px: FP32 against --amp bf16 --channels-last"),
    ]


def format_plan(steps: Sequence[Step], machine_line: str, total_s: float) -> str:
    lines = [f"machine: {machine_line}",
             f"plan (total budget {total_s:.0f} s, each step a subprocess with its budget as timeout):",
             f"  {'#':>2}  {'step':17} {'budget':>7}  what"]
    for i, st in enumerate(steps, 1):
        lines.append(f"  {i:>2}  {st.name:17} {st.budget_s:>5.0f} s  {st.what}")
        lines.append(f"      {'':17} {'':>7}  " + (f"skipped: {st.skip}" if st.skip else "$ " + shlex.join(st.argv)))
    lines.append(f"  then: append the outcome with the machine to benchmarks/results/<machine>.json and "
                 "regenerate benchmarks/RESULTS.md")
    return "\n".join(lines)


# --------------------------------------------------------------------------- parsing step output


def parse_junit(path: Path) -> dict[str, Any]:
    """Counts and the failed / skipped tests of a pytest JUnit XML report."""
    root = ET.parse(path).getroot()
    cases = root.iter("testcase")
    out: dict[str, Any] = {"passed": 0, "failed": 0, "skipped": 0, "failures": [], "skips": []}
    for case in cases:
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        skipped = case.find("skipped")
        if bad is not None:
            out["failed"] += 1
            out["failures"].append({"test": test_id, "message": _one_line(bad.get("message") or bad.text or "")})
        elif skipped is not None:
            out["skipped"] += 1
            out["skips"].append({"test": test_id, "message": _one_line(skipped.get("message") or "")})
        else:
            out["passed"] += 1
    return out


def parse_train_throughput(stdout: str) -> dict[str, float]:
    """``{"fp32": img/s, "bf16_channels_last": img/s}`` from train_throughput.py's table."""
    found: dict[str, float] = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2:
            continue
        try:
            value = float(cells[1])
        except ValueError:
            continue
        if cells[0].startswith("FP32"):
            found["fp32"] = value
        elif "bf16" in cells[0]:
            found["bf16_channels_last"] = value
    return found


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


# --------------------------------------------------------------------------- running


def run_step(step: Step, timeout_s: float, log_dir: Path,
             runner: Callable[..., subprocess.CompletedProcess] | None = None) -> StepResult:
    """Run one step with ``timeout_s``; its output goes to ``log_dir/<name>.log``."""
    runner = runner or subprocess.run
    if step.skip:
        return StepResult(step.name, "skipped", 0.0, step.budget_s, step.skip)
    if timeout_s < MIN_STEP_S:
        return StepResult(step.name, "not run", 0.0, step.budget_s, f"out of time ({timeout_s:.0f} s left of the total budget)")
    log = log_dir / f"{step.name}.log"
    t0 = time.monotonic()
    try:
        # PYTHONPATH: the benchmark scripts import corese_edge from this checkout even when it is not installed
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        proc = runner(list(step.argv), cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                      env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": path})
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
        timed_out = False
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        rc, timed_out = None, True
    seconds = round(time.monotonic() - t0, 1)
    log.write_text(f"$ {shlex.join(step.argv)}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n")
    if timed_out:
        data = _trt_bench_data(step) if step.name == "trt-bench" else {}
        kept = f"; kept {len(data['results'])} rows" if data.get("results") else ""
        return StepResult(step.name, "timeout", seconds, step.budget_s, f"stopped after {timeout_s:.0f} s{kept}; log {log}", data)
    return interpret(step, rc, stdout, stderr, seconds, log)


def interpret(step: Step, rc: int, stdout: str, stderr: str, seconds: float, log: Path) -> StepResult:
    """Turn a finished step's exit status and output into a result."""
    status = "passed" if rc == 0 else "failed"
    last = _one_line((stderr.strip().splitlines() or stdout.strip().splitlines() or [""])[-1])
    if step.name == "tests":
        junit = Path(next(a for a in step.argv if a.startswith("--junitxml=")).split("=", 1)[1])
        if not junit.is_file():
            return StepResult(step.name, "failed", seconds, step.budget_s, f"pytest exit {rc}, no report: {last}")
        data = parse_junit(junit)
        if rc == 5 or data["passed"] + data["failed"] + data["skipped"] == 0:
            status = "failed"  # nothing collected is a broken checkout, not a pass
        return StepResult(step.name, status, seconds, step.budget_s,
                          f"{data['passed']} passed, {data['failed']} failed, {data['skipped']} skipped", data)
    if step.name == "train-throughput":
        data = parse_train_throughput(stdout)
        if rc == 0 and len(data) == 2:
            return StepResult(step.name, status, seconds, step.budget_s,
                              f"FP32 {data['fp32']:.1f} img/s, bf16+channels-last {data['bf16_channels_last']:.1f} img/s "
                              f"({data['bf16_channels_last'] / data['fp32']:.2f}x)", data)
        return StepResult(step.name, "failed", seconds, step.budget_s, f"exit {rc}: {last}", data)
    if step.name == "trt-bench":
        data = _trt_bench_data(step)
        if rc == 0 and data:
            builds = ", ".join(f"{p} {t:.0f} s" for p, t in data.get("build_s", {}).items())
            return StepResult(step.name, status, seconds, step.budget_s,
                              f"{len(data['results'])} rows, TensorRT {data.get('trt_version')}; ONNX export "
                              f"{data.get('export_s', 0):.0f} s, engine builds {builds}", data)
        return StepResult(step.name, "failed", seconds, step.budget_s, f"exit {rc}: {last}", data)
    return StepResult(step.name, status, seconds, step.budget_s, "recorded its own run" if rc == 0 else f"exit {rc}: {last}")


def _trt_bench_data(step: Step) -> dict[str, Any]:
    """What the trt-bench step wrote (possibly only its first precision), or ``{}``."""
    out = Path(step.argv[step.argv.index("--work") + 1]) / "trt-bench.json"
    try:
        return json.loads(out.read_text())
    except (OSError, ValueError):
        return {}


def run_plan(steps: Sequence[Step], total_s: float, log_dir: Path, echo: Callable[[str], None] = print,
             runner: Callable[..., subprocess.CompletedProcess] | None = None,
             clock: Callable[[], float] = time.monotonic) -> list[StepResult]:
    """Run the steps in order within ``total_s`` (less the reserve for the record)."""
    deadline = clock() + total_s - RESERVE_S
    results = []
    for st in steps:
        left = deadline - clock()
        echo(f"[{st.name}] " + ("skipped: " + st.skip if st.skip else f"running (budget {st.budget_s:.0f} s, {left:.0f} s left)"))
        r = run_step(st, min(st.budget_s, left), log_dir, runner)
        echo(f"[{st.name}] {r.status} in {r.seconds:.0f} s: {r.summary}")
        results.append(r)
    return results


# --------------------------------------------------------------------------- the record


def _cell(text: Any) -> str:
    """A Markdown table cell: one line, no column separators."""
    return _one_line(str(text), 160).replace("|", "/")


def int8_vs_fp16_items(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One ratios row per (backend, batch) that has both a TensorRT INT8 and an FP16 plan row: the
    median latency of each and FP16 / INT8 (above 1.00x: INT8 is faster).  Issue 17: whether the
    INT8 graph TensorRT can fuse (Q/DQ on residual inputs) is clearly faster than FP16 here."""
    by = {(r.get("backend"), r.get("batch"), r.get("precision")): r for r in rows}
    items = []
    for backend, batch, precision in by:
        if precision != "int8" or (backend, batch, "fp16") not in by:
            continue
        int8 = by[(backend, batch, "int8")]["latency_ms"]["median"]
        fp16 = by[(backend, batch, "fp16")]["latency_ms"]["median"]
        items.append({"what": f"TensorRT INT8 vs FP16 p50 latency, coresse batch {batch} ({backend})",
                      "value": f"fp16 {fp16:.3f} ms -> int8 {int8:.3f} ms", "target": "INT8 faster",
                      "verdict": f"{fp16 / int8:.2f}x" if int8 > 0 else "n/a"})
    return items


def build_runs(results: Sequence[StepResult], date: str, total_seconds: float,
               trt_reason: str | None = None) -> list[dict[str, Any]]:
    """The runs to append: a ``gpu`` run with the TensorRT rows and a ``ratios`` run with the rest."""
    by = {r.name: r for r in results}
    items: list[dict[str, Any]] = []
    tests = by.get("tests")
    if tests is not None:
        items.append({"what": "tests/gpu (pytest -m 'gpu or trt')", "value": _cell(tests.summary),
                      "target": "0 failed", "verdict": "pass" if tests.status == "passed" else tests.status.upper()})
        for f in tests.data.get("failures", [])[:10]:
            items.append({"what": _cell(f"failed: {f['test']}"), "value": _cell(f["message"]), "target": "", "verdict": "FAILED"})
        reasons: dict[str, int] = {}
        for s in tests.data.get("skips", []):
            reasons[s["message"]] = reasons.get(s["message"], 0) + 1
        for msg, n in reasons.items():
            items.append({"what": f"skipped: {n} test(s)", "value": _cell(msg), "target": "", "verdict": "skipped"})
    train = by.get("train-throughput")
    if train is not None and len(train.data) == 2:
        fp32, bf16 = train.data["fp32"], train.data["bf16_channels_last"]
        items.append({"what": "training img/s, coresse batch 32 at 224 px: FP32 -> --amp bf16 --channels-last",
                      "value": f"{fp32:.1f} -> {bf16:.1f}", "target": "bf16 faster", "verdict": f"{bf16 / fp32:.2f}x"})
    trt_step = by.get("trt-bench")
    items += int8_vs_fp16_items(trt_step.data.get("results", []) if trt_step is not None else [])
    for r in results:
        if not r.ok and r.name != "tests":  # the tests row above already carries its status
            items.append({"what": f"step {r.name}", "value": _cell(r.summary), "target": f"within {r.budget_s:.0f} s",
                          "verdict": r.status.upper()})
    notes = "Steps: " + "; ".join(f"{r.name} {r.status} {r.seconds:.0f}/{r.budget_s:.0f} s" for r in results) \
        + f"; total {total_seconds:.0f} s. Logs stay on the machine that ran it."
    ratios = {"kind": "ratios", "name": "gpu_check", "date": date, "items": items, "notes": notes}

    trt = by.get("trt-bench")
    rows = list(trt.data.get("results", [])) if trt is not None else []
    not_run = list(trt.data.get("not_run", [])) if trt is not None else []
    if trt is not None and not trt.ok:
        not_run.append({"model": "coresse", "backend": "trt", "precision": "fp16/int8", "reason": _cell(trt.summary)})
    elif trt is not None and trt.status == "skipped":
        not_run.append({"model": "coresse", "backend": "trt", "precision": "fp16/int8", "reason": _cell(trt_reason or trt.summary)})
    settings = dict(trt.data.get("settings") or TRT_SETTINGS) if trt is not None else dict(TRT_SETTINGS)
    gpu = {"kind": "gpu", "name": "gpu_check", "date": date, "settings": settings, "results": rows, "not_run": not_run,
           "notes": "TensorRT plans of coresse built on this machine (corese_edge.export.tensorrt.build_engine); "
                    "backend 'trt+graph' rows replay CUDA graphs. " + _cell(trt.summary if trt is not None else "")}
    return [gpu, ratios]


def record(runs: Sequence[dict[str, Any]], machine: dict[str, Any], results_dir: str | os.PathLike,
           markdown: str | os.PathLike) -> Path:
    """Append ``runs`` to the machine's results file and regenerate the Markdown (both atomic writes)."""
    from corese_edge.bench.suite import append_run, render_markdown

    path = None
    for run in runs:
        path = append_run(results_dir, machine, {**run, "load_average": _load()})
    render_markdown(results_dir, markdown)
    return path


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def format_summary(results: Sequence[StepResult], total_seconds: float) -> str:
    lines = [f"{'step':17} {'status':8} {'time':>7} {'budget':>7}  result"]
    for r in results:
        lines.append(f"{r.name:17} {r.status:8} {r.seconds:>5.0f} s {r.budget_s:>5.0f} s  {r.summary}")
    lines.append(f"{'total':17} {'':8} {total_seconds:>5.0f} s")
    trt = next((r for r in results if r.name == "trt-bench" and r.data.get("results")), None)
    if trt is not None:
        lines += ["", f"{'precision':9} {'backend':10} {'batch':>5} {'p50 ms':>8} {'p99 ms':>8} {'compute p50':>11} {'img/s':>9}"]
        for row in trt.data["results"]:
            lines.append(f"{row['precision']:9} {row['backend']:10} {row['batch']:>5} {row['latency_ms']['median']:>8.3f} "
                         f"{row['latency_ms']['p99']:>8.3f} {row['gpu_compute_ms']['median']:>11.3f} {row['throughput_ips']:>9.1f}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the trt-bench step


def trt_bench(work: Path, batches: Sequence[int] = TRT_BATCHES, duration_s: float = TRT_SETTINGS["duration_s"]) -> dict[str, Any]:
    """Export a random-init ``coresse`` to ONNX, then per precision (INT8 first) build its plan and
    time it with CUDA graphs off and on.  ``work/trt-bench.json`` is rewritten after each precision,
    so a step stopped by its budget still leaves the rows it finished."""
    from corese_edge.atomic import write_json
    from corese_edge.bench.suite import make_checkpoint
    from corese_edge.bench.timing import run_benchmarks
    from corese_edge.timing import BenchSettings
    from corese_edge.data.synthetic import generate
    from corese_edge.export import make_export_config, run_export
    from corese_edge.export.tensorrt import build_engine, engine_environment
    from corese_edge.runtime.trt import TrtRunner

    engine_environment()  # no TensorRT or no GPU: say so before minutes of model preparation
    work.mkdir(parents=True, exist_ok=True)
    # only the speed matters here: a few images for calibration, parity and the drift report
    data = generate(work / "faces", train_per_class=10, test_per_class=2, size=64, seed=0)
    ckpt = make_checkpoint("coresse", work / "coresse.pt", 224)
    t0 = time.monotonic()
    export = run_export(make_export_config(
        checkpoint=str(ckpt), data=str(data), fp16=True, int8=True, target="tensorrt", calib_size=16,
        max_drift=100.0, engine=False, progress=False, out=str(work / "export")))
    out: dict[str, Any] = {
        "schema": "corese-edge/gpu-check-trt/1",
        "trt_version": None,
        "export_s": round(time.monotonic() - t0, 1),
        "build_s": {},
        "settings": {**TRT_SETTINGS, "batches": list(batches), "duration_s": duration_s},
        "results": [],
        "not_run": [],
    }
    for precision in ("int8", "fp16"):  # INT8 first: it is what corese-edge is for
        t0 = time.monotonic()
        built = build_engine(export.artifacts[f"onnx-{precision}"], min_batch=1, opt_batch=8, max_batch=max(batches))
        out["build_s"][precision] = round(time.monotonic() - t0, 1)
        out["trt_version"] = built.info["trt_version"]
        for graph in (False, True):
            settings = BenchSettings(batches=tuple(batches), warmup_ms=TRT_SETTINGS["warmup_ms"], duration_s=duration_s,
                                     min_iterations=TRT_SETTINGS["min_iterations"], cuda_graph=graph)
            runner = TrtRunner(built.plan, cuda_graph=graph)
            try:
                doc = run_benchmarks(runner, settings)
            finally:
                runner.close()
            for r in doc["results"]:
                r.update(model="coresse", artifact=Path(r["artifact"]).name, backend="trt+graph" if graph else "trt")
                out["results"].append(r)
        write_json(work / "trt-bench.json", out)
    return out


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the budgets; run nothing")
    ap.add_argument("--budget-scale", type=float, help=f"multiply every budget (default 1, {JETSON_SCALE:g} on a Jetson)")
    ap.add_argument("--results-dir", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--markdown", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--no-record", action="store_true", help="run and print, but append nothing")
    ap.add_argument("--step", choices=["trt-bench"], help=argparse.SUPPRESS)  # internal: one step's body
    ap.add_argument("--work", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.step == "trt-bench":
        from corese_edge.errors import UserError

        try:
            trt_bench(Path(a.work))
        except UserError as exc:  # one line for the step's log and the record, no traceback
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0

    from corese_edge.bench.machine import describe, machine_info

    if a.budget_scale is not None and a.budget_scale <= 0:
        print(f"error: --budget-scale must be positive, got {a.budget_scale}", file=sys.stderr)
        return 2
    machine = machine_info()
    present, why = gpu_present(machine)
    if not present and not a.dry_run:
        print(f"error: no CUDA GPU visible ({why}); gpu_check runs on a machine with an NVIDIA GPU or a Jetson", file=sys.stderr)
        return 2
    scale = budget_scale(machine, a.budget_scale)
    trt_reason = trt_unavailable()
    total = TOTAL_BUDGET_S * scale
    if a.dry_run:
        steps = make_plan(machine, trt_reason, scale, Path(tempfile.gettempdir()) / "corese-gpu-check-XXXX", ort_cuda=ort_has_cuda())
        print(format_plan(steps, describe(machine), total))
        if not present:
            print(f"note: no CUDA GPU here ({why}); a real run stops at once with exit status 2")
        for w in jetson_warnings(machine):
            print(f"warning: {w}")
        return 0

    work = Path(tempfile.mkdtemp(prefix="corese-gpu-check-"))
    steps = make_plan(machine, trt_reason, scale, work, ort_cuda=ort_has_cuda())
    print(format_plan(steps, describe(machine), total), flush=True)
    for w in jetson_warnings(machine):
        print(f"warning: {w}", flush=True)
    start = time.monotonic()
    results = run_plan(steps, total, work, echo=lambda m: print(m, flush=True))
    elapsed = time.monotonic() - start
    if not a.no_record:
        date = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        path = record(build_runs(results, date, elapsed, trt_reason), machine, a.results_dir, a.markdown)
        print(f"recorded: {path}; {a.markdown} regenerated")
    print()
    print(format_summary(results, time.monotonic() - start))
    print(f"logs: {work}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
