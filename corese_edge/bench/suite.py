"""The benchmark suite behind ``python benchmarks/run.py`` and ``corese-edge bench --suite``.

It runs the matrix backends x precisions x batch sizes for ``coresse`` and ``coresse-lite``,
appends the results, with the machine, to ``<out>/results/<machine>.json`` and regenerates
``<out>/RESULTS.md`` (tables and plots under ``<out>/results/plots``) from every results file.
``<out>`` is the folder the caller names (``--out``); by default ``benchmarks`` under the current
directory, which from a source checkout's root is the tracked ``benchmarks/`` folder.  Nothing is
written into the installed package.

Speed does not depend on the weights, so the models are randomly initialised (no download); the
INT8 model is ONNX Runtime's CPU flavour (U8S8 Q/DQ, ``quantize_static``) calibrated on random
inputs, which fixes its speed but says nothing of its accuracy (the export's drift report does).
Combinations this machine cannot run (TensorRT without a GPU, FP16 kernels ONNX Runtime's CPU
provider lacks, OpenVINO without the ``openvino`` extra) are listed with the reason, never timed
or invented.

OpenVINO rows (when ``openvino`` imports): the float IR converted from the suite's ONNX and
OpenVINO reading that ONNX directly, both at the device's default inference precision (BF16 on a
CPU with AMX or AVX-512-BF16), and OpenVINO reading the INT8 Q/DQ ONNX; each result's precision
is what OpenVINO reports after compiling, never assumed.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from corese_edge.atomic import write_json, write_text
from corese_edge.bench.machine import describe, machine_info, machine_slug
from corese_edge.errors import UserError
from corese_edge.timing import BenchSettings, benchmark_runner

log = logging.getLogger(__name__)

RESULTS_SCHEMA = "corese-edge/bench-results/1"
#: the results folder unless the caller names one: relative, so it resolves against the current
#: directory when written (the package's own location is never a default: it may be site-packages)
DEFAULT_OUT = Path("benchmarks")


def output_paths(out: str | os.PathLike = DEFAULT_OUT) -> tuple[Path, Path]:
    """``(out/results, out/RESULTS.md)``: the per-machine JSON files (plots in ``results/plots``)
    and the page rendered from them."""
    out = Path(out)
    return out / "results", out / "RESULTS.md"


DEFAULT_RESULTS, DEFAULT_MARKDOWN = output_paths()


@dataclass(frozen=True)
class SuiteConfig:
    models: tuple[str, ...] = ("coresse", "coresse-lite")
    backends: tuple[str, ...] = ("ort", "openvino", "torch", "trt")
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    batches: tuple[int, ...] = (1, 8)
    warmup_ms: float = 200.0
    duration_s: float = 1.0
    min_iterations: int = 5
    threads: int | None = None
    img_size: int = 224
    calib_images: int = 8
    results_dir: str = str(DEFAULT_RESULTS)
    markdown: str = str(DEFAULT_MARKDOWN)
    work_dir: str | None = None
    notes: str = ""


# -- model preparation ---------------------------------------------------------------------------
def make_checkpoint(variant: str, out: Path, img_size: int = 224, num_classes: int = 7, seed: int = 0) -> Path:
    """A randomly initialised corese-edge checkpoint (for speed measurements only)."""
    import torch

    from corese_edge.model import CoResSE
    from corese_edge.model.checkpoint import Checkpoint
    from corese_edge.preprocessing import Preprocessing

    torch.manual_seed(seed)
    model = CoResSE(variant, num_classes)
    names = ["Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral"][:num_classes]
    ckpt = Checkpoint(
        path=None, variant=variant, num_classes=num_classes, se_mode="sample", class_names=names,
        preprocessing=Preprocessing(size=img_size), state_dict=model.state_dict(), kind="bench-random-init",
    )
    return ckpt.save(out)


def quantize_u8s8(onnx_in: Path, onnx_out: Path, calib: Sequence[np.ndarray]) -> Path:
    """The ``--target cpu`` INT8 (the export's own ``u8s8`` flavour: its op types, Q/DQ placement and
    options), calibrated with min-max on ``calib``; the corese-edge metadata is kept."""
    from corese_edge.export import int8 as int8_stage

    pre = onnx_out.with_name(onnx_out.stem + ".pre.onnx")
    ranges = onnx_out.with_name(onnx_out.stem + ".ranges.json")
    try:
        int8_stage.prepare_for_quantization(onnx_in, pre)
        int8_stage.calibrate(pre, int8_stage.StreamingCalibrationReader(list(calib)), ranges, "minmax", "u8s8")
        int8_stage.quantize_int8(pre, onnx_out, ranges, "u8s8", "minmax", metadata_from=onnx_in)
    finally:
        for tmp in (pre, ranges):
            if tmp.exists():
                tmp.unlink()
    return onnx_out


def prepare_models(variant: str, work: Path, img_size: int, calib_images: int, precisions: Iterable[str]) -> dict[str, Path]:
    """``{"checkpoint", "fp32", "fp16", "int8"}`` paths for ``variant`` (only what ``precisions`` need).

    The FP16 graph is the export's own (:func:`corese_edge.export.fp16.convert_fp16`), so that the
    untrained model's shared initializers are unshared as they are in a real export."""
    from corese_edge.export.fp16 import convert_fp16
    from corese_edge.export.onnx_fp32 import export_onnx

    work.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": make_checkpoint(variant, work / f"{variant}.pt", img_size)}
    paths["fp32"] = export_onnx(paths["checkpoint"], work / "model.onnx")
    if "fp16" in precisions:
        paths["fp16"] = convert_fp16(paths["fp32"], work / "model.fp16.onnx")
    if "int8" in precisions:
        rng = np.random.default_rng(0)
        calib = [rng.uniform(-1, 1, (1, 3, img_size, img_size)).astype(np.float32) for _ in range(calib_images)]
        paths["int8"] = quantize_u8s8(paths["fp32"], work / "model.int8.onnx", calib)
    return paths


