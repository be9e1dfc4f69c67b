"""Batch-1 CPU latency of the full CoRes-SE: PyTorch eager FP32, ONNX Runtime FP32, ONNX Runtime INT8 (cpu flavour).

A program, not a test (STYLE.md): it builds the full ``coresse`` model with random weights at 224 px
(speed does not depend on the weights), exports it with corese-edge's own stages (ONNX FP32, then the
``cpu`` target's U8S8 Q/DQ calibrated on a few random images), and times the three backends
*interleaved* in one run, so the ratios compare like with like even on a busy machine.  It prints the
machine first.

    python benchmarks/export_latency.py [--iters 30] [--warmup 5] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def machine() -> list[str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = ""
    try:
        text = Path("/proc/cpuinfo").read_text()
        have = set(text.split("flags", 1)[1].split("\n", 1)[0].split())
        flags = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni") if f in have)
    except (OSError, IndexError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    from importlib import metadata

    versions = []
    for dist in ("torch", "timm", "onnx", "onnxruntime", "numpy"):
        try:
            versions.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{dist} -")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return [
        f"machine: {platform.platform()} ({platform.machine()}), Python {platform.python_version()}",
        f"cpu: {cpu}; {usable} usable cores (os.cpu_count {os.cpu_count()}); {flags}",
        f"versions: {', '.join(versions)}",
        f"load average before the run: {load}",
    ]


def build(workdir: Path, calib_images: int) -> tuple[object, Path, Path]:
    import torch

    from corese_edge.export import int8 as q
    from corese_edge.export.onnx_fp32 import export_onnx
    from corese_edge.model import CoResSE
    from corese_edge.model.checkpoint import Checkpoint
    from corese_edge.preprocessing import Preprocessing

    torch.manual_seed(0)
    model = CoResSE("coresse", 7).eval()
    ckpt = Checkpoint(None, "coresse", 7, "sample", [f"c{i}" for i in range(7)], Preprocessing(size=224),
                      model.state_dict(), kind="benchmark")
    ckpt.save(workdir / "coresse.pt")
    fp32 = export_onnx(ckpt, workdir / "model.onnx", model=model)
    pre = q.prepare_for_quantization(fp32, workdir / "pre.onnx")
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32) for _ in range(calib_images)]
    ranges = q.calibrate(pre, q.StreamingCalibrationReader(batches), workdir / "ranges.json", "minmax", "u8s8")
    int8 = q.quantize_int8(pre, workdir / "model.int8.onnx", ranges, "u8s8", metadata_from=fp32)
    return model, fp32, int8


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30, help="timed rounds (each runs every backend once)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads for both libraries (0 = their default)")
    parser.add_argument("--calib-images", type=int, default=8)
    args = parser.parse_args(argv)

    import onnxruntime as ort
    import torch

    print("\n".join(machine()), flush=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="corese-bench-") as tmp:
        t0 = time.perf_counter()
        model, fp32, int8 = build(Path(tmp), args.calib_images)
        print(f"built full coresse (random init, 224 px), ONNX FP32 and INT8 U8S8 in {time.perf_counter() - t0:.0f} s")
        options = ort.SessionOptions()
        if args.threads:
            options.intra_op_num_threads = args.threads
        sessions = {name: ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
                    for name, path in (("ort-fp32", fp32), ("ort-int8", int8))}
        x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
        xt = torch.from_numpy(x)

        def torch_run():
            with torch.inference_mode():
                model(xt)

        runs = {
            "pytorch-fp32": torch_run,
            "ort-fp32": lambda: sessions["ort-fp32"].run(None, {"input": x}),
            "ort-int8": lambda: sessions["ort-int8"].run(None, {"input": x}),
        }
        for _ in range(args.warmup):
            for fn in runs.values():
                fn()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(args.iters):
            order = list(runs) if i % 2 == 0 else list(reversed(runs))  # no backend always runs first
            for name in order:
                start = time.perf_counter()
                runs[name]()
                times[name].append(1000 * (time.perf_counter() - start))
    print(f"\nbatch 1, 224 px, {args.iters} interleaved rounds after {args.warmup} warm-up; "
          f"threads: torch {torch.get_num_threads()}, ORT {'default' if not args.threads else args.threads}")
    base = statistics.median(times["pytorch-fp32"])
    print(f"{'backend':<14} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'vs PyTorch':>11}")
    for name, ts in times.items():
        ts_sorted = sorted(ts)
        p10 = ts_sorted[int(0.1 * (len(ts) - 1))]
        p90 = ts_sorted[int(0.9 * (len(ts) - 1))]
        med = statistics.median(ts)
        print(f"{name:<14} {med:>10.1f} {p10:>8.1f} {p90:>8.1f} {base / med:>10.2f}x")
    print(f"ORT INT8 vs ORT FP32: {statistics.median(times['ort-fp32']) / statistics.median(times['ort-int8']):.2f}x faster")
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    print(f"load average after the run: {load}")


if __name__ == "__main__":
    sys.exit(main())
