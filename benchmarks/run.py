"""The benchmark suite: backends x precisions x batch sizes for coresse and coresse-lite.

    python benchmarks/run.py                       # CPU defaults: batches 1,8, 1 s per point
    python benchmarks/run.py --batches 1,8,32 --duration-s 3 --threads 2
    python benchmarks/run.py --out /tmp/bench      # somewhere else than this checkout

Appends the results, with the machine, to OUT/results/<machine>.json and regenerates OUT/RESULTS.md
with its plots; OUT defaults to this script's folder (the checkout's benchmarks/).  The logic is
corese_edge.bench.suite (also reachable as ``corese-edge bench --suite --out OUT``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from corese_edge.bench.suite import SuiteConfig, output_paths, run_suite
from corese_edge.bench.timing import parse_batches


def main() -> None:
    d = SuiteConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(d.models))
    ap.add_argument("--backends", default=",".join(d.backends), help="ort, openvino, torch, trt")
    ap.add_argument("--precisions", default=",".join(d.precisions))
    ap.add_argument("--batches", default=",".join(map(str, d.batches)))
    ap.add_argument("--warmup-ms", type=float, default=d.warmup_ms)
    ap.add_argument("--duration-s", type=float, default=d.duration_s)
    ap.add_argument("--min-iterations", type=int, default=d.min_iterations)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--img-size", type=int, default=d.img_size)
    ap.add_argument("--notes", default="", help="a sentence recorded with the run (e.g. why threads were pinned)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                    help="folder for results/<machine>.json and RESULTS.md (default: this script's folder)")
    a = ap.parse_args()
    results_dir, markdown = output_paths(a.out)
    split = lambda s: tuple(p for p in s.split(",") if p)  # noqa: E731
    run_suite(SuiteConfig(
        models=split(a.models), backends=split(a.backends), precisions=split(a.precisions),
        batches=parse_batches(a.batches), warmup_ms=a.warmup_ms, duration_s=a.duration_s,
        min_iterations=a.min_iterations, threads=a.threads, img_size=a.img_size, notes=a.notes,
        results_dir=str(results_dir), markdown=str(markdown),
    ))


if __name__ == "__main__":
    main()
