"""``corese-edge bench`` around the timing harness: every batch of one runner as one
``corese-edge/bench/1`` document (machine, settings, results), its plain table, and the
``--batch`` parser.

The timing itself, its metric definitions and :class:`~corese_edge.timing.BenchSettings` live in
:mod:`corese_edge.timing` (the base layer, which the export's cpu-best stage uses too); this module
adds what only a bench run has: the machine description and, on a Jetson, tegrastats telemetry.
"""
from __future__ import annotations

from typing import Any, Sequence

from corese_edge.errors import UserError
from corese_edge.runtime.base import Runner
from corese_edge.timing import METRICS, BenchSettings, benchmark_runner

SCHEMA = "corese-edge/bench/1"


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
    facts = runner.execution_facts()
    device = {**machine, **facts.get("device", {})}
    settings_dict = {**settings.to_dict(), **facts.get("settings", {})}
    return {"schema": SCHEMA, "device": device, "settings": settings_dict, "results": results}


def format_results(doc: dict[str, Any]) -> str:
    """A plain table of a bench document (one row per result)."""
    head = f"{'backend':8} {'prec':5} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'qps':>9} {'img/s':>9}"
    measured = {k for r in doc["results"] for k in r if k.endswith("_ms") and k != "latency_ms"}
    extra = [k for k in METRICS[1:] if k in measured] + sorted(measured - set(METRICS))
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
