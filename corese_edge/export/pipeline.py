"""``corese-edge export``: checkpoint -> ONNX FP32 -> FP16 / INT8 Q/DQ -> drift report -> TensorRT engine.

:func:`run_export` is the composition of the stages; each lives where its job is:

- :mod:`~corese_edge.export.config`: :class:`ExportConfig` and :func:`make_export_config` (a
  profile, ``export/NAME.yaml``, under explicit options, exactly as the CLI does);
- :mod:`~corese_edge.export.datasets`: the checkpoint, the dataset's splits and the calibration images;
- :mod:`~corese_edge.export.stages`: :func:`prepare_export` and the ``stage_*`` functions, each
  returning a frozen result (:mod:`~corese_edge.export.results`);
- :mod:`~corese_edge.export.int8`: the INT8 policy (:class:`~corese_edge.export.int8.Int8Policy`);
- :mod:`~corese_edge.export.comparator`: every artifact run through the runtime's runners;
- :mod:`~corese_edge.export.cpu_best`: the ``--target cpu-best`` stage;
- :mod:`~corese_edge.export.record`: the one writer of export.json and the drift report.

::

    from corese_edge.export import make_export_config, run_export
    result = run_export(make_export_config(profile="desktop-int8", checkpoint="runs/x/swa_final.pt"))
    print(result.table)

    # or stage by stage
    from corese_edge.export.pipeline import prepare_export, stage_fp32, stage_int8
    state = prepare_export(make_export_config(checkpoint="runs/x/swa_final.pt", int8=True))
    stage_fp32(state); int8 = stage_int8(state); state.close()

Images: the drift report runs on ``--val-split`` (test by default; nothing is chosen on it).
Every choice the export makes (FP16 ops kept in FP32, ``--auto-keep`` layers) is made on the
validation split carved from train; calibration images come from the rest of train (or from
``--calib-data``), never from test.
"""
from __future__ import annotations

from typing import Callable

from corese_edge.export.config import ExportConfig, make_export_config
from corese_edge.export.cpu_best import CPU_CANDIDATES, stage_cpu_best
from corese_edge.export.datasets import newest_checkpoint
from corese_edge.export.parity import PARITY_MAX_ABS_LOGIT_DIFF, PARITY_MIN_IMAGES, ParityError
from corese_edge.export.record import EXPORT_SCHEMA
from corese_edge.export.results import ExportResult
from corese_edge.export.stages import (OPENVINO_INT8_ROUTES, SELECTION_IMAGES, SENSITIVITY_IMAGES, ExportState,
                                       prepare_export, stage_drift, stage_embed, stage_engine, stage_fp16, stage_fp32,
                                       stage_int8, stage_openvino, stage_write)

__all__ = [
    "CPU_CANDIDATES", "EXPORT_SCHEMA", "OPENVINO_INT8_ROUTES", "PARITY_MAX_ABS_LOGIT_DIFF", "PARITY_MIN_IMAGES",
    "SELECTION_IMAGES", "SENSITIVITY_IMAGES", "ExportConfig", "ExportResult", "ExportState", "ParityError",
    "make_export_config", "newest_checkpoint", "prepare_export", "run_export", "stage_cpu_best", "stage_drift",
    "stage_embed", "stage_engine", "stage_fp16", "stage_fp32", "stage_int8", "stage_openvino", "stage_write",
]


def run_export(cfg: ExportConfig, echo: Callable[[str], None] | None = None) -> ExportResult:
    """Run every export stage for ``cfg``; return what was written.

    Raises :class:`~corese_edge.export.drift.DriftGateFailed` (files kept, report marked failed)
    when an artifact drops more than ``cfg.max_drift`` pp (for ``--target cpu-best``: only when
    no candidate passed; the others are simply not chosen), and
    :class:`~corese_edge.export.tensorrt.EngineUnavailable` when ``cfg.engine`` is True and no
    engine can be built here.  ``echo`` receives the closing table and notes (default: the log).
    """
    state = prepare_export(cfg)
    target = state.target
    try:
        stage_fp32(state)
        if cfg.fp16:
            stage_fp16(state)
        if cfg.int8 and target.writes_onnx_int8(cfg.quantizer):
            stage_int8(state)
        if cfg.embed_preprocess:
            stage_embed(state)
        if target.openvino:
            stage_openvino(state)
    finally:
        state.close()  # intermediates go before the (long) validation
    gate = stage_drift(state)
    stage_engine(state)
    if target.chooses_fastest:  # the gate becomes the choice: only no passing candidate fails
        gate = stage_cpu_best(state)
    result = stage_write(state, echo)
    gate.check()
    return result
