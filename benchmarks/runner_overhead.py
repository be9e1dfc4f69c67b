"""Runner overhead at batch 1: OrtRunner.infer against a bare InferenceSession.run (target <= 5 %).

Both call the same session on the same input, interleaved query by query so machine noise hits
both alike; the ratio of medians is reported for coresse (the deployed model) and for coresse-lite
at 32 px, where a query is short enough to make the runner's fixed cost visible.

    python benchmarks/runner_overhead.py [--queries 200]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from corese_edge.bench.machine import describe, machine_info
from corese_edge.bench.suite import make_checkpoint, output_paths, record_ratios
from corese_edge.export.onnx_fp32 import export_onnx
from corese_edge.runtime import OrtRunner

#: this checkout's benchmarks/ folder, where RESULTS.md is kept
RESULTS_DIR, RESULTS_MD = output_paths(Path(__file__).resolve().parent)


def measure(onnx: Path, size: int, queries: int, threads: int | None) -> tuple[float, float]:
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, size, size)).astype(np.float32)
    with OrtRunner(onnx, providers="cpu", threads=threads) as runner:
        session, feed = runner.session, {"input": x}
        for _ in range(5):
            runner.infer(feed)
            session.run(None, feed)
        bare, ours = [], []
        for _ in range(queries):
            t0 = time.perf_counter()
            session.run(None, feed)
            t1 = time.perf_counter()
            runner.infer(feed)
            t2 = time.perf_counter()
            bare.append(t1 - t0)
            ours.append(t2 - t1)
    return statistics.median(bare) * 1e3, statistics.median(ours) * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=200, help="queries for the small model (coresse gets a quarter)")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    machine = machine_info()
    print(f"machine: {describe(machine)}")
    items = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant, size, queries in (("coresse", 224, max(10, a.queries // 4)), ("coresse-lite", 32, a.queries)):
            ckpt = make_checkpoint(variant, Path(tmp) / f"{variant}.pt", size)
            onnx = export_onnx(ckpt, Path(tmp) / f"{variant}.onnx")
            bare, ours = measure(onnx, size, queries, a.threads)
            ratio = ours / bare
            print(f"{variant} {size}px batch 1: session.run p50 {bare:.3f} ms, OrtRunner.infer p50 {ours:.3f} ms, "
                  f"overhead {100 * (ratio - 1):+.2f} % ({(ours - bare) * 1e3:+.1f} us)")
            items.append({
                "what": f"{variant} {size} px, batch 1: OrtRunner.infer / bare session.run (p50 {ours:.3f} / {bare:.3f} ms)",
                "value": f"{ratio:.4f} ({100 * (ratio - 1):+.2f} %)",
                "target": "<= 1.05",
                "verdict": "pass" if ratio <= 1.05 else "FAIL",
            })
    record_ratios("runner overhead", items, notes=f"{a.queries} interleaved queries (coresse: a quarter); same session, same input.", machine=machine,
                  results_dir=RESULTS_DIR, markdown=RESULTS_MD)


if __name__ == "__main__":
    main()
