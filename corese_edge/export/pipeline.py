"""``corese-edge export``: checkpoint -> ONNX FP32 -> FP16 / INT8 Q/DQ -> drift report -> TensorRT engine.

:func:`run_export` takes one resolved :class:`ExportConfig` and runs the stages over one
:class:`ExportState`.  Each stage is a public function that can be called and tested alone, in
this order: :func:`prepare_export` (inputs, early checks), :func:`stage_fp32` (ONNX + parity),
:func:`stage_fp16`, :func:`stage_int8`, :func:`stage_embed`, :func:`stage_openvino` (OpenVINO IR),
:func:`stage_drift` (drift report and precision census), :func:`stage_engine`,
:func:`stage_cpu_best` (``--target cpu-best``: time the CPU candidates, name the fastest passing
one), :func:`stage_write` (export.json, reports, table).  The work of each lives in its own module
(``onnx_fp32``, ``fp16``, ``int8`` / ``modelopt``, ``openvino``, ``drift``, ``census``,
``tensorrt``, ``cpu_best``).  :func:`make_export_config` applies a profile
(``export/NAME.yaml``) under explicit options, exactly as the CLI does::

    from corese_edge.export import make_export_config, run_export
    result = run_export(make_export_config(profile="desktop-int8", checkpoint="runs/x/swa_final.pt"))
    print(result.table)

    # or stage by stage
    from corese_edge.export.pipeline import prepare_export, stage_fp32, stage_int8
    state = prepare_export(make_export_config(checkpoint="runs/x/swa_final.pt", int8=True))
    stage_fp32(state); stage_int8(state); state.close()

Images: the drift report runs on ``--val-split`` (test by default; nothing is chosen on it).
Every choice the export makes (FP16 ops kept in FP32, ``--auto-keep`` layers) is made on the
validation split carved from train; calibration images come from the rest of train (or from
``--calib-data``), never from test.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from corese_edge.atomic import write_json
from corese_edge.config import build_config, config_to_dict
from corese_edge.errors import CheckpointError, DataError, UserError
from corese_edge.export import targets as T
from corese_edge.export.onnx_fp32 import onnx_opset

log = logging.getLogger(__name__)

EXPORT_SCHEMA = "corese-edge/export/1"
#: parity of the FP32 ONNX against PyTorch (issue 3): at least this many images, these limits
PARITY_MIN_IMAGES = 64
PARITY_MAX_ABS_LOGIT_DIFF = 1e-4
#: images of the validation split carved from train used to choose kept layers / FP16 fallbacks
SELECTION_IMAGES = 256
#: images used to rank layer sensitivity for --auto-keep
SENSITIVITY_IMAGES = 32


class ParityError(UserError):
    """The FP32 ONNX does not reproduce PyTorch's logits."""


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
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 32
    opset: int = 17
    profile: str | None = None
    engine: bool | None = None
    keep_fp: tuple[str, ...] = ()
    auto_keep: bool = False
    out: str | None = None
    workspace_gb: float = 4.0
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


@dataclass
class ExportResult:
    out_dir: Path
    config: ExportConfig
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


# ----------------------------------------------------------------------------------- inputs


