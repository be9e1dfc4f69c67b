"""``--target cpu-best``: time every CPU candidate here and name the fastest one that passes the drift gate.

Two parts, each testable alone: :func:`time_candidates` measures the p50 latency at batch 1 of each
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

log = logging.getLogger(__name__)

#: rounds of the interleaved timing; each candidate gets ``seconds / ROUNDS`` per round
ROUNDS = 3
#: name of the candidate every ratio is against
BASELINE = "onnx-fp32"
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
