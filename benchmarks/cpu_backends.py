"""coresse on this CPU: ONNX Runtime FP32 and INT8 (U8S8) against PyTorch eager FP32, batch 1 and 8.

All three go through the same harness (corese_edge.timing) in one run; the ratios are
PyTorch p50 / ONNX Runtime p50 (> 1 means ONNX Runtime is faster).  The model is randomly
initialised (speed does not depend on the weights); INT8 is ONNX Runtime's CPU flavour
(quantize_static, QDQ, U8 activations, S8 per-channel weights) calibrated on random inputs, so
its accuracy means nothing here; the export's drift report measures that.

    python benchmarks/cpu_backends.py [--duration-s 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from corese_edge.bench.machine import describe, machine_info
from corese_edge.bench.suite import output_paths, prepare_models, record_ratios
from corese_edge.runtime import OrtRunner, TorchRunner
from corese_edge.timing import BenchSettings, benchmark_runner

#: this checkout's benchmarks/ folder, where RESULTS.md is kept
RESULTS_DIR, RESULTS_MD = output_paths(Path(__file__).resolve().parent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=3.0)
    ap.add_argument("--min-iterations", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    machine = machine_info()
    print(f"machine: {describe(machine)}")
    settings = BenchSettings(batches=(1, 8), warmup_ms=500, duration_s=a.duration_s, min_iterations=a.min_iterations)
    p50: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = prepare_models("coresse", Path(tmp), 224, 8, ("fp32", "int8"))
        runners = {
            "torch-fp32": TorchRunner(paths["checkpoint"], threads=a.threads),
            "ort-fp32": OrtRunner(paths["fp32"], providers="cpu", threads=a.threads),
            "ort-int8": OrtRunner(paths["int8"], providers="cpu", threads=a.threads),
        }
        for name, runner in runners.items():
            with runner:
                for b in settings.batches:
                    r = benchmark_runner(runner, b, settings)
                    p50[(name, b)] = r["latency_ms"]["median"]
                    print(f"{name:11} batch {b}: p50 {r['latency_ms']['median']:8.1f} ms  p90 {r['latency_ms']['p90']:8.1f} ms  "
                          f"{r['throughput_ips']:6.1f} img/s  ({r['iterations']} queries, CV {100 * r['latency_ms']['cv']:.1f} %)")
    items = []
    for b in settings.batches:
        torch_ms = p50[("torch-fp32", b)]
        for name in ("ort-fp32", "ort-int8"):
            ratio = torch_ms / p50[(name, b)]
            items.append({"what": f"coresse batch {b}: PyTorch eager FP32 p50 / {name} p50 ({torch_ms:.1f} / {p50[(name, b)]:.1f} ms)",
                          "value": f"{ratio:.2f}x", "target": "> 1 (ONNX Runtime faster)", "verdict": "yes" if ratio > 1 else "no"})
        items.append({"what": f"coresse batch {b}: ort-fp32 p50 / ort-int8 p50", "value": f"{p50[('ort-fp32', b)] / p50[('ort-int8', b)]:.2f}x",
                      "target": "", "verdict": ""})
    for it in items:
        print(f"{it['what']}: {it['value']}")
    record_ratios("coresse CPU backends", items,
                  notes=f"threads {a.threads or 'library default'}; >= {a.duration_s} s and >= {a.min_iterations} queries per point; "
                        "random-init weights; INT8 = U8S8 Q/DQ with random calibration (speed only).", machine=machine,
                  results_dir=RESULTS_DIR, markdown=RESULTS_MD)


if __name__ == "__main__":
    main()