# -- the matrix ----------------------------------------------------------------------------------
def trt_unavailable_reason() -> str | None:
    """Why TensorRT rows cannot run here, or None when a GPU and TensorRT are present."""
    from corese_edge.bench.machine import gpus

    found, why = gpus()
    if not found:
        return f"no NVIDIA GPU on this machine ({why})"
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "TensorRT (with its builder) is not installed; build engines on the target and use corese-edge bench --compare"
    return None


def openvino_runners(precision: str, paths: dict[str, Path], work: Path, threads: int | None) -> tuple[list[Any], str | None]:
    """The OpenVINO rows of one precision: ``(runners, None)`` or ``([], why not)``.

    fp32: the float IR converted from the suite's ONNX (:func:`corese_edge.export.openvino.ir_from_onnx`,
    FP32 weights), and OpenVINO reading that ONNX directly; both at the device's default inference
    precision (BF16 on a CPU with AMX or AVX-512-BF16), which each result reports as its precision.
    int8: OpenVINO reading the suite's U8S8 Q/DQ ONNX directly.
    """
    from corese_edge.runtime.openvino import OpenVinoRunner

    if precision == "fp16":
        return [], ("OpenVINO picks the float precision per device: the fp32-source rows run at its default "
                    "(bf16 with AMX / AVX-512-BF16), reported as their precision")
    if precision == "int8":
        return [OpenVinoRunner(paths["int8"], threads=threads)], None
    from corese_edge.export.openvino import ir_from_onnx

    xml = work / "model.xml"
    if not xml.is_file():
        ir_from_onnx(paths["fp32"], xml)
    return [OpenVinoRunner(xml, threads=threads), OpenVinoRunner(paths["fp32"], threads=threads)], None


