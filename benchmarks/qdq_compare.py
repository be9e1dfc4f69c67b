"""ModelOpt against corese-edge's ONNX Runtime s8s8 quantizer on the full CoRes-SE: Q/DQ placement and precision.

A program, not a test (STYLE.md).  It builds the ``coresse`` model with random weights at 224 px,
exports the FP32 ONNX (``corese_edge.export.onnx_fp32.export_onnx``), and quantizes it twice on the
same synthetic face images, both with MinMax calibration:

* ``modelopt``: NVIDIA ModelOpt's ONNX PTQ (``corese_edge.export.modelopt.quantize_modelopt``,
  INT8 + FP16 elsewhere, FP32 I/O);
* ``ort-s8s8``: the ``--target tensorrt`` path (``prepare_for_quantization``, ``calibrate``,
  ``quantize_int8`` with the s8s8 flavour).

Then it prints, for each: which Conv/Gemm/MatMul inputs read a DequantizeLinear (counts, and the
nodes where the two differ), whether the residual Adds get Q/DQ, which other ops read Q/DQ, the
precision census (``corese_edge.export.census``), every node whose census precision differs with
its FLOPs, the Q/DQ rules check, and the logits of both against FP32 under ONNX Runtime with graph
optimizations disabled.  It prints the machine first.  It needs the ``[modelopt]`` extra, takes
several minutes on 2 CPU cores, and writes only to a temporary folder (``--keep DIR`` keeps the models).

    python benchmarks/qdq_compare.py [--images 16] [--size 224] [--variant coresse] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

WEIGHTED = ("Conv", "Gemm", "MatMul")


def dq_fed(graph, name: str, depth: int = 0) -> bool:
    """Whether tensor ``name`` is a DequantizeLinear output, possibly through data movement."""
    from corese_edge.export.census import DQ_PASS_THROUGH

    node = graph["producer"].get(name)
    if node is None or depth > 8:
        return False
    if node.op_type == "DequantizeLinear":
        return True
    return node.op_type in DQ_PASS_THROUGH and bool(node.input) and dq_fed(graph, node.input[0], depth + 1)


def load(path: Path) -> dict:
    import onnx

    proto = onnx.load(os.fspath(path))
    producer = {o: n for n in proto.graph.node for o in n.output}
    constants = {t.name for t in proto.graph.initializer} | {
        n.output[0] for n in proto.graph.node if n.op_type == "Constant"}
    return {"proto": proto, "producer": producer, "constants": constants, "path": path}


def weighted_inputs(graph) -> dict[str, tuple[bool, bool]]:
    """Conv/Gemm/MatMul node name -> (activation input from DQ, weight input from DQ)."""
    return {n.name: (dq_fed(graph, n.input[0]), len(n.input) > 1 and dq_fed(graph, n.input[1]))
            for n in graph["proto"].graph.node if n.op_type in WEIGHTED}


def residual_adds(graph) -> dict[str, int]:
    """Add nodes with two activation inputs (no constant) -> how many of those inputs come from a DQ."""
    out = {}
    for n in graph["proto"].graph.node:
        if n.op_type != "Add" or len(n.input) != 2 or any(i in graph["constants"] for i in n.input):
            continue
        if any(graph["producer"].get(i) is not None and graph["producer"][i].op_type == "Cast"
               and graph["producer"][i].input[0] in graph["constants"] for i in n.input):
            continue
        out[n.name] = sum(dq_fed(graph, i) for i in n.input)
    return out


def other_dq_readers(graph) -> Counter:
    """Op types other than Conv/Gemm/MatMul/Q/DQ that read a DequantizeLinear output directly."""
    c: Counter = Counter()
    for n in graph["proto"].graph.node:
        if n.op_type in WEIGHTED or n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(graph["producer"].get(i) is not None and graph["producer"][i].op_type == "DequantizeLinear"
               for i in n.input):
            c[n.op_type] += 1
    return c


def comparison_table(census: dict, drift: dict) -> str:
    """Markdown rows: residual Adds quantized, INT8 FLOPs, FP32 nodes, fusable blocks, boundaries, drift."""
    cols = list(census)
    lines = ["| | " + " | ".join(cols) + " |", "| --- |" + " --- |" * len(cols)]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(census[k], k) for k in cols) + " |")

    fusion = {k: c.fusion.to_dict() for k, c in census.items()}
    row("residual Adds with a quantized residual input",
        lambda c, k: f"{fusion[k]['residual_adds']['quantized']} of {fusion[k]['residual_adds']['total']}")
    row("INT8 share of FLOPs", lambda c, k: f"{100 * c.int8_flop_share:.2f} %")
    row("FP32 compute nodes", lambda c, k: str(len(c.fp32_nodes)))
    row("fusable blocks (INT8 weighted op whose chain ends in a Q)",
        lambda c, k: f"{fusion[k]['fusable']} of {fusion[k]['weighted_int8']}")
    row("boundaries INT8->FP16 / FP16->INT8", lambda c, k: f"{fusion[k]['int8_to_fp16']} / {fusion[k]['fp16_to_int8']}")
    row("max |logit - FP32|, top-1 agreement",
        lambda c, k: f"{drift[k][0]:.4f}, {100 * drift[k][1]:.0f} %" if k in drift else "-")
    return "\n".join(lines)


def quantizer_choice(census: dict, drift: dict) -> str:
    """Issue 17's rule: ModelOpt becomes the --target tensorrt default only if it wins on every count
    and its drift is no worse."""
    mo, ours = census["modelopt"], census["ort-s8s8"]
    fm, fo = mo.fusion.to_dict(), ours.fusion.to_dict()
    wins = [mo.int8_flop_share > ours.int8_flop_share, len(mo.fp32_nodes) < len(ours.fp32_nodes),
            fm["fusable"] > fo["fusable"],
            fm["int8_to_fp16"] + fm["fp16_to_int8"] < fo["int8_to_fp16"] + fo["fp16_to_int8"],
            fm["residual_adds"]["quantized"] > fo["residual_adds"]["quantized"]]
    no_worse = drift["modelopt"][0] <= drift["ort-s8s8"][0]
    if all(wins) and no_worse:
        return "decision: ModelOpt wins on every count with no worse drift -> make it the tensorrt default"
    return (f"decision: keep ours (ModelOpt wins on {sum(wins)} of {len(wins)} counts; drift "
            f"{'no worse' if no_worse else 'worse'} than ours)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="coresse")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--images", type=int, default=16, help="calibration images (synthetic faces)")
    ap.add_argument("--keep", type=Path, default=None, help="copy the three ONNX models here")
    a = ap.parse_args()

    from corese_edge.bench.machine import describe, machine_info
    from corese_edge.bench.suite import make_checkpoint
    from corese_edge.data.calibration import CalibrationBatches
    from corese_edge.data.layouts import load_index
    from corese_edge.data.synthetic import generate
    from corese_edge.export import int8 as q
    from corese_edge.export.census import precision_census
    from corese_edge.export.comparator import drift_ort_runner, onnx_logits, runner_logits
    from corese_edge.export.modelopt import quantize_modelopt
    from corese_edge.export.onnx_fp32 import export_onnx
    from corese_edge.export.qdq_rules import qdq_rule_violations
    from corese_edge.preprocessing import Preprocessing

    info = machine_info()
    print(f"machine: {describe(info)}")
    print(f"versions: {', '.join(f'{k} {v}' for k, v in info['versions'].items() if v)}")
    start = time.perf_counter()
    times: dict[str, float] = {}

    def timed(label, fn, *args, **kwargs):
        t = time.perf_counter()
        result = fn(*args, **kwargs)
        times[label] = time.perf_counter() - t
        print(f"  {label}: {times[label]:.1f} s", flush=True)
        return result

    with tempfile.TemporaryDirectory(prefix="qdq-compare-") as tmp:
        work = Path(tmp)
        prep = Preprocessing(size=a.size)
        per_class = -(-a.images // 7)
        data = timed("synthetic images", generate, work / "faces", train_per_class=per_class, test_per_class=1,
                     size=max(64, a.size // 2), seed=0)
        index = load_index(data)
        images = [s.path for s in index.split("train")][: a.images]
        batches = CalibrationBatches(images, prep, 8)
        print(f"{a.variant} at {a.size} px, random weights; {len(images)} synthetic calibration images, "
              f"batches of 8, MinMax")
        ckpt = timed("checkpoint", make_checkpoint, a.variant, work / "model.pt", a.size)
        fp32 = timed("export FP32 ONNX", export_onnx, ckpt, work / "model.onnx")
        mo = timed("ModelOpt INT8 (+FP16)", quantize_modelopt, fp32, work / "modelopt.int8.onnx", batches,
                   "minmax", high_precision_dtype="fp16")
        pre = timed("ORT pre-process", q.prepare_for_quantization, fp32, work / "pre.onnx")
        ranges = timed("ORT calibrate", q.calibrate, pre, q.StreamingCalibrationReader(batches),
                       work / "ranges.json", "minmax", "s8s8")
        ort = timed("ORT s8s8 quantize", q.quantize_int8, pre, work / "ort.int8.onnx", ranges, "s8s8", "minmax",
                    metadata_from=fp32)
        if a.keep:
            a.keep.mkdir(parents=True, exist_ok=True)
            for p in (fp32, mo, ort):
                shutil.copyfile(p, a.keep / p.name)

        graphs = {"modelopt": load(mo), "ort-s8s8": load(ort)}
        fp32_graph = load(fp32)
        fp32_census = {n.name: n for n in precision_census(fp32).nodes}

        # 1. Conv / Gemm / MatMul inputs
        print("\n== 1. Conv/Gemm/MatMul inputs that read a DequantizeLinear ==")
        w = {k: weighted_inputs(g) for k, g in graphs.items()}
        fp32_weighted = weighted_inputs(fp32_graph)
        print(f"FP32 graph: {len(fp32_weighted)} weighted nodes "
              f"({dict(Counter(n.op_type for n in fp32_graph['proto'].graph.node if n.op_type in WEIGHTED))})")
        for k, table in w.items():
            both = sum(a_ and w_ for a_, w_ in table.values())
            act_only = sum(a_ and not w_ for a_, w_ in table.values())
            w_only = sum(w_ and not a_ for a_, w_ in table.values())
            print(f"{k:9}: {len(table)} weighted nodes; activation+weight quantized {both}, activation only "
                  f"{act_only}, weight only {w_only}, neither {len(table) - both - act_only - w_only}")
        names = sorted(set(w["modelopt"]) | set(w["ort-s8s8"]))
        differing = [n for n in names if w["modelopt"].get(n) != w["ort-s8s8"].get(n)]
        print(f"nodes quantized differently: {len(differing)}")
        for n in differing:
            flops = fp32_census[n].flops if n in fp32_census else None
            print(f"  {n}: modelopt {w['modelopt'].get(n)}, ort-s8s8 {w['ort-s8s8'].get(n)}"
                  f"  ({(flops or 0) / 1e6:.3f} MFLOP at batch 1)")

        # 2. residual Adds
        print("\n== 2. residual Adds (two activation inputs) ==")
        for k, g in graphs.items():
            adds = residual_adds(g)
            print(f"{k:9}: {len(adds)} residual Adds; with a Q/DQ input: {sum(1 for v in adds.values() if v)} "
                  f"(one input {sum(1 for v in adds.values() if v == 1)}, both {sum(1 for v in adds.values() if v == 2)})")

        # 3. other consumers of Q/DQ
        print("\n== 3. other ops reading a DequantizeLinear output ==")
        for k, g in graphs.items():
            print(f"{k:9}: {dict(other_dq_readers(g)) or 'none'}")
            print(f"{'':9}  Q/DQ nodes: {sum(1 for n in g['proto'].graph.node if n.op_type == 'QuantizeLinear')} Q, "
                  f"{sum(1 for n in g['proto'].graph.node if n.op_type == 'DequantizeLinear')} DQ; opset "
                  f"{max(o.version for o in g['proto'].opset_import if o.domain in ('', 'ai.onnx'))}")

        # 4. precision census
        print("\n== 4. precision census (TensorRT strong typing) ==")
        census = {k: precision_census(g["path"]) for k, g in graphs.items()}
        for k, c in census.items():
            print(f"[{k}]")
            print(c.table())
            by_op = {op: {p: cell["nodes"] for p, cell in row.items()} for op, row in c.by_op_type().items()}
            print(f"by op type (nodes per precision): {by_op}")
        nodes = {k: {n.name: n for n in c.nodes} for k, c in census.items()}
        diff = [(name, nodes["modelopt"].get(name), nodes["ort-s8s8"].get(name))
                for name in sorted(set(nodes["modelopt"]) | set(nodes["ort-s8s8"]))]
        diff = [d for d in diff if (d[1].precision if d[1] else None) != (d[2].precision if d[2] else None)]
        diff.sort(key=lambda d: -max((d[1].flops or 0) if d[1] else 0, (d[2].flops or 0) if d[2] else 0))
        print(f"\ncompute nodes whose precision differs: {len(diff)} (largest FLOPs first)")
        for name, m, o in diff[:40]:
            flops = max((m.flops or 0) if m else 0, (o.flops or 0) if o else 0)
            print(f"  {name} [{(m or o).op_type}]: modelopt {m.precision if m else '-'}, "
                  f"ort-s8s8 {o.precision if o else '-'}  {flops / 1e6:.3f} MFLOP")
        if len(diff) > 40:
            print(f"  ... {len(diff) - 40} more")
        for k, c in census.items():
            print(f"{k:9}: INT8 {100 * c.int8_flop_share:.2f}% of {c.total_flops / 1e9:.3f} GFLOP, "
                  f"FP16 {100 * c.flop_share('fp16'):.2f}%, FP32 {100 * c.flop_share('fp32'):.2f}%")

        # 5. rules and numbers
        print("\n== 5. Q/DQ rules (strongly typed) and logits against FP32 (ORT, graph optimizations off) ==")
        x = np.concatenate(list(CalibrationBatches([s.path for s in index.split("test")], prep, 8)))
        ref = onnx_logits(fp32, x)
        drift = {}
        for k, g in graphs.items():
            problems = qdq_rule_violations(g["proto"], strongly_typed=True)
            runner = drift_ort_runner(g["path"], reference_arithmetic=True).activate()
            logits = timed(f"{k} logits", lambda batch: runner_logits(runner, batch), x)
            runner.close()
            drift[k] = (float(np.abs(logits - ref).max()), float((logits.argmax(1) == ref.argmax(1)).mean()))
            print(f"{k:9}: rule violations {len(problems)}{': ' + problems[0] if problems else ''}; "
                  f"on {len(x)} images max |logit - FP32| {np.abs(logits - ref).max():.4f} "
                  f"(FP32 logits up to {np.abs(ref).max():.4f}), top-1 agreement "
                  f"{100 * (logits.argmax(1) == ref.argmax(1)).mean():.0f}%")

        # 6. the yardstick table (issue 17): fusion view of the census beside INT8 FLOPs and FP32 nodes
        print("\n== 6. ours against ModelOpt: placement, precision, TensorRT fusion (census fusion view) ==")
        print(comparison_table(census, drift))
        print(quantizer_choice(census, drift))
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
