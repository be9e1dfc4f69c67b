"""Which INT8 route for OpenVINO: NNCF post-training quantization (several settings) or OpenVINO
reading our Q/DQ ONNX (both flavours) -- accuracy on a trained run, latency on the full models.

Accuracy (``--checkpoint``, a trained run, and its ``--data``): every candidate is built from the
run's FP32 ONNX, calibrated on the images the export pipeline calibrates ONNX INT8 on
(``calibration_samples`` of the train split minus its validation part), and run by OpenVINO on the
test split; the drop is against ONNX Runtime FP32 on the same images, in percentage points.
``nncf-ac`` is NNCF's accuracy-control mode with ``--max-drop-pp`` measured on the validation part
carved from train (what ``--max-drift`` would use), never on the test split.

Latency (``--variants``, random weights at ``--img-size``, as corese_edge.bench.suite builds them):
p50 at batch 1 and 8 with ``--threads`` threads, every path interleaved in one run (round-robin
rounds, the order shuffled per round), so a busy neighbour slows all paths alike; the ratios are
against ONNX Runtime FP32 and against OpenVINO's float IR of the same ONNX.  INT8 calibration
there uses random inputs (speed does not depend on the values).

    python benchmarks/ov_int8_routes.py --checkpoint /tmp/demo_full/run/swa_final.pt --data /tmp/demo_full/data
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from corese_edge.bench.machine import describe, machine_info

#: NNCF settings compared (keyword overrides of corese_edge.export.openvino._nncf_quantize); "nncf"
#: is the module's own choice
NNCF_CANDIDATES = {
    "nncf": {},
    "nncf-mixed": {"preset": "mixed"},
    "nncf-transformer": {"model_type": "transformer"},
    "nncf-full-bc": {"fast_bias_correction": False},
    "nncf-head-fp": {"ignore_head": True},
    "nncf-mean-minmax": {"activation_range": "mean_minmax"},  # NNCF's own default activation ranges
}
#: the candidates whose graphs differ in ways that can change speed (full bias correction and a
#: float head change values or one small layer, not the kernels)
LATENCY_CANDIDATES = ("nncf", "nncf-mixed", "nncf-transformer", "qdq-u8s8", "qdq-s8s8", "qdq-s8s8-fp32")


def cpu_flags_line() -> str:
    flags = set()
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
    return " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in wanted)


def nncf_kwargs(nncf, model, overrides: dict) -> dict:
    out = {}
    for key, value in overrides.items():
        if key == "preset":
            out["preset"] = getattr(nncf.QuantizationPreset, value.upper())
        elif key == "model_type":
            out["model_type"] = getattr(nncf.ModelType, value.upper())
        elif key == "ignore_head":
            # the classifier: the last MatMul before the output (the Gemm of the ONNX)
            last = [op for op in model.get_ordered_ops() if op.get_type_name() == "MatMul"][-1]
            out["ignored_scope"] = nncf.IgnoredScope(names=[last.get_friendly_name()])
        elif key == "activation_range":
            # how activation ranges are estimated (the module uses MINMAX, the min / max over all
            # images; NNCF's default is MEAN_MINMAX, the mean of per-image min / max)
            from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
            from nncf.quantization.range_estimator import RangeEstimatorParametersSet

            out["advanced_parameters"] = AdvancedQuantizationParameters(
                activations_range_estimator_params=getattr(RangeEstimatorParametersSet, value.upper()))
        else:
            out[key] = value
    return out


def qdq_onnx(fp32: Path, out: Path, flavour: str, calibration, fp32_elsewhere: bool = False) -> Path:
    """Our Q/DQ ONNX, built the way export's INT8 stage builds it (MinMax); ``fp32_elsewhere``: the
    s8s8 graph with FP32 instead of FP16 outside the INT8 layers (TensorRT 8.6's weakly typed form)."""
    from corese_edge.export import int8 as int8_stage

    pre = int8_stage.prepare_for_quantization(fp32, out.with_suffix(".pre.onnx"))
    reader = int8_stage.StreamingCalibrationReader(calibration)
    ranges = int8_stage.calibrate(pre, reader, out.with_suffix(".ranges.json"), "minmax", flavour)
    return int8_stage.quantize_int8(pre, out, ranges, flavour, "minmax", metadata_from=fp32,
                                    high_precision="fp32" if fp32_elsewhere else None)


def build_candidates(fp32: Path, work: Path, calibration, names, subset_size: int,
                     validation=None, max_drop_pp: float = 0.5) -> dict[str, tuple[Path, float]]:
    """``{name: (xml path, build seconds)}`` for the float IR and each INT8 candidate named."""
    import openvino as ov

    from corese_edge.errors import UserError
    from corese_edge.export import openvino as ovx

    out: dict[str, tuple[Path, float]] = {}
    failed: dict[str, str] = {}
    t = time.perf_counter()
    out["ov-float"] = (ovx.ir_from_onnx(fp32, work / "model.xml"), time.perf_counter() - t)
    nncf = ovx._nncf()
    for name in names:
        t = time.perf_counter()
        xml = work / f"{name}.xml"
        try:
            if name.startswith("qdq-"):
                q = qdq_onnx(fp32, work / f"{name}.onnx", name.split("-")[1], calibration, name.endswith("-fp32"))
                t = time.perf_counter()  # the ONNX INT8 stage exists anyway; time OpenVINO's part
                ovx.quantize_ir(fp32, xml, calibration, route="qdq", qdq_onnx_path=q, progress=False)
            else:
                build_nncf(ov, ovx, nncf, name, fp32, xml, calibration, subset_size, validation, max_drop_pp)
        except UserError as exc:  # e.g. OpenVINO cannot read the FP16 Q/DQ graph: a result, not a crash
            print(f"  {name}: FAILED: {exc}", flush=True)
            failed[name] = str(exc)
            continue
        out[name] = (xml, time.perf_counter() - t)
        print(f"  {name}: built in {out[name][1]:.1f} s", flush=True)
    return out


def build_nncf(ov, ovx, nncf, name, fp32, xml, calibration, subset_size, validation, max_drop_pp) -> None:
    """One NNCF candidate: ``nncf-ac`` through quantize_ir's accuracy control, the others through the
    module's quantization with :data:`NNCF_CANDIDATES` overrides."""
    if name == "nncf-ac":
        ovx.quantize_ir(fp32, xml, calibration, route="nncf", subset_size=subset_size, progress=False,
                        max_drop_pp=max_drop_pp, validation=validation)
        return
    model = ovx._convert(ov, fp32)
    images = ovx._CalibrationImages(calibration, subset_size)
    q = ovx._nncf_quantize(nncf, model, images, None, None, False, nncf_kwargs(nncf, model, NNCF_CANDIDATES[name]))
    ovx._save_ir(ov, q, xml, ovx._onnx_props(fp32), {"precision": "int8", "route": name})


def compile_ov(core, xml: Path, threads: int, precision: str | None = None):
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(threads)}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(str(xml), "CPU", config)
    request = compiled.create_infer_request()
    return compiled, (lambda x: request.infer({0: x})[compiled.outputs[0]])


