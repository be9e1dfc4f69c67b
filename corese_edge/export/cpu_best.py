"""``--target cpu-best``: time every CPU candidate here and name the fastest one that passes the drift gate.

A stage of its own, :func:`stage_cpu_best`, which ``run_export`` composes for ``--target cpu-best``
only (the targets table says which target chooses the fastest).  Two parts, each testable alone:
:func:`time_candidates` measures the p50 latency at batch 1 of each
artifact through its runtime runner (ONNX Runtime or OpenVINO, their default configuration, which
is what an app gets), in interleaved rounds so that a load change on a shared machine hits every
candidate alike; :func:`choose_fastest` is the decision, a pure function of the measured latencies
and the drift report's gate.

Rules of the choice: a candidate that failed the drift gate is never chosen; among the others the
lowest p50 wins (a tie keeps the earlier candidate in the order given: the FP32 ONNX first, so the
simpler deployment wins a tie).  The FP32 ONNX is the reference every ratio is given against.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from corese_edge.errors import UserError

log = logging.getLogger(__name__)

#: rounds of the interleaved timing; each candidate gets ``seconds / ROUNDS`` per round
ROUNDS = 3
#: name of the candidate every ratio is against
BASELINE = "onnx-fp32"
#: the CPU candidates, in the order a tie is broken (simplest deployment first)
CPU_CANDIDATES = ("onnx-fp32", "onnx-int8", "onnx-fp16", "openvino-float", "openvino-int8")
#: runner backend -> what the one-line reason calls it
RUNTIME_NAMES = {"ort": "ONNX Runtime", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


@dataclass(frozen=True)
class Candidate:
    """One CPU artifact as the choice sees it.

    ``name``: drift-report name (``onnx-fp32``, ``onnx-int8``, ``openvino-float``, ...); ``backend``:
    the runner that ran it (``ort`` or ``openvino``); ``precision``: what really ran (from the drift
    report, e.g. ``bf16`` for the float IR on AMX); ``p50_ms``: median latency at batch 1 in
    milliseconds, None when it was not timed; ``drop_pp``: accuracy drop against PyTorch FP32 in
    percentage points; ``passed``: its drift gate.
    """

    name: str
    file: str
    backend: str
    precision: str
    p50_ms: float | None
    drop_pp: float | None
    passed: bool
    note: str | None = None

    @property
    def runtime(self) -> str:
        return RUNTIME_NAMES.get(self.backend, self.backend)


@dataclass(frozen=True)
class CpuBestChoice:
    """The decision: ``winner`` None when no timed candidate passed the gate."""

    winner: Candidate | None
    baseline: Candidate | None
    candidates: tuple[Candidate, ...]
    reason: str

    @property
    def speedup(self) -> float | None:
        """Baseline p50 / winner p50 (how many times faster than the FP32 ONNX on ONNX Runtime)."""
        if self.winner is None or self.baseline is None or not self.winner.p50_ms or self.baseline.p50_ms is None:
            return None
        return self.baseline.p50_ms / self.winner.p50_ms

    def to_dict(self) -> dict[str, Any]:
        """export.json's ``cpu_best`` section."""
        w = self.winner
        return {
            "winner": w.name if w else None,
            "file": w.file if w else None,
            "backend": w.backend if w else None,
            "precision": w.precision if w else None,
            "p50_ms": w.p50_ms if w else None,
            "drop_pp": w.drop_pp if w else None,
            "speedup_vs_onnx_fp32": self.speedup,
            "p50_ms_by_candidate": {c.name: c.p50_ms for c in self.candidates},
            "passed": [c.name for c in self.candidates if c.passed],
            "failed": [c.name for c in self.candidates if not c.passed],
            "candidates": [asdict(c) for c in self.candidates],
            "reason": self.reason,
        }


def choose_fastest(candidates: Sequence[Candidate], baseline: str = BASELINE) -> CpuBestChoice:
    """The fastest candidate (lowest ``p50_ms``) among those that passed the drift gate and were timed."""
    base = next((c for c in candidates if c.name == baseline), None)
    eligible = [c for c in candidates if c.passed and c.p50_ms is not None]
    if not eligible:
        failed = ", ".join(f"{c.name} ({c.drop_pp:.2f} pp)" if c.drop_pp is not None else c.name
                           for c in candidates if not c.passed)
        reason = ("no CPU candidate passed the drift gate" + (f": {failed}" if failed else "")
                  if any(not c.passed for c in candidates) else "no CPU candidate could be timed")
        return CpuBestChoice(None, base, tuple(candidates), reason)
    winner = min(eligible, key=lambda c: c.p50_ms)  # min() keeps the first of equal values
    drop = f"drop {winner.drop_pp:.2f} pp" if winner.drop_pp is not None else "drop not measured"
    head = (f"fastest passing CPU model: {winner.file} ({winner.runtime} {winner.precision}) "
            f"{winner.p50_ms:.1f} ms p50 at batch 1")
    if base is None or base.p50_ms is None:
        versus = ""
    elif winner is base:
        versus = f", the FP32 reference itself on {base.runtime}"
    else:
        versus = f", {base.p50_ms / winner.p50_ms:.1f}x {base.file} on {base.runtime}"
    losers = [c for c in candidates if not c.passed]
    skipped = f"; not chosen (failed the gate): {', '.join(c.name for c in losers)}" if losers else ""
    return CpuBestChoice(winner, base, tuple(candidates), f"{head}{versus}; {drop}{skipped}")


