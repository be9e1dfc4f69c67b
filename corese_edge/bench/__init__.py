"""Benchmarks: trtexec-style timing of any runner, statistics, machine facts, Jetson telemetry,
the export-folder comparison and the benchmark suite (torch-free unless the torch backend runs)."""
from corese_edge.bench.statistics import summarize
from corese_edge.bench.timing import BenchSettings, benchmark_runner, run_benchmarks

__all__ = ["BenchSettings", "benchmark_runner", "run_benchmarks", "summarize"]