def ort_fn(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return lambda x: sess.run(None, {"input": x})[0]


# ----------------------------------------------------------------------------------- accuracy


def accuracy_part(a, work: Path) -> list[dict]:
    import openvino as ov

    from corese_edge.data.calibration import CalibrationBatches, calibration_batches, calibration_samples
    from corese_edge.data.layouts import load_index, stratified_split
    from corese_edge.export.onnx_fp32 import export_onnx
    from corese_edge.model.checkpoint import load_checkpoint

    ckpt = load_checkpoint(a.checkpoint)
    prep = ckpt.preprocessing
    index = load_index(a.data)
    # the export pipeline's split (pipeline._load_data) and calibration choice (_calibration_paths)
    seed = int(ckpt.config.get("seed", 0))
    pool, selection = stratified_split(index.split("train"), float(ckpt.config.get("val_fraction") or 0.1), seed)
    calib = CalibrationBatches([s.path for s in calibration_samples(pool, a.calib_size, seed)], prep, 8)
    test = index.split("test")
    x_test = np.concatenate(list(calibration_batches([s.path for s in test], prep, 64)))
    y_test = np.asarray([s.label for s in test])
    x_sel = np.concatenate(list(calibration_batches([s.path for s in selection], prep, 64)))
    y_sel = np.asarray([s.label for s in selection])
    fp32 = export_onnx(ckpt, work / "model.onnx")
    print(f"accuracy: {ckpt.variant} {prep.size} px, {calib.num_images} calibration images, "
          f"{len(y_test)} test images, {len(y_sel)} validation images", flush=True)
    names = a.candidates or (list(NNCF_CANDIDATES) + ["nncf-ac", "qdq-u8s8", "qdq-s8s8", "qdq-s8s8-fp32"])
    built = build_candidates(fp32, work, calib, names, a.calib_size, validation=(x_sel, y_sel), max_drop_pp=a.max_drop_pp)
    ref = ort_fn(fp32, a.threads)
    ref_logits = np.concatenate([ref(x_test[i:i + 64]) for i in range(0, len(x_test), 64)])
    ref_top1 = ref_logits.argmax(1)
    ref_acc = float((ref_top1 == y_test).mean())
    rows = [{"path": "ort-fp32 (reference)", "accuracy": 100 * ref_acc, "drop_pp": 0.0, "agree": 100.0, "build_s": 0.0,
             "quantized": 0, "logit_err": 0.0}]
    core = ov.Core()
    evals = [(name, xml, secs, None) for name, (xml, secs) in built.items()]
    evals.insert(1, ("ov-float f32 forced", built["ov-float"][0], 0.0, "f32"))
    for name, xml, secs, precision in evals:
        compiled, fn = compile_ov(core, xml, a.threads, precision)
        runs_at = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        logits = np.concatenate([fn(x_test[i:i + 64]) for i in range(0, len(x_test), 64)])
        top1 = logits.argmax(1)
        acc = float((top1 == y_test).mean())
        from corese_edge.export.openvino import quantized_layers

        rows.append({"path": f"{name} ({runs_at})", "accuracy": 100 * acc, "drop_pp": 100 * (ref_acc - acc),
                     "agree": 100 * float((top1 == ref_top1).mean()), "build_s": secs,
                     "logit_err": float(np.abs(logits - ref_logits).mean() / ref_logits.std()),
                     "quantized": quantized_layers(core.read_model(str(xml)))})
    print("\n| path (runs at) | test top-1 % | drop vs ORT FP32 (pp) | top-1 agreement with ORT FP32 % "
          "| mean abs logit error / logit std | FakeQuantize ops | build s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['path']} | {r['accuracy']:.2f} | {r['drop_pp']:+.2f} | {r['agree']:.1f} | {r['logit_err']:.4f} "
              f"| {r['quantized']} | {r['build_s']:.1f} |")
    return rows


# ----------------------------------------------------------------------------------- latency


def latency_part(a, work: Path) -> list[dict]:
    import openvino as ov

    from corese_edge.bench.suite import make_checkpoint
    from corese_edge.export.onnx_fp32 import export_onnx

    core = ov.Core()
    rng = np.random.default_rng(0)
    results = []
    for variant in a.variants:
        vdir = work / variant
        vdir.mkdir()
        ckpt = make_checkpoint(variant, vdir / f"{variant}.pt", a.img_size)
        fp32 = export_onnx(ckpt, vdir / "model.onnx")
        calib = [rng.uniform(-1, 1, (1, 3, a.img_size, a.img_size)).astype(np.float32) for _ in range(a.latency_calib)]
        built = build_candidates(fp32, vdir, calib, a.latency_candidates or LATENCY_CANDIDATES, a.latency_calib)
        fns = {"ort-fp32": ort_fn(fp32, a.threads)}
        for name, (xml, _) in built.items():
            fns[name] = compile_ov(core, xml, a.threads)[1]
        for batch in (1, 8):
            x = rng.uniform(-1, 1, (batch, 3, a.img_size, a.img_size)).astype(np.float32)
            times: dict[str, list[float]] = {n: [] for n in fns}
            top1 = {n: fn(x).argmax(1) for n, fn in fns.items()}  # also the warm-up
            for n in fns:
                fns[n](x)
            order = list(fns)
            for _ in range(a.rounds):
                random.shuffle(order)
                for n in order:
                    for _ in range(a.per_round):
                        t = time.perf_counter()
                        fns[n](x)
                        times[n].append(1000 * (time.perf_counter() - t))
            p50 = {n: statistics.median(v) for n, v in times.items()}
            for n in fns:
                results.append({"model": variant, "batch": batch, "path": n, "p50_ms": p50[n],
                                "vs_ort_fp32": p50["ort-fp32"] / p50[n], "vs_ov_float": p50["ov-float"] / p50[n],
                                "queries": len(times[n]),
                                "same_top1_as_ort": bool((top1[n] == top1["ort-fp32"]).all())})
            print(f"{variant} batch {batch} done (load {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n| model | batch | path | p50 ms | vs ORT FP32 | vs OpenVINO float IR | queries |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['model']} | {r['batch']} | {r['path']} | {r['p50_ms']:.1f} | {r['vs_ort_fp32']:.2f}x | "
              f"{r['vs_ov_float']:.2f}x | {r['queries']} |")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="a trained run's checkpoint (accuracy part); omit to skip it")
    ap.add_argument("--data", help="its dataset (default: the one the checkpoint records)")
    ap.add_argument("--calib-size", type=int, default=512, help="calibration images (export's --calib-size default)")
    ap.add_argument("--max-drop-pp", type=float, default=0.5, help="nncf-ac's limit (export's --max-drift default)")
    ap.add_argument("--variants", nargs="*", default=["coresse", "coresse-lite"], help="latency models; none to skip")
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--latency-calib", type=int, default=16, help="random calibration inputs for the latency models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--per-round", type=int, default=3)
    ap.add_argument("--candidates", nargs="*", help="accuracy candidates (default: all)")
    ap.add_argument("--latency-candidates", nargs="*", help="latency candidates (default: %s)" % " ".join(LATENCY_CANDIDATES))
    ap.add_argument("--json", help="also write the rows here")
    a = ap.parse_args()
    import nncf
    import openvino as ov

    from corese_edge.export.openvino import device_float_precision

    machine = machine_info()
    print(f"machine: {describe(machine)}")
    print(f"cpu: {machine['host']['cpu']}; flags: {cpu_flags_line()}")
    print(f"openvino {ov.get_version()}, nncf {nncf.__version__}; float IR runs at {device_float_precision()} here; "
          f"threads {a.threads}; load {os.getloadavg()[0]:.1f}", flush=True)
    out: dict = {"schema": "corese-edge/ov-int8-routes/1", "machine": describe(machine), "flags": cpu_flags_line()}
    with tempfile.TemporaryDirectory(prefix="ov-int8-routes-") as tmp:
        if a.checkpoint:
            if not a.data:
                from corese_edge.model.checkpoint import load_checkpoint

                a.data = (load_checkpoint(a.checkpoint).dataset or {}).get("root")
            (Path(tmp) / "acc").mkdir()
            out["accuracy"] = accuracy_part(a, Path(tmp) / "acc")
        if a.variants:
            (Path(tmp) / "lat").mkdir()
            out["latency"] = latency_part(a, Path(tmp) / "lat")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
