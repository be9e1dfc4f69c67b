"""The benchmark harness: one runner, one batch size, trtexec's metric definitions.

Metrics (milliseconds unless named otherwise; each summarised by :func:`~corese_edge.bench.statistics.summarize`):

``latency_ms`` (always present)
    TensorRT: H2D + GPU compute + D2H of one query, from CUDA events (GPU compute alone with
    ``include_transfers=False``, like trtexec ``--noDataTransfers``).  ONNX Runtime and torch: the
    host wall time of one inference call.
``gpu_compute_ms``, ``h2d_ms``, ``d2h_ms``, ``enqueue_ms``
    TensorRT only (``h2d_ms`` / ``d2h_ms`` only with transfers): the GPU time of the kernels, of
    the input and output copies, and the host time to enqueue a query.  Absent for other backends.
``end_to_end_ms`` (with ``end_to_end=True``)
    preprocessing of ``batch`` uint8 frames (``frame_size`` square, resized to the model's input
    by :class:`~corese_edge.runtime.preprocess.Preprocessor`) plus the query.  Note that trtexec's
    "End-to-End Host Latency" is something else (H2D start to D2H end, including queueing).
``throughput_qps`` / ``throughput_ips``
    queries (images) divided by the total host wall time from the first timed query's start to the
    last one's completion.  Queries are issued one at a time on one stream, so this is the
    single-stream throughput (trtexec ``--infStreams=1`` without overlapping queries).

Warm-up runs for ``warmup_ms`` (at least one query), then timing runs for ``duration_s`` and at
least ``min_iterations`` queries (trtexec: 200 ms, 3 s, 10), or exactly ``iterations`` queries.
With ``cuda_graph``, a batch's CUDA graph is captured during its first warm-up query, and the
TensorRT runner keeps the capture outside that query's events, so no timed value includes it;
``cuda_graph_captured`` in a result says whether the batch really replayed a graph (a failed
capture falls back to plain enqueue with a warning).
A coefficient of variation above 2.5 % (of GPU compute time on TensorRT, of latency elsewhere) adds
a warning to the result.  On a Jetson, tegrastats power over the timed window gives mW and mJ per
image.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from corese_edge.bench.statistics import CV_WARN, summarize
from corese_edge.errors import UserError
from corese_edge.runtime.base import Runner

log = logging.getLogger(__name__)

SCHEMA = "corese-edge/bench/1"


@dataclass(frozen=True)
class BenchSettings:
    """How to time; every flag is written into the report (TRT 10 and 11 flip trtexec's defaults)."""

    batches: tuple[int, ...] = (1,)
    warmup_ms: float = 200.0
    duration_s: float = 3.0
    iterations: int | None = None
    min_iterations: int = 10
    cuda_graph: bool = False
    include_transfers: bool = True
    end_to_end: bool = False
    frame_size: int = 100
    telemetry: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.batches or any(int(b) < 1 for b in self.batches):
            raise UserError(f"batch sizes must be >= 1, got {self.batches}")
        if self.iterations is not None and self.iterations < 1:
            raise UserError(f"--iterations must be >= 1, got {self.iterations}")
        if self.duration_s < 0 or self.warmup_ms < 0:
            raise UserError("--duration-s and --warmup-ms must not be negative")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["batches"] = list(self.batches)
        d["queries_in_flight"] = 1
        d["timer"] = "time.perf_counter; CUDA events for TensorRT device times"
        return d


def _input_arrays(runner: Runner, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feed = {}
    for spec in runner.inputs:
        shape = tuple(batch if (d is None or i == 0) else d for i, d in enumerate(spec.shape))
        if np.issubdtype(spec.dtype, np.integer):
            feed[spec.name] = rng.integers(0, 256, size=shape).astype(spec.dtype)
        else:
            feed[spec.name] = rng.uniform(-1.0, 1.0, size=shape).astype(spec.dtype)
    return feed


def benchmark_runner(runner: Runner, batch: int, settings: BenchSettings, sampler: Any | None = None) -> dict[str, Any]:
    """Time ``runner`` (activated) at ``batch``; returns one result of the bench JSON."""
    runner.activate()
    if runner.max_batch is not None and batch > runner.max_batch:
        raise UserError(f"batch {batch} exceeds {runner.path}'s maximum batch {runner.max_batch} (its optimization profile)")
    rng = np.random.default_rng(settings.seed)
    feed = _input_arrays(runner, batch, rng)
    is_trt = runner.backend == "trt"
    preprocessor = frames = None
    if settings.end_to_end:
        if runner.metadata is None or len(runner.inputs) != 1:
            raise UserError(f"--end-to-end needs a corese-edge artifact with one image input: {runner.path}")
        from corese_edge.runtime.preprocess import Preprocessor

        preprocessor = Preprocessor(runner.metadata.preprocessing, np.dtype(runner.inputs[0].dtype))
        s = settings.frame_size
        frames = list(rng.integers(0, 256, size=(batch, s, s, 3), dtype=np.uint8))
    input_name = runner.inputs[0].name

    if is_trt:
        for name, value in feed.items():
            runner.host_input(name)[:batch] = value  # type: ignore[attr-defined]

    def query() -> dict[str, float]:
        t0 = time.perf_counter()
        times: dict[str, float] = {}
        if preprocessor is not None:
            x = preprocessor.from_frames(frames)
            if is_trt:
                runner.host_input(input_name)[:batch] = x  # type: ignore[attr-defined]
            else:
                feed[input_name] = x
        if is_trt:
            times.update(runner.execute(batch, transfers=settings.include_transfers))  # type: ignore[attr-defined]
        else:
            runner.infer(feed)
            times["latency_ms"] = runner.last_inference_time * 1e3
        times["_done"] = time.perf_counter()
        if preprocessor is not None:
            times["end_to_end_ms"] = (times["_done"] - t0) * 1e3
        return times

    if is_trt:
        runner.cuda_graph = settings.cuda_graph  # type: ignore[attr-defined]
    # warm-up: at least one query (a CUDA graph for this batch is captured in the first one)
    start = time.perf_counter()
    warm = 0
    while True:
        query()
        warm += 1
        if (time.perf_counter() - start) * 1e3 >= settings.warmup_ms:
            break

    samples: list[dict[str, float]] = []
    if sampler is not None:
        sampler.samples.clear()
    t_start = time.perf_counter()
    while True:
        samples.append(query())
        n = len(samples)
        if settings.iterations is not None:
            if n >= settings.iterations:
                break
        elif samples[-1]["_done"] - t_start >= settings.duration_s and n >= settings.min_iterations:
            break
    t_end = samples[-1]["_done"]
    wall = t_end - t_start

    result: dict[str, Any] = {
        "artifact": runner.path,
        "backend": runner.backend,
        "precision": runner.precision,
        "batch": batch,
        "iterations": len(samples),
        "warmup_queries": warm,
        "walltime_s": round(wall, 4),
        "throughput_qps": round(len(samples) / wall, 3),
        "throughput_ips": round(len(samples) * batch / wall, 3),
    }
    for key in ("latency_ms", "gpu_compute_ms", "h2d_ms", "d2h_ms", "enqueue_ms", "end_to_end_ms"):
        values = [s[key] for s in samples if key in s]
        if values:  # a metric that does not apply stays absent, never zero
            result[key] = summarize(values)
    if is_trt:
        result["cuda_graph"] = settings.cuda_graph
        if settings.cuda_graph:
            result["cuda_graph_captured"] = bool(runner.has_graph(batch))  # type: ignore[attr-defined]
        result["include_transfers"] = settings.include_transfers
    if hasattr(runner, "providers") and getattr(runner, "providers"):
        result["providers"] = list(runner.providers)  # type: ignore[attr-defined]
    if getattr(runner, "execution", None):  # OpenVINO: device, precision hint, streams, threads as compiled
        result["execution"] = dict(runner.execution)  # type: ignore[attr-defined]
    basis = "gpu_compute_ms" if "gpu_compute_ms" in result else "latency_ms"
    cv = result[basis]["cv"]
    warnings = []
    if cv > CV_WARN:
        warnings.append(
            f"{basis} varies: coefficient of variation {cv * 100:.1f} % > {CV_WARN * 100:.1f} % "
            "(other load, clocks not locked, or too short a run)"
        )
    if sampler is not None:
        power = sampler.summary(t_start, t_end, len(samples) * batch)
        if power is not None:
            result["power"] = power
    result["warnings"] = warnings
    for w in warnings:
        log.warning("%s batch %d: %s", runner.path, batch, w)
    return result


def run_benchmarks(runner: Runner, settings: BenchSettings, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every batch of ``settings`` on ``runner``: the whole ``corese-edge/bench/1`` document."""
    from corese_edge.bench.machine import machine_info

    machine = machine if machine is not None else machine_info()
    sampler = None
    if settings.telemetry and machine.get("jetson"):
        from corese_edge.bench.jetson import TegrastatsSampler

        sampler = TegrastatsSampler()
        if not sampler.start():
            sampler = None
    try:
        runner.activate()
        results = [benchmark_runner(runner, int(b), settings, sampler) for b in settings.batches]
    finally:
        if sampler is not None:
            sampler.stop()
    device = dict(machine)
    if runner.backend == "trt":
        device["tensorrt_runtime"] = {
            "module": getattr(getattr(runner, "trt", None), "__name__", None),
            "version": getattr(runner, "trt_version", None),
            "cuda_layer": getattr(getattr(runner, "cuda", None), "name", None),
        }
    settings_dict = settings.to_dict()
    if hasattr(runner, "threads"):
        settings_dict["threads"] = getattr(runner, "threads")
    return {"schema": SCHEMA, "device": device, "settings": settings_dict, "results": results}


def format_results(doc: dict[str, Any]) -> str:
    """A plain table of a bench document (one row per result)."""
    head = f"{'backend':8} {'prec':5} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'qps':>9} {'img/s':>9}"
    extra = [k for k in ("gpu_compute_ms", "h2d_ms", "d2h_ms", "enqueue_ms", "end_to_end_ms") if any(k in r for r in doc["results"])]
    head += "".join(f" {k[:-3] + ' p50':>16}" for k in extra)
    lines = [head]
    for r in doc["results"]:
        lat = r["latency_ms"]
        row = (f"{r['backend']:8} {r['precision']:5} {r['batch']:>5} {lat['median']:>9.3f} {lat['p90']:>9.3f} "
               f"{lat['p99']:>9.3f} {r['throughput_qps']:>9.2f} {r['throughput_ips']:>9.2f}")
        row += "".join(f" {r[k]['median']:>16.3f}" if k in r else f" {'-':>16}" for k in extra)
        lines.append(row)
        if "power" in r:
            p = r["power"]
            lines.append(f"    power {p['power_mw']:.0f} mW ({p['total_source']}), {p['energy_mj_per_image']} mJ/image")
        for w in r.get("warnings", []):
            lines.append(f"    warning: {w}")
    return "\n".join(lines)


def parse_batches(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``."""
    if not isinstance(text, str):
        return tuple(int(b) for b in text)
    try:
        values = tuple(int(p) for p in text.replace(" ", "").split(",") if p)
    except ValueError:
        raise UserError(f"--batch takes comma-separated integers such as 1,8,32; got {text!r}") from None
    if not values:
        raise UserError("--batch needs at least one batch size")
    return values
