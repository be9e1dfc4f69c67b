"""coresse on a GPU: the ONNX Runtime path and PyTorch CUDA FP16, batch 1, 8 and 64, one harness.

For a lent GPU machine without TensorRT: ONNX Runtime uses the CUDA execution provider when
onnxruntime-gpu is installed and its CPU provider otherwise (the result says which); PyTorch runs
the checkpoint in FP16 on CUDA.  The run is appended to benchmarks/results/<machine>.json as a
"gpu" run and shows up in benchmarks/RESULTS.md with the card's name.

    python benchmarks/gpu_backends.py [--batches 1,8,64] [--duration-s 2]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from corese_edge.bench.machine import describe, machine_info
from corese_edge.bench.suite import output_paths, prepare_models, record_gpu_run
from corese_edge.bench.timing import parse_batches
from corese_edge.errors import UserError
from corese_edge.runtime import OrtRunner, TorchRunner
from corese_edge.timing import BenchSettings, benchmark_runner

#: this checkout's benchmarks/ folder, where RESULTS.md is kept
RESULTS_DIR, RESULTS_MD = output_paths(Path(__file__).resolve().parent)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--duration-s", type=float, default=2.0)
    ap.add_argument("--ort-max-batch", type=int, default=64, help="skip larger ONNX Runtime batches (slow on a CPU provider)")
    a = ap.parse_args()
    machine = machine_info()
    print(f"machine: {describe(machine)}")
    if not machine.get("gpus"):
        raise SystemExit("no GPU here: this benchmark is for a GPU machine")
    settings = BenchSettings(batches=parse_batches(a.batches), warmup_ms=500, duration_s=a.duration_s, min_iterations=10)
    results, not_run = [], []
    with tempfile.TemporaryDirectory() as tmp:
        paths = prepare_models("coresse", Path(tmp), 224, 8, ("fp32",))
        runners = [
            TorchRunner(paths["checkpoint"], device="cuda", half=True),
            OrtRunner(paths["fp32"], providers="auto"),
        ]
        for runner in runners:
            try:
                with runner:
                    for b in settings.batches:
                        if runner.backend == "ort" and b > a.ort_max_batch:
                            continue
                        r = benchmark_runner(runner, b, settings)
                        r["model"] = "coresse"
                        r["artifact"] = Path(r["artifact"]).name
                        if runner.backend == "ort":
                            r["precision"] = "fp32 (" + ",".join(p.replace("ExecutionProvider", "") for p in runner.providers) + ")"
                        results.append(r)
                        print(f"{runner.backend:5} {r['precision']:16} batch {b:3}: p50 {r['latency_ms']['median']:8.2f} ms "
                              f"{r['throughput_ips']:8.1f} img/s")
            except UserError as exc:
                not_run.append({"model": "coresse", "backend": runner.backend, "precision": runner.precision, "reason": str(exc)})
                print(f"{runner.backend}: not run ({exc})")
    not_run.append({"model": "coresse", "backend": "trt", "precision": "fp16/int8",
                    "reason": "TensorRT is not installed on the lent GPU machine"})
    record_gpu_run(results, {**settings.to_dict(), "weights": "random init (speed only)", "img_size": 224}, not_run,
                   results_dir=RESULTS_DIR, markdown=RESULTS_MD)


if __name__ == "__main__":
    main()
