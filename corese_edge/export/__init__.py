"""Export: ONNX FP32 -> FP16 / INT8 Q/DQ -> drift report -> TensorRT engine (each a small stage).

Public API::

    from corese_edge.export import ExportConfig, make_export_config, run_export, build_engine

Modules, one job each: ``config`` (ExportConfig, make_export_config), ``datasets`` (checkpoint,
splits, calibration images), ``stages`` (prepare_export and the ``stage_*`` functions over one
``ExportState``, each returning a frozen result of ``results``), ``pipeline`` (run_export, the
composition; it re-exports the stages), ``comparator`` (Comparator.run / RunResults: every artifact
through the runtime's runners), ``parity``, ``cpu_best`` (the ``--target cpu-best`` stage),
``record`` (the one writer of export.json and the drift report).

Stage modules (each usable alone): ``onnx_fp32`` (export_onnx, read_metadata), ``fp16``
(convert_fp16, keep_sensitive_ops_if_better), ``int8`` (prepare_for_quantization, calibrate,
quantize_int8, to_fp16_qdq, weakly_typed_qdq, Int8Policy), ``modelopt`` (quantize_modelopt),
``drift`` (DriftReport, DriftGateFailed), ``tensorrt`` (build_engine), ``embed``
(embed_preprocess), ``census`` (precision_census), ``targets`` (the capability table),
``profiles`` (export/NAME.yaml).
"""
from __future__ import annotations

from typing import Any

from corese_edge.export.pipeline import ExportConfig, ExportResult, make_export_config, run_export

__all__ = ["ExportConfig", "ExportResult", "make_export_config", "run_export", "build_engine", "DriftReport",
           "DriftGateFailed"]


def __getattr__(name: str) -> Any:
    if name == "build_engine":
        from corese_edge.export.tensorrt import build_engine

        return build_engine
    if name in ("DriftReport", "DriftGateFailed"):
        from corese_edge.export import drift

        return getattr(drift, name)
    raise AttributeError(f"module 'corese_edge.export' has no attribute {name!r}")
