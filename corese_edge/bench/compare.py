"""``corese-edge bench --compare EXPORT_DIR``: one table over every artifact of an export folder.

Columns: format, precision, size (MB), the share of FLOPs that runs in INT8 on TensorRT (the
precision census, :mod:`corese_edge.export.census`), accuracy and its drop from FP32 (read from the
export's ``drift_report.json``), p50 latency at batch 1, and the best throughput with its batch.
Artifacts this machine cannot run (a ``.plan`` without a GPU or TensorRT) keep a row that says why.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corese_edge.bench.machine import describe, machine_info
from corese_edge.bench.timing import SCHEMA
from corese_edge.errors import UserError
from corese_edge.machine import format_isa
from corese_edge.timing import BenchSettings, benchmark_runner

log = logging.getLogger(__name__)

COMPARE_SCHEMA = "corese-edge/bench-compare/1"
SUFFIX_KIND = {".onnx": "onnx", ".plan": "trt", ".engine": "trt", ".xml": "openvino"}
FORMAT_OF_KIND = {"onnx": "onnx", "trt": "tensorrt", "openvino": "openvino"}


@dataclass(frozen=True)
class ArtifactEntry:
    name: str  # drift-report key: onnx-fp32, onnx-fp16, onnx-int8, trt-fp16, trt-int8, openvino-float, openvino-int8 ...
    path: Path
    format: str
    precision: str


def find_artifacts(export_dir: str | os.PathLike) -> list[ArtifactEntry]:
    """The models in an export folder, named as the drift report names them.

    An OpenVINO IR is an ``.xml`` with its ``.bin`` beside it (other XML files are not models);
    the float IR is ``openvino-float`` (it runs at the device's float precision, known only once
    compiled: the row's precision is then what OpenVINO reports), the INT8 IR ``openvino-int8``.
    """
    from corese_edge.runtime.ort import precision_from_name

    root = Path(export_dir)
    if not root.is_dir():
        raise UserError(f"export folder not found: {root}")
    out = []
    for p in sorted(root.iterdir()):
        kind = SUFFIX_KIND.get(p.suffix.lower())
        if kind is None or not p.is_file() or p.name.startswith("."):
            continue
        if kind == "openvino" and not p.with_suffix(".bin").is_file():
            continue
        precision = precision_from_name(p)
        if kind == "openvino" and precision == "fp32":
            precision = "float"
        name = f"{kind}-{precision}"
        extra = [part for part in p.name.lower().split(".")[1:-1] if part not in (precision,)]
        if extra:  # e.g. model.embed.onnx: keep it apart from the plain fp32 graph
            name += "-" + "-".join(extra)
        out.append(ArtifactEntry(name, p, FORMAT_OF_KIND[kind], precision))
    if not out:
        raise UserError(f"{root} holds no .onnx, .plan or OpenVINO .xml files: point --compare at an export folder")
    return out


def read_drift(export_dir: Path) -> dict[str, Any]:
    path = export_dir / "drift_report.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def read_export_census(export_dir: Path) -> dict[str, Any]:
    """``export.json``'s ``census`` map (artifact name or file name -> census dict); {} when absent."""
    path = export_dir / "export.json"
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    census = record.get("census") if isinstance(record, dict) else None
    return census if isinstance(census, dict) else {}


def int8_flop_share(entry: ArtifactEntry, recorded: dict[str, Any]) -> float | None:
    """Fraction (0..1) of the artifact's FLOPs in INT8: from export.json's census (keyed by the
    artifact name or its file name), else a plan sidecar's ``census``, else computed from an ONNX
    graph.  None when it cannot be known here (a plan without a census, no ``onnx`` installed)."""
    census = recorded.get(entry.name) or recorded.get(entry.path.name)
    if census is None and entry.format == "tensorrt":
        try:
            sidecar = json.loads(entry.path.with_name(entry.path.name + ".json").read_text())
        except (OSError, ValueError):
            sidecar = {}
        census = sidecar.get("census") if isinstance(sidecar, dict) else None
    if census is None and entry.format == "onnx":
        try:
            from corese_edge.export.census import precision_census

            return precision_census(entry.path).int8_flop_share
        except UserError as exc:  # onnx not installed, or not a readable graph
            log.info("%s: no precision census (%s)", entry.path, exc)
            return None
    if isinstance(census, dict) and isinstance(census.get("int8_flop_share"), (int, float)):
        return float(census["int8_flop_share"])
    return None


def compare_export(
    export_dir: str | os.PathLike,
    settings: BenchSettings,
    runner_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Benchmark every artifact at ``settings.batches``; returns the compare document."""
    from corese_edge.runtime.artifacts import open_runner

    root = Path(export_dir)
    entries = find_artifacts(root)
    drift = read_drift(root)
    drift_artifacts = drift.get("artifacts", {}) if isinstance(drift, dict) else {}
    recorded_census = read_export_census(root)
    machine = machine_info()
    rows, results = [], []
    for entry in entries:
        size = entry.path.stat().st_size
        if entry.format == "openvino":  # the IR's weights live in the .bin
            size += entry.path.with_suffix(".bin").stat().st_size
        row: dict[str, Any] = {
            "name": entry.name,
            "file": entry.path.name,
            "format": entry.format,
            "precision": entry.precision,
            "size_mb": round(size / 1e6, 2),
            "int8_flop_share": int8_flop_share(entry, recorded_census),
        }
        d = drift_artifacts.get(entry.name) or drift_artifacts.get(entry.name.replace("trt-", "tensorrt-"))
        if isinstance(d, dict):
            if "accuracy" in d:
                row["accuracy"] = d["accuracy"]
            if "accuracy_drop_pp" in d:
                row["accuracy_drop_pp"] = d["accuracy_drop_pp"]
        runner = None
        try:
            runner = open_runner(entry.path, **(runner_options or {}))
            runner.activate()
            row["precision"] = runner.precision  # what ran (OpenVINO: bf16 or fp32 for the float IR)
            if getattr(runner, "execution", None):
                row["execution"] = dict(runner.execution)  # type: ignore[attr-defined]
            ran = []
            for b in settings.batches:
                if runner.max_batch is not None and b > runner.max_batch:
                    continue
                r = benchmark_runner(runner, int(b), settings)
                r["name"] = entry.name
                ran.append(r)
            results += ran
            b1 = [r for r in ran if r["batch"] == 1]
            if b1:
                row["p50_ms_batch1"] = b1[0]["latency_ms"]["median"]
            if ran:
                best = max(ran, key=lambda r: r["throughput_ips"])
                row["best_ips"] = best["throughput_ips"]
                row["best_batch"] = best["batch"]
            row["status"] = "ok"
        except UserError as exc:
            row["status"] = f"not run: {exc}"
            log.info("%s: %s", entry.path, exc)
        finally:
            if runner is not None:
                runner.close()
        rows.append(row)
    return {
        "schema": COMPARE_SCHEMA,
        "bench_schema": SCHEMA,
        "export_dir": str(root),
        "device": machine,
        "machine": describe(machine),
        "settings": settings.to_dict(),
        "drift_reference": drift.get("reference") if isinstance(drift, dict) else None,
        "rows": rows,
        "results": results,
    }


def run_compare(
    export_dir: str | os.PathLike,
    settings: BenchSettings,
    runner_options: dict[str, Any] | None = None,
    json_path: str | os.PathLike | None = None,
) -> tuple[dict[str, Any], Path, Path | None]:
    """:func:`compare_export`, then write the JSON (default ``<export_dir>/bench_compare.json``) and
    the latency-vs-batch plot beside it.  Returns (document, json path, plot path or None)."""
    from corese_edge.bench.report import plot_vs_batch, series_from_results, write_report

    doc = compare_export(export_dir, settings, runner_options)
    out = Path(json_path) if json_path else Path(export_dir) / "bench_compare.json"
    write_report(out, doc)
    series = series_from_results(doc["results"], label_keys=("name",))
    plot = None
    if series:
        plot = plot_vs_batch(series, out.with_suffix(".png"),
                             f"{export_dir}: latency and throughput vs batch ({doc['machine']})")
    return doc, out, plot


def format_compare(doc: dict[str, Any]) -> str:
    def fmt(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    isa = (doc.get("device") or {}).get("host", {}).get("cpu_isa")
    lines = [f"machine: {doc['machine']}"] + ([f"cpu flags: {format_isa(isa)}"] if isa else []) + [
             f"{'artifact':18} {'format':9} {'prec':5} {'MB':>8} {'INT8 FLOPs':>10} {'acc %':>7} {'drop pp':>8} {'p50 b1 ms':>10} {'best img/s':>11} {'@batch':>6}  status"]
    for r in doc["rows"]:
        acc = r.get("accuracy")
        if isinstance(acc, (int, float)) and acc <= 1.0:
            acc = acc * 100.0  # drift reports may store a fraction
        share = r.get("int8_flop_share")
        share = f"{100 * share:.1f}%" if isinstance(share, (int, float)) else "-"
        lines.append(
            f"{r['name']:18} {r['format']:9} {r['precision']:5} {r['size_mb']:>8.2f} {share:>10} {fmt(acc, '7.2f'):>7} "
            f"{fmt(r.get('accuracy_drop_pp'), '8.2f'):>8} {fmt(r.get('p50_ms_batch1'), '10.3f'):>10} "
            f"{fmt(r.get('best_ips'), '11.1f'):>11} {fmt(r.get('best_batch'), 'd'):>6}  {r['status']}"
        )
    return "\n".join(lines)