def run_suite(cfg: SuiteConfig = SuiteConfig(), progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the matrix, append it to the machine's results file, regenerate RESULTS.md."""
    from corese_edge.machine import format_isa
    from corese_edge.runtime.ort import OrtRunner
    from corese_edge.runtime.torch_runner import TorchRunner

    settings = BenchSettings(
        batches=tuple(cfg.batches), warmup_ms=cfg.warmup_ms, duration_s=cfg.duration_s,
        min_iterations=cfg.min_iterations, telemetry=True,
    )
    machine = machine_info()
    progress(f"machine: {describe(machine)}")
    progress(f"cpu flags: {format_isa(machine['host'].get('cpu_isa') or {})}")
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    trt_reason = trt_unavailable_reason() if "trt" in cfg.backends else None
    with tempfile.TemporaryDirectory(prefix="corese-suite-", dir=cfg.work_dir) as tmp:
        for variant in cfg.models:
            progress(f"[{variant}] preparing models (random init, {cfg.img_size} px)")
            paths = prepare_models(variant, Path(tmp) / variant, cfg.img_size, cfg.calib_images, cfg.precisions)
            for backend in cfg.backends:
                for precision in cfg.precisions:
                    reason = None
                    runner = None
                    runners: list[Any] = []
                    if backend == "ort":
                        runner = OrtRunner(paths[precision], providers="cpu", threads=cfg.threads)
                    elif backend == "openvino":
                        try:
                            runners, reason = openvino_runners(precision, paths, Path(tmp) / variant, cfg.threads)
                        except UserError as exc:  # no openvino (one line naming the extra), a failed conversion
                            reason = str(exc)
                    elif backend == "torch":
                        if precision == "fp16":
                            reason = "PyTorch eager FP16 is a CUDA path (benchmarks/gpu_backends.py)"
                        elif precision != "fp32":
                            reason = f"{precision} exists as ONNX / TensorRT artifacts only; PyTorch eager is the FP32 reference"
                        else:
                            runner = TorchRunner(paths["checkpoint"], threads=cfg.threads)
                    elif backend == "trt":
                        if precision == "fp32":
                            continue  # engines are built from the FP16 and INT8 graphs only
                        reason = trt_reason or "TensorRT rows need an engine built on this machine (corese-edge build-engine)"
                    else:
                        raise UserError(f"unknown backend {backend!r} (ort, openvino, torch, trt)")
                    if runner is not None:
                        runners = [runner]
                    for runner in runners:
                        try:
                            runner.activate()
                            for b in cfg.batches:
                                progress(f"[{variant}] {backend} {runner.precision} ({Path(runner.path).name}) batch {b}")
                                r = benchmark_runner(runner, int(b), settings)
                                r["model"] = variant
                                r["artifact"] = Path(r["artifact"]).name
                                results.append(r)
                        except UserError as exc:
                            reason = str(exc)
                        finally:
                            runner.close()
                    if reason is not None:
                        progress(f"[{variant}] {backend} {precision}: not run ({reason})")
                        skipped.append({"model": variant, "backend": backend, "precision": precision, "reason": reason})
    run = {
        "kind": "suite",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average": _load(),
        "settings": {**settings.to_dict(), "threads": cfg.threads, "img_size": cfg.img_size,
                     "weights": "random init (speed only)", "int8_flavour": "cpu (U8S8 Q/DQ, random calibration)"},
        "results": results,
        "not_run": skipped,
        "notes": cfg.notes,
    }
    path = append_run(cfg.results_dir, machine, run)
    render_markdown(cfg.results_dir, cfg.markdown)
    progress(f"results appended to {path}; {cfg.markdown} regenerated")
    return run


# -- results files and RESULTS.md ----------------------------------------------------------------
def _load() -> list[float] | None:
    """1, 5 and 15 minute load averages when the run was recorded (other jobs skew timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def append_run(results_dir: str | os.PathLike, machine: dict[str, Any], run: dict[str, Any]) -> Path:
    """Append ``run`` to ``results_dir/<machine slug>.json`` (created with the machine description)."""
    path = Path(results_dir) / f"{machine_slug(machine)}.json"
    if path.is_file():
        doc = json.loads(path.read_text())
    else:
        doc = {"schema": RESULTS_SCHEMA, "machine": machine, "description": describe(machine), "runs": []}
    doc["machine"] = machine
    doc["description"] = describe(machine)
    # the section header shows the latest machine record; each run keeps the versions it ran on
    doc["runs"].append({**run, "versions": run.get("versions", machine.get("versions", {}))})
    write_json(path, doc)
    return path


def _latest(runs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The latest run of ``kind`` per name (suite runs share one name)."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        if run.get("kind") == kind:
            out[run.get("name", kind)] = run
    return out


def render_markdown(results_dir: str | os.PathLike, markdown: str | os.PathLike) -> Path:
    """Regenerate RESULTS.md (and its plots under ``results_dir/plots``) from every results file."""
    from corese_edge.machine import format_isa
    from corese_edge.bench.report import plot_vs_batch, series_from_results

    results_dir, markdown = Path(results_dir), Path(markdown)
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python benchmarks/run.py` (or `corese-edge bench --suite`) and the ratio benchmarks in",
        "`benchmarks/` from the JSON files in `benchmarks/results/`; do not edit by hand.",
        "",
        "Metrics follow trtexec: latency is H2D + GPU compute + D2H on TensorRT and the host wall time of one",
        "inference call on ONNX Runtime and PyTorch; throughput is queries (images) over the total host wall time,",
        "one query in flight. p50 is the median; percentiles are trtexec's nearest-rank ones.",
        "",
        "Reading the CPU rows: ONNX Runtime's CPU provider has no fast FP16 kernels, so an FP16 graph is slower",
        "than FP32 there (FP16 is a GPU precision); the suite's INT8 is the CPU flavour (U8S8) with random",
        "calibration, which fixes its speed but not its accuracy (see the export's drift report). OpenVINO rows",
        "run at the device's default inference precision (bf16 on CPUs with AMX or AVX-512-BF16), and their",
        "precision column is what OpenVINO reports after compiling. A row marked",
        "\"not run\" was not measured on that machine; no number is ever filled in for it.",
        "",
    ]
    files = sorted(results_dir.glob("*.json")) if results_dir.is_dir() else []
    for f in files:
        doc = json.loads(f.read_text())
        if doc.get("schema") != RESULTS_SCHEMA:
            continue
        slug = f.stem
        lines += [f"## {doc['description']}", ""]
        versions = doc["machine"].get("versions", {})
        lines.append("Versions (of the latest run; a run made with others names them): "
                     + ", ".join(f"{k} {v}" for k, v in versions.items() if v) + ".")
        isa = doc["machine"].get("host", {}).get("cpu_isa")
        if isa:
            lines.append(f"CPU flags: {format_isa(isa)}.")
        if not doc["machine"].get("gpus"):
            lines.append(f"No GPU here ({doc['machine'].get('no_gpu_reason', 'none found')}): GPU and TensorRT rows were **not executed** on this machine; "
                         "`benchmarks/gpu_backends.py` records a GPU run (ONNX Runtime and PyTorch CUDA FP16, batch 1/8/64) on a machine that has one.")
        lines.append("")
        for name, run in _latest(doc["runs"], "suite").items():
            lines += _suite_section(run, slug, results_dir, plot_vs_batch, series_from_results, markdown.parent,
                                    header_versions=versions)
        ratio_runs = _latest(doc["runs"], "ratios")
        if ratio_runs:
            lines += ["### Ratios measured in one run", "",
                      "| benchmark | measurement | value | target | verdict | date |", "| --- | --- | --- | --- | --- | --- |"]
            for name, run in ratio_runs.items():
                for item in run["items"]:
                    lines.append(
                        f"| {name} | {item['what']} | {item['value']} | {item.get('target', '')} | "
                        f"{item.get('verdict', '')} | {run['date'][:10]} |"
                    )
            lines.append("")
            for name, run in ratio_runs.items():
                note = run.get("notes", "") + _versions_note(run, versions)
                if run.get("load_average"):
                    note += f" Load average when recorded: {', '.join(map(str, run['load_average']))} (1/5/15 min)."
                if note:
                    lines.append(f"*{name}*: {note.strip()}")
                    lines.append("")
        for name, run in _latest(doc["runs"], "gpu").items():
            lines += _suite_section(run, slug + "-gpu", results_dir, plot_vs_batch, series_from_results, markdown.parent,
                                    title="### GPU run", header_versions=versions)
    if not files:
        lines.append("No results recorded yet: run `python benchmarks/run.py`.")
    write_text(markdown, "\n".join(lines).rstrip() + "\n")
    return markdown


def _versions_note(run: dict[str, Any], header: dict[str, Any]) -> str:
    """`` Versions of this run: ...`` where they differ from the section header's; runs recorded
    before runs kept their own versions say that instead."""
    if "versions" not in run:
        return " Versions: not recorded with this run (only the machine's latest were kept then)."
    differ = {k: v for k, v in run["versions"].items() if v and header.get(k) != v}
    return (" Versions of this run: " + ", ".join(f"{k} {v}" for k, v in differ.items()) + ".") if differ else ""


def _suite_section(run, slug, results_dir, plot_vs_batch, series_from_results, md_dir, title="### Suite",
                   header_versions: dict[str, Any] | None = None) -> list[str]:
    header_versions = header_versions or {}
    s = run["settings"]
    lines = [
        f"{title} ({run['date'][:10]})",
        "",
        f"Settings: warm-up {s.get('warmup_ms')} ms, at least {s.get('duration_s')} s and {s.get('min_iterations')} "
        f"queries per point, threads {s.get('threads') or 'default'}, CUDA graph {s.get('cuda_graph')}, "
        f"transfers included {s.get('include_transfers')}, weights: {s.get('weights', 'n/a')}, INT8: {s.get('int8_flavour', 'n/a')}."
        + (f" Load average when recorded: {', '.join(map(str, run['load_average']))} (1/5/15 min)." if run.get("load_average") else "")
        + _versions_note(run, header_versions),
        "",
        "| model | backend | precision | batch | p50 ms | p90 ms | p99 ms | CV % | images/s | artifact |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in run["results"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r.get('model', '')} | {r['backend']} | {r['precision']} | {r['batch']} | {lat['median']:.2f} | "
            f"{lat['p90']:.2f} | {lat['p99']:.2f} | {lat['cv'] * 100:.1f} | {r['throughput_ips']:.1f} | {r.get('artifact', '')} |"
        )
    for r in run.get("not_run", []):
        lines.append(f"| {r['model']} | {r['backend']} | {r['precision']} | - | not run: {r['reason']} | | | | | |")
    lines.append("")
    if run.get("notes"):
        lines += [f"Notes: {run['notes']}", ""]
    plots = results_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    models = sorted({r.get("model", "") for r in run["results"]})
    for model in models:
        # the artifact tells apart OpenVINO's IR and ONNX rows, which share backend and precision
        series = series_from_results([r for r in run["results"] if r.get("model", "") == model],
                                     label_keys=("backend", "precision", "artifact"))
        if not series:
            continue
        out = plot_vs_batch(series, plots / f"{slug}-{model or 'model'}.png", f"{model}: latency and throughput vs batch")
        rel = os.path.relpath(out, md_dir)
        lines += [f"![{model} latency and throughput vs batch]({rel})", ""]
    return lines


def record_ratios(
    name: str,
    items: list[dict[str, Any]],
    notes: str = "",
    results_dir: str | os.PathLike = DEFAULT_RESULTS,
    markdown: str | os.PathLike = DEFAULT_MARKDOWN,
    machine: dict[str, Any] | None = None,
) -> Path:
    """Append a ratio benchmark (``items``: ``{"what", "value", "target", "verdict"}``) and re-render."""
    machine = machine if machine is not None else machine_info()
    run = {
        "kind": "ratios",
        "name": name,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average": _load(),
        "items": items,
        "notes": notes,
    }
    path = append_run(results_dir, machine, run)
    render_markdown(results_dir, markdown)
    return path


def record_gpu_run(results: list[dict[str, Any]], settings: dict[str, Any], not_run: list[dict[str, Any]] | None = None,
                   results_dir: str | os.PathLike = DEFAULT_RESULTS, markdown: str | os.PathLike = DEFAULT_MARKDOWN) -> Path:
    """Append a GPU benchmark run (bench results) and re-render RESULTS.md."""
    machine = machine_info()
    run = {
        "kind": "gpu",
        "name": "gpu",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average": _load(),
        "settings": settings,
        "results": results,
        "not_run": not_run or [],
    }
    path = append_run(results_dir, machine, run)
    render_markdown(results_dir, markdown)
    return path
