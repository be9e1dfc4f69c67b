"""The face stage against the classifier, per 640x480 frame on one core.

Face stage = YuNet detection (with landmark refinement, the default, and without) + similarity
alignment to the template (one warpAffine) + preprocessing to the model's input tensor, for a
640x480 RGB frame holding one face (skimage's astronaut).  Classifier = one batch-1 inference of
the full ``coresse`` at 224 px: ONNX Runtime FP32, ONNX Runtime INT8 (the ``cpu`` target's U8S8
Q/DQ flavour, built as corese_edge/bench/suite.py builds it) and, when OpenVINO is installed,
OpenVINO on that INT8 ONNX.  Everything runs on one core (process pinned, ``cv2.setNumThreads(1)``,
one runtime thread), in interleaved rounds so that load from other jobs hits all rows alike; the
ratios are medians of the same run.  The target (issue 10): the face stage costs no more than the
INT8 classifier on the CPU.

    python benchmarks/face_stage.py [--rounds 15] [--per-round 5] [--no-record]

Needs the YuNet model file (``$CORESE_EDGE_FACE_MODEL``, the user cache, or a download) and
scikit-image (the dev extra) for the photograph.  Weights are random (speed does not depend on them).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from corese_edge.bench.machine import describe, machine_info
from corese_edge.bench.suite import output_paths, prepare_models, record_ratios
from corese_edge.preprocessing import DEFAULT_FACE_TEMPLATE, Preprocessing
from corese_edge.runtime import OrtRunner, Preprocessor
from corese_edge.runtime.faces import FaceDetector, align_face

#: this checkout's benchmarks/ folder, where RESULTS.md is kept
RESULTS_DIR, RESULTS_MD = output_paths(Path(__file__).resolve().parent)


def frame_640x480() -> np.ndarray:
    """A 640x480 RGB frame with one face: the astronaut photograph (512 px) on a grey canvas."""
    from skimage import data

    frame = np.full((480, 640, 3), 90, np.uint8)
    frame[:, 64:576] = data.astronaut()[16:496]
    return frame


def face_stage(detector: FaceDetector, pre: Preprocessor, size: int) -> Callable[[np.ndarray], np.ndarray]:
    def run(frame: np.ndarray) -> np.ndarray:
        crops = [align_face(frame, f, DEFAULT_FACE_TEMPLATE, size)[0] for f in detector.detect(frame)]
        return pre.from_frames(crops)
    return run


def timed_ms(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved rounds (each times every row)")
    ap.add_argument("--per-round", type=int, default=5, help="timed calls per row per round")
    ap.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO INT8 row")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to results/ and RESULTS.md")
    a = ap.parse_args()
    machine = machine_info()  # before pinning: the record names the machine, not this process's mask
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    cv2.setNumThreads(1)
    print(f"machine: {describe(machine)} (pinned to one core)")
    print(f"OpenCV {cv2.__version__}; one core; {a.rounds} interleaved rounds x {a.per_round} calls per row")

    size = 224
    frame = frame_640x480()
    pre = Preprocessor(Preprocessing(size=size))
    rows: dict[str, Callable[[], object]] = {}
    for refine in (True, False):
        det = FaceDetector(refine=refine)
        found = det.detect(frame)
        assert len(found) == 1, f"expected one face in the benchmark frame, found {len(found)}"
        stage = face_stage(det, pre, size)
        rows[f"face stage{'' if refine else ' (refine off)'}"] = lambda s=stage: s(frame)

    with tempfile.TemporaryDirectory() as tmp:
        print("building coresse FP32 and INT8 (U8S8) ONNX (random weights) ...", flush=True)
        paths = prepare_models("coresse", Path(tmp), size, 8, ("fp32", "int8"))
        runners = {"classifier ORT FP32": OrtRunner(paths["fp32"], providers="cpu", threads=1),
                   "classifier ORT INT8": OrtRunner(paths["int8"], providers="cpu", threads=1)}
        if not a.no_openvino:
            try:
                from corese_edge.runtime.openvino import OpenVinoRunner

                runners["classifier OpenVINO INT8"] = OpenVinoRunner(paths["int8"], threads=1)
            except Exception as exc:  # optional row: a missing or failing OpenVINO is reported, not fatal
                print(f"OpenVINO INT8 row skipped: {str(exc).splitlines()[0]}")
        x = pre.from_frames([align_face(frame, FaceDetector().detect(frame)[0], DEFAULT_FACE_TEMPLATE, size)[0]])
        for name, runner in runners.items():
            runner.activate()
            feed = {runner.inputs[0].name: x}
            rows[name] = lambda r=runner, f=feed: r.infer(f)
        try:
            for fn in rows.values():  # warm-up
                timed_ms(fn, 3)
            samples: dict[str, list[float]] = {name: [] for name in rows}
            for _ in range(a.rounds):
                for name, fn in rows.items():
                    samples[name] += timed_ms(fn, a.per_round)
        finally:
            for runner in runners.values():
                runner.close()

    p50 = {name: statistics.median(v) for name, v in samples.items()}
    print(f"\n{'row':40} {'p50 ms':>8} {'p90 ms':>8}")
    for name, v in samples.items():
        print(f"{name:40} {p50[name]:8.2f} {np.percentile(v, 90):8.2f}")
    items = []
    print()
    for clf in [n for n in rows if n.startswith("classifier")]:
        for stage in ("face stage", "face stage (refine off)"):
            ratio = p50[stage] / p50[clf]
            target = "<= 1" if clf == "classifier ORT INT8" and stage == "face stage" else ""
            verdict = ("pass" if ratio <= 1 else "FAIL") if target else ""
            what = f"{stage} / {clf} p50, 640x480 frame, 1 core ({p50[stage]:.1f} / {p50[clf]:.1f} ms)"
            items.append({"what": what, "value": f"{ratio:.2f}x", "target": target, "verdict": verdict})
            print(f"{what}: {ratio:.2f}x {verdict}")
    if not a.no_record:
        record_ratios("face stage", items, machine=machine, results_dir=RESULTS_DIR, markdown=RESULTS_MD,
                      notes=f"one face per 640x480 frame (astronaut); detection + alignment + preprocessing to 224 px; "
                            f"coresse random weights, batch 1, 1 thread; {a.rounds} interleaved rounds x {a.per_round}; "
                            f"OpenCV {cv2.__version__}, process pinned to one core.")


if __name__ == "__main__":
    main()
