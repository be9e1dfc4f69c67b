"""The timing harness: one runner, one batch size, trtexec's metric definitions.

It sits in the base layer so that ``corese-edge bench`` and the export's cpu-best stage time
artifacts the same way; it asks the runner for its timing breakdown (the Runner timing hook of
:mod:`corese_edge.runtime.base`: ``prepare_timing``, ``timed_query``, ``execution_facts``,
``frame_preprocessor``) and never looks at which backend answers.

Metrics (milliseconds unless named otherwise; each summarised by :func:`~corese_edge.statistics.summarize`):

``latency_ms`` (always present)
    TensorRT: H2D + GPU compute + D2H of one query, from CUDA events (GPU compute alone with
    ``include_transfers=False``, like trtexec ``--noDataTransfers``).  ONNX Runtime, OpenVINO and
    torch: the host wall time of one inference call.
``gpu_compute_ms``, ``h2d_ms``, ``d2h_ms``, ``enqueue_ms``, or any other ``*_ms`` a runner returns
    only where the runner measures it (TensorRT: all four, ``h2d_ms`` / ``d2h_ms`` only with
    transfers): the GPU time of the kernels, of the input and output copies, and the host time to
    enqueue a query.  A metric a runner does not measure is absent, never zero.
``end_to_end_ms`` (with ``end_to_end=True``)
    preprocessing of ``batch`` uint8 frames (``frame_size`` square, resized to the model's input
    by the runner's :meth:`~corese_edge.runtime.base.Runner.frame_preprocessor`) plus the query.
    Note that trtexec's "End-to-End Host Latency" is something else (H2D start to D2H end,
    including queueing).
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
A coefficient of variation above 2.5 % (of GPU compute time where the runner measures it, of
latency elsewhere) adds a warning to the result, logged unless the caller asks for quiet.  With a
power sampler (tegrastats on a Jetson), the power over the timed window gives mW and mJ per image.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from corese_edge.errors import UserError
from corese_edge.statistics import CV_WARN, summarize

log = logging.getLogger(__name__)

#: the metrics of the bench JSON in the order a result lists them; other ``*_ms`` keys a runner
#: returns follow, sorted
METRICS = ("latency_ms", "gpu_compute_ms", "h2d_ms", "d2h_ms", "enqueue_ms", "end_to_end_ms")


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


class TimedRunner(Protocol):
    """What the harness needs of a runner: :class:`corese_edge.runtime.base.Runner` is one (the
    base layer names the shape instead of importing the runtime)."""

    path: str
    backend: str
    precision: str
    max_batch: int | None
    inputs: Sequence[Any]  # TensorSpec: .name, .dtype, .shape (None for the batch)

    def activate(self) -> Any: ...

    def prepare_timing(self, feed: Mapping[str, np.ndarray], *, cuda_graph: bool = False,
                       include_transfers: bool = True) -> None: ...

    def timed_query(self, inputs: Mapping[str, np.ndarray] | None = None) -> dict[str, float]: ...

    def execution_facts(self, batch: int | None = None) -> dict[str, dict[str, Any]]: ...

    def frame_preprocessor(self) -> Callable[[Sequence[np.ndarray]], np.ndarray] | None: ...


class PowerSampler(Protocol):
    """A power sampler running beside the timing (:class:`corese_edge.bench.jetson.TegrastatsSampler`)."""

    samples: list[Any]

    def summary(self, t_start: float, t_end: float, images: int) -> dict[str, Any] | None: ...


def _input_arrays(runner: TimedRunner, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feed = {}
    for spec in runner.inputs:
        shape = tuple(batch if (d is None or i == 0) else d for i, d in enumerate(spec.shape))
        if np.issubdtype(spec.dtype, np.integer):
            feed[spec.name] = rng.integers(0, 256, size=shape).astype(spec.dtype)
        else:
            feed[spec.name] = rng.uniform(-1.0, 1.0, size=shape).astype(spec.dtype)
    return feed


def benchmark_runner(runner: TimedRunner, batch: int, settings: BenchSettings, sampler: PowerSampler | None = None,
                     *, warn: bool = True) -> dict[str, Any]:
    """Time ``runner`` (activated here if it is not) at ``batch``; returns one result of the bench JSON.

    ``warn=False`` keeps the variation warnings in the result's ``warnings`` without logging them
    (a caller that times many short rounds and reports the variation itself).
    """
    runner.activate()
    if runner.max_batch is not None and batch > runner.max_batch:
        raise UserError(f"batch {batch} exceeds {runner.path}'s maximum batch {runner.max_batch} (its optimization profile)")
    rng = np.random.default_rng(settings.seed)
    feed = _input_arrays(runner, batch, rng)
    preprocess = frames = None
    if settings.end_to_end:
        preprocess = runner.frame_preprocessor()
        if preprocess is None:
            raise UserError(f"--end-to-end needs a corese-edge artifact with one image input: {runner.path}")
        s = settings.frame_size
        frames = list(rng.integers(0, 256, size=(batch, s, s, 3), dtype=np.uint8))
    input_name = runner.inputs[0].name
    runner.prepare_timing(feed, cuda_graph=settings.cuda_graph, include_transfers=settings.include_transfers)

    def query() -> tuple[dict[str, float], float]:
        """One query's times and the perf_counter() at its completion."""
        t0 = time.perf_counter()
        fresh = {input_name: preprocess(frames)} if preprocess is not None else None
        times = dict(runner.timed_query(fresh))
        done = time.perf_counter()
        if preprocess is not None:
            times["end_to_end_ms"] = (done - t0) * 1e3
        return times, done

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
    t_start = t_end = time.perf_counter()
    while True:
        times, t_end = query()
        samples.append(times)
        n = len(samples)
        if settings.iterations is not None:
            if n >= settings.iterations:
                break
        elif t_end - t_start >= settings.duration_s and n >= settings.min_iterations:
            break
    wall = t_end - t_start

    result: dict[str, Any] = {
        "artifact": runner.path,
        "backend": runner.backend,
        "precision": runner.precision,
        "batch": batch,
        "iterations": len(samples),
        "warmup_queries": warm,
        "walltime_s": round(wall, 6),  # to the microsecond: short runs last milliseconds
        "throughput_qps": round(len(samples) / wall, 3),
        "throughput_ips": round(len(samples) * batch / wall, 3),
    }
    measured = {key for s in samples for key in s}
    for key in list(METRICS) + sorted(measured - set(METRICS)):
        values = [s[key] for s in samples if key in s]
        if values:  # a metric that does not apply stays absent, never zero
            result[key] = summarize(values)
    result.update(runner.execution_facts(batch).get("result", {}))
    # device time is the steadier basis where a runner measures it (trtexec warns on GPU compute)
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
    if warn:
        for w in warnings:
            log.warning("%s batch %d: %s", runner.path, batch, w)
    return result
