"""What each export stage returns (docs/ARCHITECTURE.md, "Stage results").

Every stage returns one frozen result; later stages read the typed fields of earlier ones, and the
one writer (:mod:`corese_edge.export.record`) turns them into export.json and the drift report.
Each result names the artifacts it wrote (``artifacts``: drift-report name -> file, in the order
they were made) and the lines the user should read (``notes``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Fp32Result:
    """``model.onnx``; ``parity`` is export.json's ``parity`` section; ``evaluated`` (a
    :class:`~corese_edge.export.comparator.RunResults`) holds the ``"reference"`` (PyTorch) and
    ``"onnx-fp32"`` runs on the ``--val-split`` images, which the drift report is judged against."""

    path: Path
    parity: Mapping[str, Any]
    evaluated: Any
    notes: tuple[str, ...] = ()

    @property
    def artifacts(self) -> dict[str, Path]:
        return {"onnx-fp32": self.path}

    @property
    def labels(self) -> np.ndarray:
        return self.evaluated.labels

    @property
    def logits(self) -> Mapping[str, np.ndarray]:
        return self.evaluated.logits


@dataclass(frozen=True)
class Fp16Result:
    """``model.fp16.onnx`` and the op types kept in FP32 (:data:`fp16.SENSITIVE_FP16_OPS` or none)."""

    path: Path
    keep_fp32_ops: tuple[str, ...]
    note: str | None = None

    @property
    def artifacts(self) -> dict[str, Path]:
        return {"onnx-fp16": self.path}

    @property
    def notes(self) -> tuple[str, ...]:
        return (self.note,) if self.note else ()


@dataclass(frozen=True)
class Int8Result:
    """``model.int8.onnx``: what it keeps in higher precision and why.

    ``high_precision``: what the layers that are not INT8 compute in (``fp16`` / ``fp32``);
    ``kept``: nodes in FP32 (``--keep-fp``, ``--auto-keep``); ``keep_fp32_ops``: op types in FP32;
    ``reasons``: why each of them is FP32; ``calibration``: export.json's ``calibration`` section;
    ``auto_keep``: its ``auto_keep`` section (None without ``--auto-keep``).
    """

    path: Path
    flavour: str
    quantizer: str
    high_precision: str
    kept: tuple[str, ...]
    keep_fp32_ops: tuple[str, ...]
    reasons: Mapping[str, str]
    opset: int
    calibration: Mapping[str, Any]
    auto_keep: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def artifacts(self) -> dict[str, Path]:
        return {"onnx-int8": self.path}


@dataclass(frozen=True)
class EmbedResult:
    """``--embed-preprocess``: the uint8-frames variants (``<name>-preprocess`` -> file) and the check."""

    paths: Mapping[str, Path]
    check: Mapping[str, Any]
    notes: tuple[str, ...] = ()

    @property
    def artifacts(self) -> dict[str, Path]:
        return dict(self.paths)


@dataclass(frozen=True)
class OpenVinoResult:
    """The OpenVINO IRs; ``section`` is export.json's ``openvino`` section (``{"skipped": why}``
    when the openvino extra is missing); ``int8_route`` is ``nncf`` or ``qdq`` (None without INT8);
    ``calibration`` is set only when NNCF calibrated and no ONNX INT8 stage described it."""

    float_ir: Path | None
    int8_ir: Path | None
    section: Mapping[str, Any]
    int8_route: str | None = None
    calibration: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()

    @property
    def artifacts(self) -> dict[str, Path]:
        found = {"openvino-float": self.float_ir, "openvino-int8": self.int8_ir}
        return {name: path for name, path in found.items() if path is not None}


@dataclass(frozen=True)
class DriftResult:
    """The drift report (:class:`~corese_edge.export.drift.DriftReport`, TensorRT entries are added
    by the engine stage) and the precision census of every ONNX artifact."""

    report: Any
    census: Mapping[str, Mapping[str, Any]]
    notes: tuple[str, ...] = ()

    @property
    def artifacts(self) -> dict[str, Path]:
        return {}

    def check(self) -> None:
        """The export's gate: :class:`~corese_edge.export.drift.DriftGateFailed` when an artifact
        dropped more than ``--max-drift``."""
        self.report.check()


@dataclass(frozen=True)
class EngineResult:
    """The TensorRT engines built here (precision -> ``EngineBuild``), or the notes saying why not."""

    builds: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def artifacts(self) -> dict[str, Path]:
        return {f"trt-{p}": b.plan for p, b in self.builds.items()}

    @property
    def trt_version(self) -> str | None:
        """The TensorRT version the first engine was built with (export.json's ``versions``), as its
        sidecar records it."""
        from corese_edge.runtime.trt import PlanSidecar

        for build in self.builds.values():
            return PlanSidecar.read(build.sidecar).trt_version
        return None


@dataclass
class ExportResult:
    """What :func:`corese_edge.export.pipeline.run_export` wrote: the output folder, the resolved
    config, the artifacts, the drift report, the engines, the notes, the INT8 layers kept in FP32,
    the closing table and, for ``--target cpu-best``, the choice (``cpu_best.CpuBestChoice``)."""

    out_dir: Path
    config: Any  # ExportConfig
    artifacts: dict[str, Path]
    drift: Any  # DriftReport
    engines: dict[str, Any] = field(default_factory=dict)  # precision -> EngineBuild
    notes: list[str] = field(default_factory=list)
    kept_fp: tuple[str, ...] = ()
    table: str = ""
    cpu_best: Any = None  # cpu_best.CpuBestChoice for --target cpu-best

    @property
    def passed(self) -> bool:
        """The drift gate: every artifact within ``--max-drift``; for ``cpu-best``, a candidate chosen."""
        if self.cpu_best is not None:
            return self.cpu_best.winner is not None
        return bool(self.drift.passed)

    @property
    def export_json(self) -> Path:
        return self.out_dir / "export.json"