def newest_checkpoint(runs: str | os.PathLike = "runs") -> Path:
    """The newest ``swa_final.pt`` under ``runs`` (what ``corese-edge train`` writes last)."""
    root = Path(runs)
    found = sorted(root.glob("**/swa_final.pt"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not found:
        raise CheckpointError(
            f"no checkpoint given and no {root}/*/swa_final.pt found; train first "
            "(corese-edge train) or pass --checkpoint PATH"
        )
    return found[-1]


@dataclass
class _Data:
    class_names: tuple[str, ...]
    calib_pool: tuple  # train split minus the selection split
    selection: tuple  # validation split carved from train (choices are made here)
    test: tuple
    evaluation: tuple  # --val-split: where drift is reported
    root: str
    layout: str


def _load_data(cfg: ExportConfig, ckpt) -> _Data:
    from corese_edge.data.layouts import load_index, stratified_split

    root = cfg.data or (ckpt.dataset or {}).get("root") or ckpt.config.get("data")
    if not root:
        raise DataError(f"{ckpt.path} records no dataset; pass --data DIR")
    layout = "auto"
    if not cfg.data:
        layout = (ckpt.dataset or {}).get("layout") or ckpt.config.get("dataset") or "auto"
    index = load_index(root, layout)
    names = tuple(index.class_names)
    if len(names) != ckpt.num_classes:
        raise CheckpointError(
            f"{ckpt.path} predicts {ckpt.num_classes} classes ({', '.join(ckpt.class_names)}) but the dataset "
            f"at {index.root} has {len(names)} ({', '.join(names)}); export it with the data it was trained on (--data)"
        )
    if [n.lower() for n in names] != [n.lower() for n in ckpt.class_names]:
        raise CheckpointError(
            f"{ckpt.path} classes {list(ckpt.class_names)} do not match the dataset's {list(names)} at {index.root}"
        )
    fraction = float(ckpt.config.get("val_fraction") or 0.1)
    seed = int(ckpt.config.get("seed", cfg.seed))
    pool, selection = stratified_split(index.split("train"), fraction, seed)
    test = tuple(index.split("test"))
    evaluation = test if cfg.val_split == "test" else tuple(selection)
    if not evaluation:
        raise DataError(f"the {cfg.val_split} split of {index.root} has no images to measure drift on")
    return _Data(names, tuple(pool), tuple(selection), test, evaluation, str(index.root), index.layout)


def _calibration_paths(cfg: ExportConfig, data: _Data) -> tuple[list[Path], dict[str, Any]]:
    from corese_edge.data.calibration import calibration_samples, folder_images

    test_paths = {Path(s.path).resolve() for s in data.test}
    if cfg.calib_data:
        paths = folder_images(cfg.calib_data, cfg.calib_size, cfg.seed)
        overlap = [p for p in paths if p.resolve() in test_paths]
        if overlap:
            raise DataError(
                f"--calib-data {cfg.calib_data} contains test images ({overlap[0]}, {len(overlap)} in all); "
                "calibration must never see the test split"
            )
        return paths, {"source": os.fspath(cfg.calib_data), "images": len(paths)}
    chosen = calibration_samples(data.calib_pool, cfg.calib_size, cfg.seed)
    counts = {name: 0 for name in data.class_names}
    for s in chosen:
        counts[data.class_names[s.label]] += 1
    paths = [Path(s.path) for s in chosen]
    if any(p.resolve() in test_paths for p in paths):
        raise DataError(f"{data.root}: a file is listed in both the train and the test split; fix the dataset")
    return paths, {"source": "train split (validation part excluded)", "images": len(paths), "per_class": counts}


def _load_images(samples: Sequence, prep) -> tuple[np.ndarray, np.ndarray]:
    from corese_edge.export.evaluation import image_batches

    batches = list(image_batches([s.path for s in samples], prep, 32))
    return np.concatenate(batches), np.asarray([s.label for s in samples], dtype=np.int64)


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
    """``platform.platform()``'s text without its ``uname -p`` subprocess: iterating ``platform.uname()``
    forks ``uname -p`` for the processor field, and forking this process once OpenVINO, ONNX Runtime,
    OpenCV and torch have their thread pools running crashed it (SIGSEGV in the quick demo test)."""
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


# ----------------------------------------------------------------------------------- pipeline


@dataclass
class ExportState:
    """Everything one export run has read, made and decided; every stage reads and extends it.

    :func:`prepare_export` fills the inputs (checkpoint, data, output folder, calibration images);
    the stages then add, in order: ``artifacts`` (drift-report name -> file), ``details`` (the
    sections of export.json they own), ``notes`` (one line per thing the user should know),
    ``kept`` (INT8 layers left in FP32), ``report`` (the drift report), ``engines``.  ``work`` is
    a folder inside ``out`` for intermediate files, removed by :meth:`close`.
    """

    cfg: ExportConfig
    resolved: ExportConfig
    ckpt_path: Path
    ckpt: Any  # corese_edge.model.checkpoint.Checkpoint
    data: _Data
    out: Path
    work: Path
    calib_paths: list[Path] = field(default_factory=list)
    calib_info: dict[str, Any] = field(default_factory=dict)
    engine_env: Any = None  # (tensorrt module, GpuInfo) when --engine demanded one and it exists
    model: Any = None  # the PyTorch model (sample SE mode), built on first use
    artifacts: dict[str, Path] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    kept: tuple[str, ...] = ()
    labels: np.ndarray | None = None  # --val-split labels
    evaluation_logits: dict[str, np.ndarray] = field(default_factory=dict)  # "reference", "onnx-fp32", ...
    census: dict[str, dict[str, Any]] = field(default_factory=dict)  # ONNX artifact -> census dict
    report: Any = None  # DriftReport
    engines: dict[str, Any] = field(default_factory=dict)  # precision -> EngineBuild
    cpu_best: Any = None  # cpu_best.CpuBestChoice, set by stage_cpu_best
    _selection: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> T.Target:
        return self.cfg.target_spec

    @property
    def prep(self):
        return self.ckpt.preprocessing

    def torch_model(self):
        if self.model is None:
            self.model = self.ckpt.build_model(se_mode="sample")
        return self.model

    def artifact(self, name: str, stage: str) -> Path:
        """The file of artifact ``name``; a clear error when ``stage`` (which makes it) has not run."""
        if name not in self.artifacts:
            raise RuntimeError(f"{name} is missing: run {stage} first")
        return self.artifacts[name]

    def selection_images(self) -> tuple[np.ndarray, np.ndarray]:
        """Up to 256 images of the validation split carved from train (where choices are made), and labels."""
        if "x" not in self._selection:
            from corese_edge.data.calibration import calibration_samples
            from corese_edge.export.evaluation import OnnxLogits

            chosen = calibration_samples(self.data.selection, SELECTION_IMAGES, self.cfg.seed) if self.data.selection else []
            if not chosen:
                raise DataError("no validation images carved from train to choose on; the train split is too small")
            x, y = _load_images(chosen, self.prep)
            self._selection.update(x=x, y=y, fp32=OnnxLogits(self.artifact("onnx-fp32", "stage_fp32"))(x))
        return self._selection["x"], self._selection["y"]

    def selection_reference(self) -> np.ndarray:
        """The FP32 ONNX's logits on :meth:`selection_images`."""
        self.selection_images()
        return self._selection["fp32"]

    def selection_drop(self, model, reference_arithmetic: bool = False) -> float:
        """Accuracy drop (pp) of ``model`` (an ONNX path or proto) against the FP32 ONNX on the selection images."""
        from corese_edge.export.evaluation import OnnxLogits

        x, y = self.selection_images()
        logits = OnnxLogits(model, reference_arithmetic)(x)
        return 100.0 * float(np.mean(self.selection_reference().argmax(1) == y) - np.mean(logits.argmax(1) == y))

    def close(self) -> None:
        """Remove the work folder (intermediate models, calibration ranges)."""
        shutil.rmtree(self.work, ignore_errors=True)


def prepare_export(cfg: ExportConfig) -> ExportState:
    """Resolve the checkpoint, data and output folder of ``cfg``; check what can be checked before any work.

    Raises the user errors of a bad checkpoint or dataset, of calibration images that include test
    images, and :class:`~corese_edge.export.tensorrt.EngineUnavailable` when ``cfg.engine`` is True
    and no engine can be built here (so nothing is written first).
    """
    from corese_edge.export import tensorrt as trt_stage
    from corese_edge.model.checkpoint import load_checkpoint

    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else newest_checkpoint()
    ckpt = load_checkpoint(ckpt_path)
    data = _load_data(cfg, ckpt)
    out = Path(cfg.out) if cfg.out else ckpt_path.parent / "export"
    calib_paths, calib_info = _calibration_paths(cfg, data) if cfg.int8 else ([], {})
    engine_env = None
    if cfg.engine:  # demanded: say so now, not after minutes of quantization and validation
        try:
            engine_env = trt_stage.engine_environment()
        except trt_stage.EngineUnavailable as exc:
            commands = " && ".join(
                trt_stage.build_engine_command(out / T.onnx_artifact(p).filename, out / T.engine_artifact(p).filename,
                                               cfg.min_batch, cfg.opt_batch, cfg.max_batch)
                for p in T.engine_precisions(cfg.fp16, cfg.int8))
            raise trt_stage.EngineUnavailable(
                f"--engine: {exc}; export without --engine here, then on the target device run: {commands}") from None
    target = cfg.target_spec
    if target.openvino and not target.chooses_fastest:  # cpu-best skips the OpenVINO candidates instead
        from corese_edge.export.openvino import openvino_unavailable

        missing = openvino_unavailable()
        if missing:
            raise UserError(f"--target {cfg.target}: {missing}")
    out.mkdir(parents=True, exist_ok=True)
    resolved = dataclasses.replace(cfg, checkpoint=os.fspath(ckpt_path), data=data.root, out=os.fspath(out))
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    return ExportState(cfg, resolved, ckpt_path, ckpt, data, out, work, calib_paths, calib_info, engine_env)


def stage_fp32(state: ExportState) -> None:
    """ONNX FP32 (``model.onnx``), then one pass over the ``--val-split`` images for the PyTorch
    reference and the FP32 ONNX; their first >= 64 images are the parity check (:class:`ParityError`)."""
    from corese_edge.export.evaluation import OnnxLogits, TorchLogits, collect_logits
    from corese_edge.export.onnx_fp32 import export_onnx

    cfg, model = state.cfg, state.torch_model()
    torch_fn = TorchLogits(model)
    fp32_path = export_onnx(state.ckpt, state.out / T.onnx_artifact("fp32").filename, cfg.opset, model=model)
    state.artifacts["onnx-fp32"] = fp32_path
    fp32_fn = OnnxLogits(fp32_path)
    state.labels, state.evaluation_logits = collect_logits(
        state.data.evaluation, state.prep, {"reference": torch_fn, "onnx-fp32": fp32_fn},
        progress=cfg.progress, desc=f"reference on {cfg.val_split}")
    state.details["parity"] = _check_parity(state.evaluation_logits, torch_fn, fp32_fn, state.data, state.prep)


def stage_fp16(state: ExportState) -> None:
    """FP16 ONNX with FP32 I/O (``model.fp16.onnx``); when it drifts past ``--max-drift`` on the
    selection split, :data:`fp16.SENSITIVE_FP16_OPS` stay FP32 if that lowers the drop."""
    from corese_edge.export import fp16 as fp16_stage

    fp32_path = state.artifact("onnx-fp32", "stage_fp32")
    fp16_path = fp16_stage.convert_fp16(fp32_path, state.out / T.onnx_artifact("fp16").filename)
    kept_ops: tuple[str, ...] = ()
    reference = state.target.reference_arithmetic("fp16")
    drop = state.selection_drop(fp16_path, reference)
    if drop > state.cfg.max_drift:
        trial = fp16_stage.convert_fp16(fp32_path, state.work / "fp16-keep.onnx", fp16_stage.SENSITIVE_FP16_OPS)
        trial_drop = state.selection_drop(trial, reference)
        if trial_drop < drop:
            shutil.move(os.fspath(trial), os.fspath(fp16_path))
            kept_ops = fp16_stage.SENSITIVE_FP16_OPS
            state.notes.append(f"FP16 dropped {drop:.2f} pp on the validation split carved from train; "
                               f"{', '.join(kept_ops)} kept in FP32 ({trial_drop:.2f} pp)")
    state.artifacts["onnx-fp16"] = fp16_path
    state.details["fp16"] = {"keep_fp32_ops": list(kept_ops)}


def stage_int8(state: ExportState) -> None:
    """INT8 Q/DQ ONNX (``model.int8.onnx``) calibrated on the train split, with ONNX Runtime's
    quantizer or ModelOpt.  For ``--target tensorrt`` everything that is not INT8 is FP16
    (:func:`int8.to_fp16_qdq`); FP32 stays only where named: ``--keep-fp``, ``--auto-keep``, or
    :data:`fp16.SENSITIVE_FP16_OPS` when the selection split shows they lower a drop over the limit.
    Sets ``state.kept`` and export.json's ``calibration``, ``int8`` (and ``auto_keep``) sections."""
    cfg, target = state.cfg, state.target
    fp32_path = state.artifact("onnx-fp32", "stage_fp32")
    flavour = target.int8_flavour
    from corese_edge.export.int8 import get_flavour

    high_precision = get_flavour(flavour).high_precision
    state.details["calibration"] = {**state.calib_info, "method": cfg.calib_method, "quantizer": cfg.quantizer,
                                    "flavour": flavour}
    int8_path = state.out / T.onnx_artifact("int8").filename
    keep_ops: tuple[str, ...] = ()
    reasons: dict[str, str] = {}
    if cfg.quantizer == "modelopt":
        from corese_edge.data.calibration import CalibrationBatches
        from corese_edge.export.int8 import match_nodes
        from corese_edge.export.modelopt import quantize_modelopt

        state.kept = match_nodes(cfg.keep_fp, _node_names(fp32_path)) if cfg.keep_fp else ()
        quantize_modelopt(fp32_path, int8_path, CalibrationBatches(state.calib_paths, state.prep, 8), cfg.calib_method,
                          state.kept, high_precision_dtype=high_precision)
    else:
        keep_ops, reasons = _quantize_ort(state, int8_path)
    state.artifacts["onnx-int8"] = int8_path
    state.details["int8"] = {"high_precision": high_precision, "keep_fp32_ops": list(keep_ops),
                             "keep_fp32_nodes": list(state.kept), "opset": onnx_opset(int8_path)}
    reasons.update({name: "--keep-fp" for name in state.kept if name not in reasons})
    if reasons:  # why each FP32 layer or op type is FP32
        state.details["int8"]["keep_fp32_reasons"] = reasons


def stage_embed(state: ExportState) -> None:
    """``--embed-preprocess``: a uint8-frames variant of every ONNX artifact, checked against FP32."""
    from corese_edge.export.embed import embed_preprocess

    state.artifact("onnx-fp32", "stage_fp32")
    for name in [n for n in ("onnx-fp32", "onnx-fp16", "onnx-int8") if n in state.artifacts]:
        state.artifacts[f"{name}-preprocess"] = embed_preprocess(state.artifacts[name])
    state.details["embed_preprocess"] = _check_embedded(state.artifacts, state.data, state.prep)


def stage_openvino(state: ExportState) -> None:
    """OpenVINO IR from the FP32 ONNX (``--target openvino`` and ``cpu-best``).

    The float IR (``model.xml`` + ``model.bin``) always; it runs at the device's best float
    precision, which export.json's ``openvino`` section records (``float_precision``).  With INT8,
    ``model.int8.xml``: by NNCF from the FP32 model, calibrated on the same train-split images as
    the ONNX INT8 (``--auto-keep`` is NNCF's accuracy control within ``--max-drift`` on the
    validation split carved from train), or, with ``--quantizer ort``, by OpenVINO reading the U8S8
    Q/DQ ONNX of :func:`stage_int8` (run that first).  Class names, preprocessing and build facts
    travel in the IRs' rt_info.  Without the openvino extra, ``cpu-best`` notes the skip and writes
    no IR (``--target openvino`` was refused by :func:`prepare_export`).
    """
    from corese_edge.export import openvino as ov_stage

    cfg, target = state.cfg, state.target
    fp32_path = state.artifact("onnx-fp32", "stage_fp32")
    missing = ov_stage.openvino_unavailable()
    if missing:
        if not target.chooses_fastest:
            raise UserError(f"--target {cfg.target}: {missing}")
        state.notes.append(f"OpenVINO candidates skipped: {missing}")
        state.details["openvino"] = {"skipped": missing}
        return
    build = _openvino_build(state)
    float_ir = ov_stage.ir_from_onnx(fp32_path, state.out / T.openvino_artifact("fp32").filename, build=build)
    state.artifacts["openvino-float"] = float_ir
    info: dict[str, Any] = {"device": "CPU", "float_precision": ov_stage.device_float_precision("CPU"),
                            "float_ir": float_ir.name}
    if cfg.int8:
        quantizer = target.ir_int8_quantizer(cfg.quantizer)
        route = OPENVINO_INT8_ROUTES[quantizer]
        options: dict[str, Any] = {}
        if route == "qdq":
            options["qdq_onnx_path"] = state.artifact("onnx-int8", "stage_int8")
        else:
            state.details.setdefault("calibration", {**state.calib_info, "method": "minmax", "quantizer": "nncf"})
            if cfg.auto_keep:
                x, y = state.selection_images()
                options.update(max_drop_pp=cfg.max_drift, validation=(x, y))
        from corese_edge.data.calibration import CalibrationBatches

        int8_ir = ov_stage.quantize_ir(
            fp32_path, state.out / T.openvino_artifact("int8").filename,
            CalibrationBatches(state.calib_paths, state.prep, 8), route=route,
            subset_size=len(state.calib_paths), progress=cfg.progress, build=build, **options)
        state.artifacts["openvino-int8"] = int8_ir
        info.update(int8_route=route, int8_quantizer=quantizer, int8_ir=int8_ir.name)
        if route == "qdq":
            info["int8_source"] = state.artifacts["onnx-int8"].name
    state.details["openvino"] = info


def _openvino_build(state: ExportState) -> dict[str, str]:
    """Build facts stored in each IR's rt_info (``corese_edge/build``)."""
    from importlib import metadata

    from corese_edge import __version__

    facts = {"corese_edge": __version__, "source_onnx": state.artifacts["onnx-fp32"].name,
             "checkpoint": state.ckpt_path.name, "model": str(state.ckpt.variant), "target": state.cfg.target}
    for dist in ("openvino", "nncf"):
        try:
            facts[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return facts


#: --quantizer -> the route of :func:`corese_edge.export.openvino.quantize_ir` that makes the INT8 IR
OPENVINO_INT8_ROUTES = {"nncf": "nncf", "ort": "qdq"}


def stage_drift(state: ExportState) -> None:
    """Drift of every artifact against PyTorch FP32 on ``--val-split`` (``state.report``), and
    the precision census of every ONNX artifact (``state.census``, also in the report's entries).
    The FP16 and INT8 graphs of ``--target tensorrt`` run with reference arithmetic
    (:meth:`targets.Target.reference_arithmetic`), as TensorRT computes them; the OpenVINO IRs run
    through OpenVINO with the runner's default configuration (the deployment), and their entries
    record the precision OpenVINO really ran (``bf16`` for the float IR on AMX, ``int8``).  Every
    entry names its ``backend`` and ``precision``."""
    from corese_edge.export.drift import DriftReport
    from corese_edge.export.evaluation import OnnxLogits, OpenVinoLogits, collect_logits

    cfg, target, artifacts = state.cfg, state.target, state.artifacts
    if state.labels is None:
        raise RuntimeError("the reference logits are missing: run stage_fp32 first")
    state.census = {name: _census(path) for name, path in artifacts.items() if path.suffix == ".onnx"}
    fns: dict[str, Callable] = {}
    for precision in ("fp16", "int8"):
        name = f"onnx-{precision}"
        if name in artifacts:
            fns[name] = OnnxLogits(artifacts[name], reference_arithmetic=target.reference_arithmetic(precision))
    ov_fns = {name: OpenVinoLogits(artifacts[name]) for name in ("openvino-float", "openvino-int8") if name in artifacts}
    logits = {"onnx-fp32": state.evaluation_logits["onnx-fp32"]}
    try:
        if fns or ov_fns:
            logits.update(collect_logits(state.data.evaluation, state.prep, {**fns, **ov_fns}, progress=cfg.progress,
                                         desc=f"validating on {cfg.val_split}")[1])
    finally:
        for fn in ov_fns.values():
            fn.close()
    report = DriftReport(state.data.class_names, state.labels, state.evaluation_logits["reference"], cfg.max_drift,
                         split=cfg.val_split)
    for name, value in logits.items():
        extra: dict[str, Any] = {"file": artifacts[name].name}
        if name in ov_fns:
            ex = ov_fns[name].runner.execution
            extra.update(backend="openvino", precision=ov_fns[name].precision, device=ex.get("device"),
                         inference_precision_hint=ex.get("inference_precision"),
                         runtime_precisions=ex.get("runtime_precisions"))
            if name == "openvino-int8":
                extra.update(route=state.details["openvino"]["int8_route"])
        else:
            extra.update(backend="onnxruntime", precision=T.ARTIFACTS[name].precision)
        if name == "onnx-int8":
            int8 = state.details["int8"]
            extra.update(flavour=target.int8_flavour, quantizer=cfg.quantizer, kept_fp=list(state.kept),
                         high_precision=int8["high_precision"], keep_fp32_ops=int8["keep_fp32_ops"],
                         ort_graph_optimizations="disabled" if fns[name].reference_arithmetic else "all")
        if name == "onnx-fp16":
            extra.update(keep_fp32_ops=state.details["fp16"]["keep_fp32_ops"],
                         ort_graph_optimizations="disabled" if fns[name].reference_arithmetic else "all")
        if name in state.census:
            extra.update(census=state.census[name])
        report.add(name, value, **extra)
    state.report = report


def stage_engine(state: ExportState) -> None:
    """TensorRT engines (``model.<precision>.plan`` + sidecar) when TensorRT and a GPU are here and
    the ONNX artifacts passed the drift gate; otherwise a note with the ``build-engine`` commands."""
    from corese_edge.export import tensorrt as trt_stage

    cfg, out = state.cfg, state.out
    if not state.target.engines or cfg.engine is False:
        return
    if state.report is None:
        raise RuntimeError("the drift report is missing: run stage_drift first")
    precisions = T.engine_precisions(cfg.fp16, cfg.int8)
    try:
        trt, gpu = state.engine_env or trt_stage.engine_environment()
    except trt_stage.EngineUnavailable as exc:
        commands = [trt_stage.build_engine_command(state.artifacts[f"onnx-{p}"], out / T.engine_artifact(p).filename,
                                                   cfg.min_batch, cfg.opt_batch, cfg.max_batch) for p in precisions]
        state.notes.append(f"engine not built: {exc}; on the target device run: {' && '.join(commands)}")
        return
    if not state.report.passed:
        state.notes.append("engines not built: the ONNX artifacts failed the drift gate")
        return
    for p in precisions:
        built = trt_stage.build_engine(
            state.artifacts[f"onnx-{p}"], out / T.engine_artifact(p).filename, cfg.min_batch, cfg.opt_batch,
            cfg.max_batch, cfg.workspace_gb, trt=trt, gpu=gpu)
        state.engines[p] = built
        state.artifacts[f"trt-{p}"] = built.plan
        _engine_drift(state.report, built, p, cfg, state.data, state.prep, state.notes)


#: the CPU candidates of --target cpu-best, in the order a tie is broken (simplest deployment first)
CPU_CANDIDATES = ("onnx-fp32", "onnx-int8", "onnx-fp16", "openvino-float", "openvino-int8")


def stage_cpu_best(state: ExportState, timer: Callable[..., dict[str, dict[str, Any]]] | None = None) -> None:
    """``--target cpu-best``: time every CPU candidate written here at batch 1 (``--bench-seconds``
    each, interleaved rounds; :func:`cpu_best.time_candidates`, or ``timer`` with its signature)
    and name the fastest one that passed the drift gate (:func:`cpu_best.choose_fastest`).
    Sets ``state.cpu_best`` and export.json's ``cpu_best`` section; a candidate that failed the
    gate gets a note and is never chosen.  Run after :func:`stage_drift`."""
    from corese_edge.bench.machine import cpu_flags, cpu_name
    from corese_edge.export import cpu_best

    if not state.target.chooses_fastest:
        return
    if state.report is None:
        raise RuntimeError("the drift report is missing: run stage_drift first")
    names = [n for n in CPU_CANDIDATES if n in state.artifacts and n in state.report.artifacts]
    timings = (timer or cpu_best.time_candidates)({n: state.artifacts[n] for n in names}, state.cfg.bench_seconds)
    candidates = []
    for n in names:
        entry = state.report.artifacts[n]
        candidates.append(cpu_best.Candidate(
            name=n, file=state.artifacts[n].name, backend=entry["backend"], precision=entry["precision"],
            p50_ms=timings[n]["p50_ms"], drop_pp=entry["accuracy_drop_pp"], passed=entry["passed"]))
        if not entry["passed"]:
            state.notes.append(f"cpu-best: {n} dropped {entry['accuracy_drop_pp']:.2f} pp (over --max-drift "
                               f"{state.cfg.max_drift:g}) and is not a candidate")
    choice = cpu_best.choose_fastest(candidates)
    state.cpu_best = choice
    state.details["cpu_best"] = {
        **choice.to_dict(),
        "timing": {"batch": 1, "seconds_per_candidate": state.cfg.bench_seconds, "rounds": cpu_best.ROUNDS,
                   "statistic": "median of the rounds' median latencies", "cpu": cpu_name(), "cpu_flags": cpu_flags(),
                   "runners": "default configuration (ONNX Runtime: one thread per physical core; "
                              "OpenVINO: LATENCY hint)",
                   "per_candidate": timings},
    }


def stage_write(state: ExportState, echo: Callable[[str], None] | None = None) -> ExportResult:
    """drift_report.{json,md,png}, export.json and the closing table (to ``echo``, default the log).
    Does not raise on a failed gate; :func:`run_export` does, after this."""
    from corese_edge.export.drift import summary_table
    from corese_edge.model.checkpoint import file_sha256

    say = echo or log.info
    cfg, report, artifacts, engines = state.cfg, state.report, state.artifacts, state.engines
    if report is None:
        raise RuntimeError("the drift report is missing: run stage_drift first")
    report.notes[:] = state.notes
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
        "versions": _tool_versions() | ({"tensorrt": engines[next(iter(engines))].info["trt_version"]} if engines else {}),
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
        "census": state.census,
        "notes": state.notes,
        **state.details,
    }
    write_json(state.out / "export.json", record)
    say(table)
    for note in state.notes:
        say(note)
    if state.cpu_best is not None:
        say(state.cpu_best.reason)
    return ExportResult(state.out, state.resolved, artifacts, report, engines, state.notes, state.kept, table,
                        state.cpu_best)


def run_export(cfg: ExportConfig, echo: Callable[[str], None] | None = None) -> ExportResult:
    """Run every export stage for ``cfg``; return what was written.

    Raises :class:`~corese_edge.export.drift.DriftGateFailed` (files kept, report marked failed)
    when an artifact drops more than ``cfg.max_drift`` pp (for ``--target cpu-best``: only when
    no candidate passed; the others are simply not chosen), and
    :class:`~corese_edge.export.tensorrt.EngineUnavailable` when ``cfg.engine`` is True and no
    engine can be built here.  ``echo`` receives the closing table and notes (default: the log).
    """
    from corese_edge.export.drift import DriftGateFailed

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
    stage_drift(state)
    stage_engine(state)
    stage_cpu_best(state)
    result = stage_write(state, echo)
    if state.cpu_best is not None:  # cpu-best fails only when no candidate passed the gate
        if state.cpu_best.winner is None:
            raise DriftGateFailed(f"--target cpu-best: {state.cpu_best.reason} (limit --max-drift {cfg.max_drift:g} pp); "
                                  "the files are kept and drift_report.json marks them failed")
    else:
        state.report.check()
    return result


def _census(path: Path) -> dict[str, Any]:
    """The precision census of an ONNX artifact as export.json and the drift report carry it."""
    from corese_edge.export.census import precision_census

    return precision_census(path).to_dict()


def _node_names(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(os.fspath(path), load_external_data=False).graph.node]


def _check_parity(evaluated: dict[str, np.ndarray], torch_fn, onnx_fn, data: _Data, prep) -> dict[str, Any]:
    """FP32 ONNX vs PyTorch on >= 64 images: max |logit diff| <= 1e-4 and identical top-1.

    ``evaluated`` holds both models' logits on the evaluation images; when there are fewer than 64,
    train images top the set up (parity is about arithmetic, not labels).
    """
    from corese_edge.export.evaluation import collect_logits

    torch_logits, onnx_logits = evaluated["reference"], evaluated["onnx-fp32"]
    missing = PARITY_MIN_IMAGES - len(torch_logits)
    if missing > 0:
        extra = list(data.calib_pool[:missing])
        if len(extra) < missing:
            raise ParityError(f"parity needs {PARITY_MIN_IMAGES} images, the dataset has only "
                              f"{len(torch_logits) + len(extra)}")
        _, more = collect_logits(extra, prep, {"torch": torch_fn, "onnx": onnx_fn})
        torch_logits = np.concatenate([torch_logits, more["torch"]])
        onnx_logits = np.concatenate([onnx_logits, more["onnx"]])
    diff = float(np.max(np.abs(torch_logits - onnx_logits)))
    agreement = float(np.mean(torch_logits.argmax(1) == onnx_logits.argmax(1)))
    samples = torch_logits
    result = {"images": len(samples), "max_abs_logit_diff": diff, "top1_agreement": agreement,
              "limits": {"max_abs_logit_diff": PARITY_MAX_ABS_LOGIT_DIFF, "top1_agreement": 1.0}}
    if diff > PARITY_MAX_ABS_LOGIT_DIFF or agreement < 1.0:
        raise ParityError(
            f"the FP32 ONNX does not match PyTorch on {len(samples)} images: max |logit diff| {diff:.3g} "
            f"(limit {PARITY_MAX_ABS_LOGIT_DIFF:g}), top-1 agreement {agreement:.2%} (must be 100%)"
        )
    log.info("parity: max |logit diff| %.2e, top-1 agreement %.0f%% on %d images", diff, 100 * agreement, len(samples))
    return result


def _check_embedded(artifacts: dict[str, Path], data: _Data, prep) -> dict[str, Any]:
    """The uint8-frames FP32 variant must give the FP32 model's logits (same arithmetic, in-graph)."""
    import cv2

    from corese_edge.images import read_rgb
    from corese_edge.export.evaluation import OnnxLogits

    samples = list(data.evaluation[:16])
    frames = np.stack([cv2.resize(read_rgb(s.path), (prep.size, prep.size), interpolation=prep.cv2_interpolation)
                       for s in samples])
    chw = (frames.astype(np.float32) / 255.0 - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    base = OnnxLogits(artifacts["onnx-fp32"])(np.ascontiguousarray(chw.transpose(0, 3, 1, 2)))
    sess = OnnxLogits(artifacts["onnx-fp32-preprocess"])
    got = sess(frames)
    diff = float(np.max(np.abs(base - got)))
    if diff > PARITY_MAX_ABS_LOGIT_DIFF:
        raise ParityError(f"the --embed-preprocess model differs from model.onnx by {diff:.3g} in the logits")
    return {"images": len(samples), "max_abs_logit_diff_vs_fp32": diff}


def _quantize_ort(state: ExportState, int8_path: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """ONNX Runtime's quantizer: calibrate once, quantize with ``--keep-fp``; for an FP16 graph,
    keep :data:`fp16.SENSITIVE_FP16_OPS` in FP32 when the selection split shows a drop over the
    limit that they lower; then ``--auto-keep``.  Sets ``state.kept``; returns the op types kept in
    FP32 and the reason for each op type and ``--auto-keep`` layer kept."""
    from corese_edge.data.calibration import CalibrationBatches
    from corese_edge.export import int8 as int8_stage
    from corese_edge.export.evaluation import OnnxLogits
    from corese_edge.export.fp16 import SENSITIVE_FP16_OPS

    import onnx

    cfg, work, fp32_path = state.cfg, state.work, state.artifacts["onnx-fp32"]
    flavour = int8_stage.get_flavour(state.target.int8_flavour)
    ref_arith = state.target.int8_reference_arithmetic
    pre = int8_stage.prepare_for_quantization(fp32_path, work / "pre.onnx")
    reader = int8_stage.StreamingCalibrationReader(
        CalibrationBatches(state.calib_paths, state.prep, int8_stage.CALIB_BATCH[cfg.calib_method]),
        progress=cfg.progress)
    ranges = int8_stage.calibrate(pre, reader, work / "ranges.json", cfg.calib_method, flavour.name)
    user_keep = int8_stage.match_nodes(cfg.keep_fp, _node_names(pre)) if cfg.keep_fp else ()

    def quantize(keep: Sequence[str], keep_ops: Sequence[str], dest: Path, high_precision: str | None = None) -> Path:
        return int8_stage.quantize_int8(pre, dest, ranges, flavour.name, cfg.calib_method, keep, metadata_from=fp32_path,
                                        high_precision=high_precision, keep_fp32_ops=keep_ops)

    quantize(user_keep, (), int8_path)
    kept, keep_ops, reasons = tuple(user_keep), (), {}
    drop = None
    if flavour.high_precision == "fp16":
        drop = state.selection_drop(int8_path, ref_arith)
        if drop > cfg.max_drift:
            trial_drop = state.selection_drop(quantize(kept, SENSITIVE_FP16_OPS, work / "int8-keep.onnx"), ref_arith)
            if trial_drop < drop:
                shutil.move(os.fspath(work / "int8-keep.onnx"), os.fspath(int8_path))
                state.notes.append(f"INT8 dropped {drop:.2f} pp on the validation split carved from train; "
                                   f"{', '.join(SENSITIVE_FP16_OPS)} kept in FP32 instead of FP16 ({trial_drop:.2f} pp)")
                reasons.update({op: f"INT8+FP16 dropped {drop:.2f} pp on the validation split carved from train, "
                                    f"{trial_drop:.2f} pp with it in FP32" for op in SENSITIVE_FP16_OPS})
                keep_ops, drop = SENSITIVE_FP16_OPS, trial_drop
    if cfg.auto_keep:
        x, _ = state.selection_images()
        if drop is None:
            drop = state.selection_drop(int8_path, ref_arith)
        if drop > cfg.max_drift:
            # the ranking rewires layers of an FP32 Q/DQ graph back to FP32 (int8.keep_in_float), so
            # it ranks on the FP32 form; every trial below measures the artifact's own form
            qdq = onnx.load(os.fspath(quantize(kept, (), work / "int8-rank.onnx", high_precision="fp32")))
            fp = onnx.load(os.fspath(pre))
            # only layers the quantizer itself quantizes can be excluded from it
            quantizable = set(int8_stage.op_types_to_quantize(flavour))
            op_of = {n.name: n.op_type for n in qdq.graph.node}
            candidates = [n for n in int8_stage.quantized_nodes(qdq) if n not in user_keep and op_of[n] in quantizable]
            xs = x[:SENSITIVITY_IMAGES]
            ref = state.selection_reference()[:SENSITIVITY_IMAGES]
            ranking = int8_stage.rank_sensitivity(
                qdq, fp, candidates, lambda proto: OnnxLogits(proto, ref_arith)(xs), ref, progress=cfg.progress)

            def drop_of(extra: tuple[str, ...]) -> float:
                return state.selection_drop(quantize(tuple(user_keep) + extra, keep_ops, work / "int8-trial.onnx"),
                                            ref_arith)

            search = int8_stage.search_keep(ranking, drop_of, cfg.max_drift, drop)
            kept = tuple(user_keep) + search.kept
            reasons.update({name: "--auto-keep" for name in search.kept})
            quantize(kept, keep_ops, int8_path)
            state.details["auto_keep"] = search.to_dict()
            state.notes.append(
                f"--auto-keep: INT8 dropped {drop:.2f} pp on the validation split carved from train; kept "
                f"{len(search.kept)} layer(s) in FP32 -> {search.drop_pp_after:.2f} pp"
                + ("" if search.reached else " (the limit was not reached)")
            )
        else:
            state.details["auto_keep"] = {"kept": [], "drop_pp_before": drop, "drop_pp_after": drop, "reached_limit": True}
    state.kept = kept
    return keep_ops, reasons


def _engine_drift(report, built, precision: str, cfg: ExportConfig, data: _Data, prep, notes: list[str]) -> None:
    from corese_edge.export.evaluation import EngineLogits, collect_logits

    try:
        engine = EngineLogits(built.plan, cfg.min_batch, cfg.max_batch)
    except ImportError as exc:
        notes.append(f"trt-{precision}: drift not measured, the TensorRT runner is unavailable ({exc})")
        return
    try:
        _, logits = collect_logits(data.evaluation, prep, {"engine": engine}, progress=cfg.progress,
                                   desc=f"validating trt-{precision}")
    finally:
        engine.close()
    report.add(f"trt-{precision}", logits["engine"], file=built.plan.name, backend="tensorrt", precision=precision,
               trt_version=built.info["trt_version"], gpu_name=built.info["gpu_name"])
