"""Preprocessing throughput on one core: 100x100 uint8 RGB frames (RAF-DB's size) -> 224 px NCHW.

Pins the process to one CPU and OpenCV to one thread, then times the runtime's Preprocessor on
single frames and on batches of 32, against training's albumentations eval transform per image
(the numbers both must agree on to 1e-5).

    python benchmarks/preprocess_throughput.py [--seconds 2]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np

from corese_edge.bench.machine import describe, machine_info
from corese_edge.bench.suite import output_paths, record_ratios
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime.preprocess import Preprocessor

#: this checkout's benchmarks/ folder, where RESULTS.md is kept
RESULTS_DIR, RESULTS_MD = output_paths(Path(__file__).resolve().parent)


def rate(fn, images_per_call: int, seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n * images_per_call / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0)
    a = ap.parse_args()
    machine = machine_info()  # before pinning: the record names the machine, not this process's mask
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    print(f"machine: {describe(machine)} (pinned to one core)")
    prep = Preprocessing(size=224)
    pre = Preprocessor(prep)
    rng = np.random.default_rng(0)
    frames = list(rng.integers(0, 256, (32, 100, 100, 3), dtype=np.uint8))
    single = rate(lambda: pre(frames[0]), 1, a.seconds)
    batched = rate(lambda: pre(frames), 32, a.seconds)
    items = [
        {"what": "Preprocessor, 100x100 uint8 -> 224, one frame per call, 1 core", "value": f"{single:.0f} images/s", "target": "", "verdict": ""},
        {"what": "Preprocessor, batches of 32, 1 core", "value": f"{batched:.0f} images/s", "target": "", "verdict": ""},
    ]
    print(f"runtime preprocessing: {single:.0f} img/s single, {batched:.0f} img/s batch 32")
    try:
        from corese_edge.data.transforms import eval_transform, to_chw

        t = eval_transform(prep)
        ref = rate(lambda: [to_chw(t(image=f)["image"]) for f in frames], 32, a.seconds)
        diff = float(np.abs(pre(frames) - np.stack([to_chw(t(image=f)["image"]) for f in frames])).max())
        print(f"albumentations eval transform: {ref:.0f} img/s; batch-32 speed-up {batched / ref:.2f}x; max |diff| {diff:.2e}")
        items.append({"what": "batch-32 Preprocessor / albumentations eval transform (+ CHW) per image, 1 core",
                      "value": f"{batched / ref:.2f}x ({ref:.0f} img/s for albumentations)", "target": "",
                      "verdict": f"max abs diff {diff:.1e} (<= 1e-5)"})
    except ImportError:
        print("albumentations not installed: no reference ratio")
    record_ratios("preprocessing", items, notes=f"{a.seconds} s per measurement, process pinned to one core, cv2.setNumThreads(1).", machine=machine,
                  results_dir=RESULTS_DIR, markdown=RESULTS_MD)


if __name__ == "__main__":
    main()
