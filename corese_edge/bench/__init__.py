"""Benchmarks: trtexec-style timing of any runner (the harness itself is :mod:`corese_edge.timing`),
machine facts, Jetson telemetry, the export-folder comparison and the benchmark suite (torch-free
unless the torch backend runs)."""
from corese_edge.bench.timing import run_benchmarks
from corese_edge.statistics import summarize
from corese_edge.timing import BenchSettings, benchmark_runner

__all__ = ["BenchSettings", "benchmark_runner", "run_benchmarks", "summarize"]
