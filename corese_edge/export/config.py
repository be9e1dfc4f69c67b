"""``corese-edge export``'s options as one frozen, validated config, and the profile rule.

:class:`ExportConfig` refuses a bad combination with one clear line (the targets table decides
what each target takes); :func:`make_export_config` lays a profile (``export/NAME.yaml``) under
the explicit options, exactly as the CLI does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from corese_edge.config import build_config
from corese_edge.errors import UserError
from corese_edge.export import targets as T
from corese_edge.export.tensorrt import engine_defaults

_ENGINE = engine_defaults()  # the engine build's defaults are EngineConfig's, stated once


@dataclass(frozen=True)
class ExportConfig:
    """Everything ``corese-edge export`` takes; field names mirror the command-line options.

    ``checkpoint`` None: the newest ``runs/*/swa_final.pt``.  ``data`` None: the dataset recorded in
    the checkpoint.  ``out`` None: ``export/`` beside the checkpoint.  ``engine`` None builds an
    engine when TensorRT and a GPU are present, True demands one, False never builds.
    ``max_drift`` is in percentage points of accuracy.  ``quantizer`` None: the target's default
    (its first in the capability table: ``ort``, or ``nncf`` for ``--target openvino``).
    ``--target cpu-best`` always exports INT8 candidates, so ``int8`` is true for it;
    ``bench_seconds`` is how long it times each candidate at batch 1 (in interleaved rounds).
    """

    checkpoint: str | None = None
    fp16: bool = False
    int8: bool = False
    target: str = "tensorrt"
    data: str | None = None
    calib_data: str | None = None
    calib_size: int = 512
    calib_method: str = "minmax"
    quantizer: str | None = None
    val_split: str = "test"
    embed_preprocess: bool = False
    max_drift: float = 1.0
    min_batch: int = _ENGINE["min_batch"]
    opt_batch: int = _ENGINE["opt_batch"]
    max_batch: int = _ENGINE["max_batch"]
    opset: int = 17
    profile: str | None = None
    engine: bool | None = None
    keep_fp: tuple[str, ...] = ()
    auto_keep: bool = False
    out: str | None = None
    workspace_gb: float = _ENGINE["workspace_gb"]
    seed: int = 0
    bench_seconds: float = 1.5
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "keep_fp", tuple(self.keep_fp or ()))
        target = T.get_target(self.target)
        if self.quantizer is None:
            object.__setattr__(self, "quantizer", target.quantizers[0])
        if target.chooses_fastest and not self.int8:  # a documented part of the target, not a correction
            object.__setattr__(self, "int8", True)
        for precision in T.requested_precisions(self.fp16, self.int8):
            target.check(precision)
        choose = {"calib_method": T.CALIB_METHODS, "quantizer": T.QUANTIZERS, "val_split": T.VAL_SPLITS}
        for name, options in choose.items():
            if getattr(self, name) not in options:
                raise UserError(f"--{name.replace('_', '-')} must be one of {', '.join(options)}, got {getattr(self, name)!r}")
        if self.int8 and self.quantizer not in target.quantizers:
            raise UserError(
                f"--quantizer {self.quantizer} does not fit --target {self.target}; "
                f"that target takes {', '.join(target.quantizers)}"
            )
        if self.int8 and self.quantizer == "modelopt" and self.calib_method == "percentile":
            raise UserError("--quantizer modelopt calibrates with minmax or entropy, not percentile")
        if self.int8 and self.quantizer == "nncf":
            if self.calib_method != "minmax":
                raise UserError(f"--calib-method {self.calib_method} is for the Q/DQ quantizers; NNCF collects its own "
                                "min/max statistics: drop --calib-method or use --quantizer ort")
            if self.keep_fp:
                raise UserError("--keep-fp names layers of the Q/DQ ONNX; with --quantizer nncf use --auto-keep "
                                "(NNCF's accuracy control) or --quantizer ort")
        if self.bench_seconds <= 0:
            raise UserError(f"--bench-seconds must be positive, got {self.bench_seconds}")
        if (self.keep_fp or self.auto_keep) and not self.int8:
            raise UserError("--keep-fp and --auto-keep choose INT8 layers; add --int8")
        if self.auto_keep and self.quantizer not in ("ort", "nncf"):
            raise UserError("--auto-keep re-quantizes with ONNX Runtime's quantizer (or NNCF's accuracy control "
                            "for OpenVINO); use --quantizer ort")
        if self.engine and not target.engines:
            raise UserError(f"--target {self.target} builds no TensorRT engine; drop --engine or use --target tensorrt")
        if self.calib_size < 1:
            raise UserError(f"--calib-size must be at least 1, got {self.calib_size}")
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise UserError(
                f"the batch profile needs 1 <= --min-batch <= --opt-batch <= --max-batch, "
                f"got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )
        if not (13 <= self.opset <= 20):
            raise UserError(f"--opset must be between 13 and 20 (ONNX Runtime's quantizer keeps opset <= 20), got {self.opset}")
        if self.workspace_gb <= 0:
            raise UserError(f"workspace_gb must be positive, got {self.workspace_gb}")

    @property
    def target_spec(self) -> T.Target:
        return T.get_target(self.target)


def make_export_config(profile: str | os.PathLike | None = None, **options: Any) -> ExportConfig:
    """Defaults < the profile's YAML < ``options`` that are not None (what the CLI passes)."""
    from corese_edge.export.profiles import resolve_profile

    path = resolve_profile(profile) if profile else None
    if profile is not None:
        options["profile"] = os.fspath(profile)
    return build_config(ExportConfig, path, **options)