def time_candidates(
    artifacts: Mapping[str, os.PathLike | str],
    seconds: float,
    rounds: int = ROUNDS,
    open_runner: Callable[..., Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """p50 latency (ms) at batch 1 of each artifact, timed in ``rounds`` interleaved rounds.

    Each round times every artifact for ``seconds / rounds`` with :func:`corese_edge.timing.benchmark_runner`
    (one query at a time, random inputs); the order rotates between rounds.  Returns
    ``{name: {"p50_ms", "round_p50_ms", "iterations", "backend", "round_cv"}}``: ``p50_ms`` is the
    median of the rounds' medians, ``round_cv`` each round's coefficient of variation.
    ``open_runner`` defaults to :func:`runtime.artifacts.open_runner`.
    """
    from corese_edge.statistics import median
    from corese_edge.timing import BenchSettings, benchmark_runner

    if open_runner is None:
        from corese_edge.runtime.artifacts import open_runner
    names = list(artifacts)
    runners = {}
    try:
        for name in names:
            runners[name] = open_runner(Path(artifacts[name]))
            runners[name].activate()
        per_round: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        for r in range(rounds):
            settings = BenchSettings(batches=(1,), duration_s=seconds / rounds, warmup_ms=200.0 if r == 0 else 0.0,
                                     min_iterations=3, telemetry=False)
            order = names[r % len(names):] + names[:r % len(names)] if names else []
            for name in order:
                # short rounds on a shared CPU nearly always vary by more than the harness's 2.5 %
                # limit; each round's variation is returned (round_cv) instead of logged per round
                per_round[name].append(benchmark_runner(runners[name], 1, settings, warn=False))
    finally:
        for runner in runners.values():
            runner.close()
    out = {}
    for name, results in per_round.items():
        medians = [res["latency_ms"]["median"] for res in results]
        out[name] = {"p50_ms": median(sorted(medians)), "round_p50_ms": medians,
                     "iterations": sum(res["iterations"] for res in results), "backend": results[0]["backend"],
                     "round_cv": [res["latency_ms"]["cv"] for res in results]}
        log.info("%s: p50 %.2f ms at batch 1 (rounds: %s)", name, out[name]["p50_ms"],
                 ", ".join(f"{m:.2f}" for m in medians))
    return out


@dataclass(frozen=True)
class CpuBestResult:
    """The stage's result: the ``choice``, export.json's ``timing`` facts, the ``--max-drift`` it
    was judged by, and a note per candidate that failed the gate."""

    choice: CpuBestChoice
    timing: Mapping[str, Any]
    max_drift_pp: float
    notes: tuple[str, ...] = ()

    @property
    def winner(self) -> Candidate | None:
        return self.choice.winner

    @property
    def reason(self) -> str:
        return self.choice.reason

    @property
    def speedup(self) -> float | None:
        return self.choice.speedup

    @property
    def artifacts(self) -> dict[str, Path]:
        return {}

    @property
    def closing(self) -> tuple[str, ...]:
        """The last line the export prints."""
        return (self.choice.reason,)

    def section(self) -> dict[str, Any]:
        """export.json's ``cpu_best`` section."""
        return {**self.choice.to_dict(), "timing": dict(self.timing)}

    def check(self) -> None:
        """cpu-best fails only when no candidate passed the gate; the others are simply not chosen."""
        if self.choice.winner is None:
            from corese_edge.export.drift import DriftGateFailed

            raise DriftGateFailed(f"--target cpu-best: {self.choice.reason} (limit --max-drift {self.max_drift_pp:g} pp); "
                                  "the files are kept and drift_report.json marks them failed")


def stage_cpu_best(state, timer: Callable[..., dict[str, dict[str, Any]]] | None = None) -> CpuBestResult:
    """``--target cpu-best``: time every CPU candidate written here at batch 1 (``--bench-seconds``
    each, interleaved rounds; :func:`time_candidates`, or ``timer`` with its signature) and name the
    fastest one that passed the drift gate (:func:`choose_fastest`).  A candidate that failed the
    gate gets a note and is never chosen.  Run after ``stage_drift``; sets ``state.cpu_best``."""
    from corese_edge.machine import cpu_flags, cpu_name

    if not state.target.chooses_fastest:
        raise UserError(f"--target {state.cfg.target} does not choose among CPU candidates; that is --target cpu-best")
    if state.drift is None:
        raise RuntimeError("the drift report is missing: run stage_drift first")
    report, artifacts, cfg = state.drift.report, state.artifacts, state.cfg
    names = [n for n in CPU_CANDIDATES if n in artifacts and n in report.artifacts]
    timings = (timer or time_candidates)({n: artifacts[n] for n in names}, cfg.bench_seconds)
    candidates, notes = [], []
    for n in names:
        entry = report.artifacts[n]
        candidates.append(Candidate(
            name=n, file=artifacts[n].name, backend=entry["backend"], precision=entry["precision"],
            p50_ms=timings[n]["p50_ms"], drop_pp=entry["accuracy_drop_pp"], passed=entry["passed"]))
        if not entry["passed"]:
            notes.append(f"cpu-best: {n} dropped {entry['accuracy_drop_pp']:.2f} pp (over --max-drift "
                         f"{cfg.max_drift:g}) and is not a candidate")
    timing = {"batch": 1, "seconds_per_candidate": cfg.bench_seconds, "rounds": ROUNDS,
              "statistic": "median of the rounds' median latencies", "cpu": cpu_name(), "cpu_flags": cpu_flags(),
              "runners": "default configuration (ONNX Runtime: one thread per physical core; "
                         "OpenVINO: LATENCY hint)",
              "per_candidate": timings}
    state.cpu_best = CpuBestResult(choose_fastest(candidates), timing, cfg.max_drift, tuple(notes))
    return state.cpu_best
