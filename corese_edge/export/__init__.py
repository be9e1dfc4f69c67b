"""Export: ONNX FP32 -> FP16 / INT8 Q/DQ -> drift report -> TensorRT engine (each a small stage).

Public API::

    from corese_edge.export import ExportConfig, make_export_config, run_export, build_engine

Pipeline stages over one ``ExportState`` (each callable alone, ``corese_edge.export.pipeline``):
``prepare_export``, ``stage_fp32``, ``stage_fp16``, ``stage_int8``, ``stage_embed``,
``stage_drift``, ``stage_engine``, ``stage_write``.

Stage modules (each usable alone): ``onnx_fp32`` (export_onnx, read_metadata), ``fp16``
(convert_fp16), ``int8`` (prepare_for_quantization, calibrate, quantize_int8, to_fp16_qdq,
weakly_typed_qdq), ``modelopt``
(quantize_modelopt), ``drift`` (DriftReport, DriftGateFailed), ``tensorrt`` (build_engine),
``embed`` (embed_preprocess), ``census`` (precision_census), ``targets`` (the capability table),
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
