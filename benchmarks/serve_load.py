"""Throughput under load: ``corese-edge serve`` (a real Triton, dynamic batching) against the same
artifact's runner in-process, in one run.

For each artifact (default: the demo's ``coresse-lite`` at 48 px and the full ``coresse`` at 224 px,
INT8 as ``--target cpu`` makes it, random weights: speed only):

* in-process: ``runner.infer`` in a closed loop at batch 1 and at every batch up to ``--max-batch``
  (the best one is what dynamic batching can at best recover);
* served: ``corese-edge serve ARTIFACT --no-faces`` on loopback, loaded by ``tritonclient`` (gRPC; ``--protocol http``)
  with 1, 4 and 16 concurrent clients, each sending one frame per request in a closed loop;
  throughput, p50 / p99 latency, failed requests, and the batch sizes Triton formed (from its
  statistics, before and after each level).

Targets (issue 14, on 2 cores with coresse-lite INT8): at concurrency 16 the served throughput is
at least 1.3x the in-process batch-1 throughput and at least 0.7x the in-process best batch.

    python benchmarks/serve_load.py [--artifact model.int8.onnx ...] [--seconds 8] [--quick]

Needs the dev (or train + export + serve) extras.  Every load is bounded in time and count.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

from corese_edge.bench.machine import describe, machine_info
from corese_edge.bench.suite import output_paths, prepare_models, record_ratios
from corese_edge.runtime import open_runner
from corese_edge.serve.server import free_ports

RESULTS_DIR, RESULTS_MD = output_paths(Path(__file__).resolve().parent)
CONCURRENCY = (1, 4, 16)
READY = "Ctrl-C or SIGTERM stops it"


def in_process(artifact: Path, batches: list[int], seconds: float) -> dict[int, float]:
    """Images/s of ``runner.infer`` at each batch size (closed loop, ``seconds`` each)."""
    out = {}
    with open_runner(artifact) as runner:
        runner.activate()
        spec = runner.inputs[0]
        size = runner.metadata.preprocessing.size
        rng = np.random.default_rng(0)
        for b in batches:
            x = (rng.integers(0, 255, (b, size, size, 3), dtype=np.uint8) if np.dtype(spec.dtype) == np.uint8
                 else rng.uniform(-1, 1, (b, 3, size, size)).astype(np.float32))
            feed = {spec.name: x}
            for _ in range(3):
                runner.infer(feed)
            n, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                runner.infer(feed)
                n += 1
            out[b] = n * b / (time.perf_counter() - t0)
    return out


def start_server(artifact: Path, max_batch: int, queue_delay_us: int, layout: list[str]) -> tuple[subprocess.Popen, int, int]:
    http, grpc, metrics = free_ports(3)
    proc = subprocess.Popen([sys.executable, "-m", "corese_edge", "serve", str(artifact), "--no-faces",
                             "--max-batch", str(max_batch), "--max-queue-delay-us", str(queue_delay_us), *layout,
                             "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 240
    lines = []
    for line in proc.stdout:  # blocks until the banner's last line, or the end
        lines.append(line)
        if "instance" in line:
            print("served as:", line.strip())
        if READY in line:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining
            return proc, http, grpc
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit("corese-edge serve did not start:\n" + "".join(lines))


def batch_counts(client, model: str = "coresse") -> Counter:
    stats = client.get_inference_statistics(model)["model_stats"][0]
    return Counter({int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats["batch_stats"]})


def load(port: int, grpc_port: int, frame: np.ndarray, concurrency: int, seconds: float, max_requests: int,
         protocol: str = "http") -> dict:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    url = f"127.0.0.1:{port}"
    latencies: list[float] = []
    failures = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    budget = [max_requests]

    def worker() -> None:
        if protocol == "grpc":
            client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            inp = grpcclient.InferInput("frames", list(frame.shape), "UINT8")
            inp.set_data_from_numpy(frame)
            out = [grpcclient.InferRequestedOutput("probabilities")]
        else:
            client = httpclient.InferenceServerClient(url, network_timeout=60)
            inp = httpclient.InferInput("frames", list(frame.shape), "UINT8")
            inp.set_data_from_numpy(frame, binary_data=True)
            out = [httpclient.InferRequestedOutput("probabilities", binary_data=True)]
        mine = []
        try:
            while time.perf_counter() < stop_at:
                with lock:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
                t0 = time.perf_counter()
                try:
                    client.infer("coresse", [inp], outputs=out)
                    mine.append(time.perf_counter() - t0)
                except InferenceServerException:
                    with lock:
                        failures[0] += 1
        finally:
            client.close()
            with lock:
                latencies.extend(mine)

    stats_client = httpclient.InferenceServerClient(url)
    before = batch_counts(stats_client)
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    wall = time.perf_counter() - t0
    client_cpu = (time.process_time() - cpu0) / wall  # cores the load generator itself used
    formed = batch_counts(stats_client) - before
    stats_client.close()
    lat = sorted(latencies)
    return {
        "concurrency": concurrency, "requests": len(lat), "failed": failures[0], "img_s": len(lat) / wall,
        "p50_ms": statistics.median(lat) * 1e3 if lat else float("nan"),
        "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1e3 if lat else float("nan"),
        "batches": dict(sorted(formed.items())), "client_cores": client_cpu,
    }


def mean_batch(batches: dict[int, int]) -> float:
    n = sum(batches.values())
    return sum(b * c for b, c in batches.items()) / n if n else float("nan")


def run_one(name: str, artifact: Path, a: argparse.Namespace) -> list[dict]:
    batches = [b for b in (1, 2, 4, 8, 16, 32) if b <= a.max_batch]
    print(f"\n== {name}: {artifact}")
    layout = ([f"--instances={a.instances}"] if a.instances else []) + ([f"--threads={a.threads}"] if a.threads else [])
    proc, port, grpc_port = start_server(artifact, a.max_batch, a.queue_delay_us, layout)
    try:
        from corese_edge.metadata import ArtifactMetadata  # noqa: F401  (the runner reads it)

        with open_runner(artifact) as r:
            size = r.metadata.preprocessing.size
        frame = np.random.default_rng(1).integers(0, 255, (1, size, size, 3), dtype=np.uint8)
        load(port, grpc_port, frame, 4, min(2.0, a.seconds), 200, a.protocol)  # warm the server and connections
        local = in_process(artifact, batches, a.seconds)  # the server is idle meanwhile
        served = [load(port, grpc_port, frame, c, a.seconds, a.max_requests, a.protocol) for c in CONCURRENCY]
        local_again = in_process(artifact, [1, max(local, key=local.get)], a.seconds)  # drift check
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=90)
    best = max(local, key=local.get)
    b1 = (local[1] + local_again[1]) / 2
    top = (local[best] + local_again[best]) / 2
    print(f"in-process img/s by batch: " + ", ".join(f"b{b} {v:.0f}" for b, v in local.items())
          + f"  (again: b1 {local_again[1]:.0f}, b{best} {local_again[best]:.0f})")
    print(f"{'clients':>7} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'failed':>6} {'client cores':>12}  batch sizes formed (count)")
    for s in served:
        print(f"{s['concurrency']:>7} {s['img_s']:>8.1f} {s['p50_ms']:>8.2f} {s['p99_ms']:>8.2f} {s['failed']:>6} {s['client_cores']:>12.2f}  "
              + ", ".join(f"{b}x{c}" for b, c in s["batches"].items()) + f"  (mean {mean_batch(s['batches']):.1f})")
    at16 = served[-1]
    r1, rbest = at16["img_s"] / b1, at16["img_s"] / top
    print(f"served@16 / in-process b1 = {r1:.2f} (target >= 1.3);  served@16 / in-process best (b{best}) = {rbest:.2f} "
          f"(target >= 0.7);  serve exited {code}")
    tag = f"{name}: "
    return [
        {"what": f"{tag}served at 16 clients / in-process batch 1", "value": round(r1, 3), "target": ">= 1.3",
         "verdict": "pass" if r1 >= 1.3 else "fail"},
        {"what": f"{tag}served at 16 clients / in-process best batch ({best})", "value": round(rbest, 3), "target": ">= 0.7",
         "verdict": "pass" if rbest >= 0.7 else "fail"},
        {"what": f"{tag}mean batch formed at 16 clients", "value": round(mean_batch(at16["batches"]), 2), "target": "",
         "verdict": "info"},
        {"what": f"{tag}cores used by the load generator at 16 clients (of {os.cpu_count()})",
         "value": round(at16["client_cores"], 2), "target": "", "verdict": "info"},
        {"what": f"{tag}failed requests (all levels)", "value": sum(s["failed"] for s in served), "target": "0",
         "verdict": "pass" if not any(s["failed"] for s in served) else "fail"},
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--artifact", action="append", type=Path, help="an exported artifact (repeatable); default: build both")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per load level and per in-process batch size")
    ap.add_argument("--max-requests", type=int, default=20000, help="cap on requests per load level")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--queue-delay-us", type=int, default=500)
    ap.add_argument("--instances", type=int, default=None, help="serve --instances (default: serve's own)")
    ap.add_argument("--threads", type=int, default=None, help="serve --threads (default: serve's own)")
    ap.add_argument("--protocol", choices=["http", "grpc"], default="grpc", help="how the load clients talk to Triton")
    ap.add_argument("--quick", action="store_true", help="coresse-lite only, 3 s per level")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    a = ap.parse_args()
    if a.quick:
        a.seconds = min(a.seconds, 3.0)
    machine = machine_info()
    print(f"machine: {describe(machine)}")
    items = []
    with tempfile.TemporaryDirectory() as tmp:
        if a.artifact:
            targets = [(p.name, p) for p in a.artifact]
        else:
            targets = [("coresse-lite 48px INT8", prepare_models("coresse-lite", Path(tmp) / "lite", 48, 16, ["int8"])["int8"])]
            if not a.quick:
                targets.append(("coresse 224px INT8", prepare_models("coresse", Path(tmp) / "full", 224, 8, ["int8"])["int8"]))
        for name, path in targets:
            items += run_one(name, path, a)
    if not a.no_record:
        layout = f"{a.instances or 'default'} instances, {a.threads or 'default'} threads"
        notes = (f"corese-edge serve (bundled Triton, Python backend, {layout}, max batch {a.max_batch}, "
                 f"queue delay {a.queue_delay_us} us) under tritonclient {a.protocol.upper()} load at 1/4/16 clients, one frame per "
                 f"request, {a.seconds:g} s per level; in-process runner at batch 1 and best batch in the same run")
        print(f"recorded in {record_ratios('serve_load', items, notes, RESULTS_DIR, RESULTS_MD, machine)}")


if __name__ == "__main__":
    main()
