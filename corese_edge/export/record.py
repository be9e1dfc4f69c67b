"""The one writer of export.json and the drift report files, from the stage results.

:func:`write_export` gathers the results on an :class:`~corese_edge.export.stages.ExportState`:
their artifacts, their notes (in stage order, also written into the drift report), the stage
sections of export.json (:func:`stage_sections`) and the closing table.  No stage writes these
files itself.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable

from corese_edge.atomic import write_json
from corese_edge.config import config_to_dict

log = logging.getLogger(__name__)

EXPORT_SCHEMA = "corese-edge/export/1"


def stage_sections(state) -> dict[str, Any]:
    """export.json's stage sections from the results on ``state``, in stage order: ``parity``,
    ``fp16``, ``calibration``, ``auto_keep``, ``int8``, ``embed_preprocess``, ``openvino``,
    ``cpu_best`` (each only when its stage ran)."""
    sections: dict[str, Any] = {}
    if state.fp32 is not None:
        sections["parity"] = dict(state.fp32.parity)
    if state.fp16 is not None:
        sections["fp16"] = {"keep_fp32_ops": list(state.fp16.keep_fp32_ops)}
    int8 = state.int8
    if int8 is not None:
        sections["calibration"] = dict(int8.calibration)
        if int8.auto_keep is not None:
            sections["auto_keep"] = dict(int8.auto_keep)
        sections["int8"] = {"high_precision": int8.high_precision, "keep_fp32_ops": list(int8.keep_fp32_ops),
                            "keep_fp32_nodes": list(int8.kept), "opset": int8.opset}
        if int8.reasons:  # why each FP32 layer or op type is FP32
            sections["int8"]["keep_fp32_reasons"] = dict(int8.reasons)
    if state.embed is not None:
        sections["embed_preprocess"] = dict(state.embed.check)
    ov = state.openvino
    if ov is not None:
        if ov.calibration is not None:
            sections.setdefault("calibration", dict(ov.calibration))
        sections["openvino"] = dict(ov.section)
    if state.cpu_best is not None:
        sections["cpu_best"] = state.cpu_best.section()
    return sections


def write_export(state, echo: Callable[[str], None] | None = None):
    """drift_report.{json,md,png}, export.json and the closing table (to ``echo``, default the log).
    Returns the :class:`~corese_edge.export.results.ExportResult`; does not raise on a failed gate."""
    from corese_edge.atomic import file_sha256
    from corese_edge.export.drift import summary_table
    from corese_edge.export.results import ExportResult

    say = echo or log.info
    if state.drift is None:
        raise RuntimeError("the drift report is missing: run stage_drift first")
    cfg, report, artifacts, notes = state.cfg, state.drift.report, state.artifacts, state.notes
    engine = state.engine
    engines = dict(engine.builds) if engine is not None else {}
    report.notes[:] = notes
    report.write(state.out)
    rows = []
    for name, path in artifacts.items():
        entry = report.artifacts.get(name)
        acc = f"{entry['accuracy']:.2%}" if entry else "-"
        drop = f"{entry['accuracy_drop_pp']:+.2f} pp" + ("" if entry["passed"] else " FAIL") if entry else "-"
        ran = " ".join(str(entry[k]) for k in ("backend", "precision") if entry.get(k)) if entry else "-"
        rows.append((name, path.name, ran, _size(*_files_of(path)), acc, drop))
    table = summary_table(rows, ("artifact", "file", "ran as", "size", "accuracy", "drop"))
    ckpt, data = state.ckpt, state.data
    record = {
        "schema": EXPORT_SCHEMA,
        "config": config_to_dict(state.resolved),
        "versions": _tool_versions() | ({"tensorrt": engine.trt_version} if engines else {}),
        "platform": {"system": _platform_name(), "machine": platform.machine(), "python": sys.version.split()[0]},
        "checkpoint": {"path": os.fspath(state.ckpt_path), "sha256": file_sha256(state.ckpt_path), "model": ckpt.variant,
                       "class_names": list(ckpt.class_names), "preprocessing": state.prep.to_dict()},
        "dataset": {"root": data.root, "layout": data.layout, "evaluation_split": cfg.val_split,
                    "evaluation_images": len(data.evaluation)},
        "target": dataclasses.asdict(state.target),
        "artifacts": {name: _artifact_record(path, file_sha256) for name, path in artifacts.items()},
        "kept_fp": list(state.kept),
        "drift": {"passed": report.passed, "failed": report.failed, "max_drift_pp": cfg.max_drift},
        "engines": {p: {"plan": e.plan.name, "sidecar": e.sidecar.name} for p, e in engines.items()},
        "census": dict(state.drift.census),
        "notes": notes,
        **stage_sections(state),
    }
    write_json(state.out / "export.json", record)
    say(table)
    for note in notes:
        say(note)
    for result in state.results:
        for line in getattr(result, "closing", ()):
            say(line)
    return ExportResult(state.out, state.resolved, artifacts, report, engines, notes, state.kept, table,
                        state.cpu_best.choice if state.cpu_best is not None else None)


def _tool_versions() -> dict[str, str | None]:
    from importlib import metadata

    from corese_edge import __version__

    versions: dict[str, str | None] = {"corese-edge": __version__, "python": platform.python_version()}
    for dist in ("torch", "timm", "onnx", "onnxruntime", "onnxconverter-common", "numpy", "nvidia-modelopt", "tensorrt",
                 "openvino", "nncf"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def _platform_name() -> str:
    """``platform.platform()``'s text without its ``uname -p`` subprocess (iterating ``platform.uname()``
    runs ``uname -p`` for the processor field): a subprocess costs a fork for a field nobody reads.
    (The SIGSEGV once seen here came when that child exited, from OpenVINO's signal stack;
    docs/ARCHITECTURE.md, "The OpenVINO signal-stack crash".)"""
    libc, version = platform.libc_ver()
    return "-".join(p for p in (platform.system(), platform.release(), platform.machine(),
                                f"with-{libc}{version}" if libc else "") if p)


def _files_of(path: Path) -> tuple[Path, ...]:
    """The files an artifact is made of: an OpenVINO IR is its .xml and the .bin beside it."""
    return (path, path.with_suffix(".bin")) if path.suffix == ".xml" else (path,)


def _artifact_record(path: Path, sha256: Callable[[Path], str]) -> dict[str, Any]:
    """export.json's entry for an artifact; an IR's ``bytes`` count both files, its ``weights`` name the .bin."""
    files = _files_of(path)
    record: dict[str, Any] = {"file": path.name, "bytes": sum(f.stat().st_size for f in files), "sha256": sha256(path)}
    if len(files) > 1:
        record["weights"] = {"file": files[1].name, "bytes": files[1].stat().st_size, "sha256": sha256(files[1])}
    return record


def _size(*paths: Path) -> str:
    """Decimal units (1 MB = 10**6 bytes), as `bench --compare` reports them; the sum of ``paths``."""
    n = float(sum(p.stat().st_size for p in paths))
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
