"""Why ONNX Runtime's INT8 gains little over its FP32 on an AMX CPU: a measured, minimal reproduction.

A program, not a test.  It prints the machine (CPU, AVX2 / AVX-512 / VNNI / AMX / BF16 flags, cores,
load average) and whether this onnxruntime asked Linux for the AMX tile state (the sign that MLAS
picked its AMX QGEMM kernel), then times, interleaved (A, B, C, A, B, C, ...), at 1 and 2 threads:

1. kernels -- one 1x1 convolution written three ways and the same GEMM as a MatMul
   (56x56 pixels, 256 -> 1024 channels, 822 MMAC):
   * ``conv-fp32`` / ``matmul-fp32``: FP32 (MLAS SGEMM);
   * ``conv-u8s8-sym``: Q/DQ Conv with symmetric int8 weights (zero point 0, what every quantizer
     writes) -> QLinearConv takes MLAS's *symmetric* convolution kernels (ConvSym), which exist for
     AVX2 / AVX-512 / VNNI only (onnxruntime ``qlinearconv.cc`` ``TryConvSymPrepack``);
   * ``conv-u8s8-zp1``: the same with weight zero point 1 -> QLinearConv falls back to MLAS QGEMM,
     whose U8S8 dispatch is the AMX kernel on an AMX CPU (``mlas/lib/platform.cpp``);
   * ``matmul-u8s8``: Q/DQ MatMul -> QLinearMatMul, also MLAS QGEMM.
2. ``DequantizeLinear`` / ``QuantizeLinear`` of a 56x56x1024 tensor at 1 and 2 threads: a Q/DQ
   node left unfused between two float ops costs a pass over its tensor, and DequantizeLinear is a
   plain loop that never uses the intra-op thread pool (``cpu/quantization/quantize_linear.cc``);
   the CPU time per call shows whether a second thread did any of the work.
3. the whole model (``--model``, random weights, calibrated on a few synthetic images): ONNX
   Runtime FP32, INT8 with every op ONNX Runtime can quantize (corese-edge's ``cpu`` flavour
   before issue 9) and INT8 in today's ``cpu`` flavour (Conv / MatMul / Gemm only,
   MatMul / Gemm outputs float), at 1 thread and at 2 threads with the pool's spinning on
   (ONNX Runtime's default) and off (``OrtRunner``'s default since issue 9).

Wall-clock p50 is what a user sees; on a shared machine the CPU time per call (process time) is
reported beside it, because it is far less sensitive to other jobs.

    python benchmarks/ort_int8_amx.py [--quick] [--model coresse|coresse-lite|none] [--img-size 224]
                                      [--rounds 20] [--out results.json]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

#: Linux arch_prctl: read the extended-state features this process may use (asm/prctl.h)
ARCH_GET_XCOMP_PERM = 0x1022
#: XFEATURE 18: AMX tile data; MLAS requests it (ARCH_REQ_XCOMP_PERM) before it selects the AMX kernel
XFEATURE_XTILEDATA = 18
SYS_ARCH_PRCTL = 158  # x86-64


def amx_permitted() -> bool | None:
    """Whether this process may use the AMX tile state (None off x86-64 Linux)."""
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    mask = ctypes.c_ulong(0)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_GET_XCOMP_PERM, ctypes.byref(mask)) != 0:
        return None
    return bool(mask.value >> XFEATURE_XTILEDATA & 1)


def load() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def print_machine() -> dict:
    from corese_edge.bench.machine import describe, machine_info
    from corese_edge.machine import cpu_isa, format_isa

    info = machine_info()
    print(f"machine: {describe(info)}")
    print(f"cpu ISA: {format_isa(cpu_isa())}")
    print(f"onnxruntime {info.get('versions', {}).get('onnxruntime')}, load average {load()} (1/5/15 min)")
    return info


# ----------------------------------------------------------------------------- tiny graphs
H = W = 56
C_IN, C_OUT = 256, 1024


def _kernel_graph(kind: str, path: Path, rng: np.random.Generator) -> tuple[int, ...]:
    """Write one single-op graph (see the module docstring); return its input shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    conv = kind.startswith("conv")
    wshape = (C_OUT, C_IN, 1, 1) if conv else (C_IN, C_OUT)
    xshape = (1, C_IN, H, W) if conv else (H * W, C_IN)
    inits = [numpy_helper.from_array(np.float32(0.02), "x_scale"), numpy_helper.from_array(np.uint8(128), "x_zp"),
             numpy_helper.from_array(np.float32(0.05), "y_scale"), numpy_helper.from_array(np.uint8(128), "y_zp")]
    nodes = []
    op = "Conv" if conv else "MatMul"
    if kind.endswith("fp32"):
        inits = [numpy_helper.from_array(rng.standard_normal(wshape).astype(np.float32) * 0.05, "w")]
        nodes.append(helper.make_node(op, ["x", "w"], ["y"]))
    else:
        zp = 1 if kind.endswith("zp1") else 0
        inits += [numpy_helper.from_array(rng.integers(-100, 100, wshape).astype(np.int8), "w_q"),
                  numpy_helper.from_array(np.float32(0.01), "w_scale"), numpy_helper.from_array(np.int8(zp), "w_zp")]
        nodes += [
            helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zp"], ["x_q"]),
            helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"]),
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"]),
            helper.make_node(op, ["x_dq", "w_dq"], ["y_f"]),
            helper.make_node("QuantizeLinear", ["y_f", "y_scale", "y_zp"], ["y"]),
        ]
    out_type = TensorProto.FLOAT if kind.endswith("fp32") else TensorProto.UINT8
    graph = helper.make_graph(nodes, kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, xshape)],
                              [helper.make_tensor_value_info("y", out_type, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return xshape


def _qdq_graph(kind: str, path: Path) -> tuple[int, ...]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = (1, H, W, C_OUT)
    inits = [numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.uint8(128), "z")]
    if kind == "dequantize":
        node = helper.make_node("DequantizeLinear", ["x", "s", "z"], ["y"])
        io = (TensorProto.UINT8, TensorProto.FLOAT)
    else:
        node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
        io = (TensorProto.FLOAT, TensorProto.UINT8)
    graph = helper.make_graph([node], kind, [helper.make_tensor_value_info("x", io[0], shape)],
                              [helper.make_tensor_value_info("y", io[1], shape)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return shape


# ----------------------------------------------------------------------------- timing
def session(path: Path, threads: int, spinning: bool = True):
    """A bare CPU session; ``spinning`` is ONNX Runtime's ``session.intra_op.allow_spinning`` (its default: on)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.log_severity_level = 3  # the tiny graphs trigger "unused initializer" warnings
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, dict[str, float]]:
    """p50 wall and CPU ms per call, the calls taken in turn each round (order reversed every other round)."""
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    names = list(calls)
    for i in range(rounds):
        for name in names if i % 2 == 0 else names[::-1]:
            c0, t0 = time.process_time(), time.perf_counter()
            calls[name]()
            wall[name].append(1000 * (time.perf_counter() - t0))
            cpu[name].append(1000 * (time.process_time() - c0))
    return {k: {"p50_ms": statistics.median(wall[k]), "min_ms": min(wall[k]), "cpu_p50_ms": statistics.median(cpu[k])}
            for k in names}


def _feed(shape, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(1)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    return rng.uniform(-1, 1, shape).astype(np.float32)


def run_kernels(work: Path, rounds: int) -> dict:
    rng = np.random.default_rng(0)
    kinds = ("conv-fp32", "conv-u8s8-sym", "conv-u8s8-zp1", "matmul-fp32", "matmul-u8s8")
    shapes = {k: _kernel_graph(k, work / f"{k}.onnx", rng) for k in kinds}
    macs = H * W * C_IN * C_OUT
    out: dict = {"macs": macs}
    for threads in (1, 2):
        calls = {}
        for k in kinds:
            # no spinning: an idle pool thread of one session would otherwise busy-wait while the next runs
            s, x = session(work / f"{k}.onnx", threads, spinning=False), _feed(shapes[k])
            calls[k] = (lambda s=s, x=x: s.run(None, {"x": x}))
        res = interleaved(calls, rounds)
        out[f"threads{threads}"] = res
        print(f"\n[kernels] 1x1 conv / GEMM {H * W}x{C_IN}->{C_OUT} ({macs / 1e6:.0f} MMAC), {threads} thread(s), "
              f"{rounds} interleaved rounds, load {load()}")
        print(f"  {'graph':<15} {'p50 ms':>8} {'min ms':>8} {'GMAC/s (min)':>13} {'CPU ms':>8}")
        for k, r in res.items():
            print(f"  {k:<15} {r['p50_ms']:8.2f} {r['min_ms']:8.2f} {macs / r['min_ms'] / 1e6:13.0f} {r['cpu_p50_ms']:8.2f}")
    t1, t2 = out["threads1"], out["threads2"]
    print("  ratios (CPU time, 1 thread): "
          f"conv fp32/sym {t1['conv-fp32']['cpu_p50_ms'] / t1['conv-u8s8-sym']['cpu_p50_ms']:.2f}x, "
          f"fp32/zp1 {t1['conv-fp32']['cpu_p50_ms'] / t1['conv-u8s8-zp1']['cpu_p50_ms']:.2f}x, "
          f"matmul fp32/u8s8 {t1['matmul-fp32']['cpu_p50_ms'] / t1['matmul-u8s8']['cpu_p50_ms']:.2f}x; "
          f"2-thread speed-up (p50 wall 1t/2t): "
          + ", ".join(f"{k} {t1[k]['p50_ms'] / t2[k]['p50_ms']:.2f}x" for k in kinds))
    return out


def run_qdq(work: Path, rounds: int) -> dict:
    out: dict = {}
    paths = {k: work / f"{k}.onnx" for k in ("dequantize", "quantize")}
    shapes = {k: _qdq_graph(k, p) for k, p in paths.items()}
    calls = {}
    for threads in (1, 2):
        for k, p in paths.items():
            s = session(p, threads, spinning=False)
            x = _feed(shapes[k], np.uint8 if k == "dequantize" else np.float32)
            calls[f"{k}-{threads}t"] = (lambda s=s, x=x: s.run(None, {"x": x}))
    res = interleaved(calls, rounds * 3)
    print(f"\n[Q/DQ] 1x{H}x{W}x{C_OUT} tensor, load {load()}")
    for k in ("dequantize", "quantize"):
        a, b = res[f"{k}-1t"], res[f"{k}-2t"]
        print(f"  {k:<11} 1 thread {a['p50_ms']:6.2f} ms, 2 threads {b['p50_ms']:6.2f} ms -> {a['p50_ms'] / b['p50_ms']:.2f}x "
              f"(CPU {a['cpu_p50_ms']:.2f} / {b['cpu_p50_ms']:.2f} ms)")
        out[k] = {"threads1": a, "threads2": b}
    return out


# ----------------------------------------------------------------------------- whole model
def build_model(variant: str, img_size: int, work: Path, calib_images: int) -> dict[str, Path]:
    """FP32 ONNX, INT8 with every quantizable op (the old cpu flavour) and INT8 in today's cpu flavour."""
    import torch

    from corese_edge.export import int8 as q
    from corese_edge.export.onnx_fp32 import export_onnx
    from corese_edge.model import CoResSE
    from corese_edge.model.checkpoint import Checkpoint
    from corese_edge.preprocessing import Preprocessing

    torch.manual_seed(0)
    model = CoResSE(variant, 7).eval()
    ckpt = Checkpoint(None, variant, 7, "sample", [f"c{i}" for i in range(7)], Preprocessing(size=img_size),
                      model.state_dict(), kind="benchmark")
    ckpt.save(work / "model.pt")  # the ONNX metadata records the checkpoint's checksum
    fp32 = export_onnx(ckpt, work / "model.onnx", model=model)
    pre = q.prepare_for_quantization(fp32, work / "pre.onnx")
    rng = np.random.default_rng(0)
    batches = [rng.uniform(-1, 1, (1, 3, img_size, img_size)).astype(np.float32) for _ in range(calib_images)]
    # the flavour before issue 9, registered in this process only: every op ORT can quantize
    old = q.Flavour("u8s8-all-ops", "QUInt8", "QInt8", None, (("WeightSymmetric", True),), symmetric_int8=False)
    q.FLAVOURS.setdefault(old.name, old)
    # calibrating for every op type records every tensor, so both placements read the same ranges
    ranges = q.calibrate(pre, q.StreamingCalibrationReader(batches), work / "ranges.json", "minmax", old.name)
    return {
        "ort-fp32": fp32,
        "ort-int8-all-ops": q.quantize_int8(pre, work / "model.all-ops.int8.onnx", ranges, old.name, metadata_from=fp32),
        "ort-int8-cpu": q.quantize_int8(pre, work / "model.int8.onnx", ranges, "u8s8", metadata_from=fp32),
    }


#: (threads, spinning) settings of the whole-model run; spinning only matters with a pool thread
MODEL_SETTINGS = ((1, True), (2, True), (2, False))


def _setting(threads: int, spinning: bool) -> str:
    return f"{threads}t" + ("" if threads == 1 else (" spin" if spinning else " no-spin"))


def run_model(paths: dict[str, Path], img_size: int, rounds: int, label: str) -> dict:
    x = _feed((1, 3, img_size, img_size))
    calls = {}
    for threads, spinning in MODEL_SETTINGS:
        for name, p in paths.items():
            s = session(p, threads, spinning)
            calls[f"{name}@{_setting(threads, spinning)}"] = (lambda s=s: s.run(None, {"input": x}))
    res = interleaved(calls, rounds)
    print(f"\n[model] {label}, batch 1, {rounds} interleaved rounds, load {load()}")
    print(f"  {'artifact':<18} {'setting':>11} {'p50 ms':>8} {'min ms':>8} {'CPU ms':>8} {'vs FP32 (p50)':>14} {'vs FP32 (CPU)':>14}")
    for threads, spinning in MODEL_SETTINGS:
        setting = _setting(threads, spinning)
        base = res[f"ort-fp32@{setting}"]
        for name in paths:
            r = res[f"{name}@{setting}"]
            print(f"  {name:<18} {setting:>11} {r['p50_ms']:8.1f} {r['min_ms']:8.1f} {r['cpu_p50_ms']:8.1f} "
                  f"{base['p50_ms'] / r['p50_ms']:13.2f}x {base['cpu_p50_ms'] / r['cpu_p50_ms']:13.2f}x")
    for name in paths:
        one = res[f"{name}@1t"]["p50_ms"]
        print(f"  {name}: 2 threads vs 1 (p50): spinning {one / res[f'{name}@2t spin']['p50_ms']:.2f}x, "
              f"no spinning {one / res[f'{name}@2t no-spin']['p50_ms']:.2f}x; spinning off at 2 threads: "
              f"{res[f'{name}@2t spin']['p50_ms'] / res[f'{name}@2t no-spin']['p50_ms']:.2f}x faster")
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few rounds, coresse-lite at 64 px (a smoke run)")
    ap.add_argument("--model", default="coresse", choices=("coresse", "coresse-lite", "none"))
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--calib-images", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON")
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.model, a.img_size, a.calib_images = 4, "coresse-lite", 64, 2
    info = print_machine()
    result: dict = {"schema": "corese-edge/ort-int8-amx/1", "machine": info, "load_average_start": load(),
                    "rounds": a.rounds, "amx_tile_permitted_before_onnxruntime": amx_permitted()}
    with tempfile.TemporaryDirectory(prefix="corese-ort-amx-") as tmp:
        work = Path(tmp)
        result["kernels"] = run_kernels(work, a.rounds)
        result["amx_tile_permitted_after_onnxruntime"] = amx_permitted()
        print(f"\nAMX tile state permitted to this process: before ONNX Runtime ran "
              f"{result['amx_tile_permitted_before_onnxruntime']}, after {result['amx_tile_permitted_after_onnxruntime']} "
              "(MLAS requests it only when it selects its AMX QGEMM kernel)")
        result["qdq"] = run_qdq(work, a.rounds)
        if a.model != "none":
            t0 = time.perf_counter()
            paths = build_model(a.model, a.img_size, work, a.calib_images)
            print(f"\nbuilt {a.model} ({a.img_size} px, random init): FP32, INT8 all-ops, INT8 cpu flavour "
                  f"in {time.perf_counter() - t0:.0f} s")
            result["model"] = {"name": a.model, "img_size": a.img_size,
                               "timings": run_model(paths, a.img_size, a.rounds, f"{a.model} {a.img_size} px")}
    result["load_average_end"] = load()
    print(f"\nload average at the end: {result['load_average_end']}")
    if a.out:
        from corese_edge.atomic import write_json

        write_json(a.out, result)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
