"""The export stages: each reads the inputs and earlier stages' typed results, and returns its own.

:func:`prepare_export` resolves the inputs into an :class:`ExportState`; then, in order,
:func:`stage_fp32` (ONNX + parity), :func:`stage_fp16`, :func:`stage_int8`, :func:`stage_embed`,
:func:`stage_openvino`, :func:`stage_drift`, :func:`stage_engine` and
(``--target cpu-best``) :func:`corese_edge.export.cpu_best.stage_cpu_best`.  Each returns a
frozen result (:mod:`corese_edge.export.results`) and keeps it on the state for the stages after it;
:func:`stage_write` hands them to the one writer (:mod:`corese_edge.export.record`)::

    state = prepare_export(make_export_config(checkpoint="runs/x/swa_final.pt", int8=True))
    fp32 = stage_fp32(state); int8 = stage_int8(state); state.close()
    print(int8.kept, int8.keep_fp32_ops)

Every artifact is run through the runtime's runners (:mod:`corese_edge.export.comparator`).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from corese_edge.errors import DataError, UserError
from corese_edge.export import targets as T
from corese_edge.export.config import ExportConfig
from corese_edge.export.datasets import ExportData, calibration_paths, load_data, load_images, newest_checkpoint
from corese_edge.export.onnx_fp32 import onnx_opset
from corese_edge.export.results import (DriftResult, EmbedResult, EngineResult, Fp16Result, Fp32Result, Int8Result,
                                        OpenVinoResult)

log = logging.getLogger(__name__)

#: images of the validation split carved from train used to choose kept layers / FP16 fallbacks
SELECTION_IMAGES = 256
#: images used to rank layer sensitivity for --auto-keep
SENSITIVITY_IMAGES = 32
#: --quantizer -> the route of :func:`corese_edge.export.openvino.quantize_ir` that makes the INT8 IR
OPENVINO_INT8_ROUTES = {"nncf": "nncf", "ort": "qdq"}


@dataclass
class ExportState:
    """The inputs of one export run and the result of each stage that has run.

    :func:`prepare_export` fills the inputs (checkpoint, data, output folder, calibration images);
    each stage sets its own result field (``fp32``, ``fp16``, ``int8``, ``embed``, ``openvino``,
    ``drift``, ``engine``, ``cpu_best``).  ``work`` is a folder inside ``out`` for intermediate
    files, removed by :meth:`close`.  The properties below are read-only views over the results.
    """

    cfg: ExportConfig
    resolved: ExportConfig
    ckpt_path: Path
    ckpt: Any  # corese_edge.model.checkpoint.Checkpoint
    data: ExportData
    out: Path
    work: Path
    calib_paths: list[Path] = field(default_factory=list)
    calib_info: dict[str, Any] = field(default_factory=dict)
    engine_env: Any = None  # (tensorrt module, GpuInfo) when --engine demanded one and it exists
    model: Any = None  # the PyTorch model (sample SE mode), built on first use
    fp32: Fp32Result | None = None
    fp16: Fp16Result | None = None
    int8: Int8Result | None = None
    embed: EmbedResult | None = None
    openvino: OpenVinoResult | None = None
    drift: DriftResult | None = None
    engine: EngineResult | None = None
    cpu_best: Any = None  # cpu_best.CpuBestResult, for --target cpu-best
    _selection: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> T.Target:
        return self.cfg.target_spec

    @property
    def prep(self):
        return self.ckpt.preprocessing

    # -- views over the results (what export.json gathers) -----------------------------------------
    @property
    def results(self) -> tuple[Any, ...]:
        """The results so far, in stage order."""
        found = (self.fp32, self.fp16, self.int8, self.embed, self.openvino, self.drift, self.engine, self.cpu_best)
        return tuple(r for r in found if r is not None)

    @property
    def artifacts(self) -> dict[str, Path]:
        """Drift-report name -> file, in the order the stages made them."""
        out: dict[str, Path] = {}
        for result in self.results:
            out.update(result.artifacts)
        return out

    @property
    def notes(self) -> list[str]:
        """Every stage's notes, in stage order (a new list each time)."""
        return [note for result in self.results for note in result.notes]

    @property
    def details(self) -> dict[str, Any]:
        """The stage sections of export.json (``parity``, ``fp16``, ``calibration``, ``int8``, ...)."""
        from corese_edge.export.record import stage_sections

        return stage_sections(self)

    @property
    def kept(self) -> tuple[str, ...]:
        return self.int8.kept if self.int8 else ()

    @property
    def labels(self) -> np.ndarray | None:
        return self.fp32.labels if self.fp32 else None

    @property
    def evaluation_logits(self) -> dict[str, np.ndarray]:
        return dict(self.fp32.logits) if self.fp32 else {}

    @property
    def report(self):
        return self.drift.report if self.drift else None

    @property
    def census(self) -> dict[str, dict[str, Any]]:
        return dict(self.drift.census) if self.drift else {}

    @property
    def engines(self) -> dict[str, Any]:
        return dict(self.engine.builds) if self.engine else {}

    # -- shared inputs -----------------------------------------------------------------------------
    def torch_model(self):
        if self.model is None:
            self.model = self.ckpt.build_model(se_mode="sample")
        return self.model

    def artifact(self, name: str, stage: str) -> Path:
        """The file of artifact ``name``; a clear error when ``stage`` (which makes it) has not run."""
        artifacts = self.artifacts
        if name not in artifacts:
            raise RuntimeError(f"{name} is missing: run {stage} first")
        return artifacts[name]

    def selection_images(self) -> tuple[np.ndarray, np.ndarray]:
        """Up to 256 images of the validation split carved from train (where choices are made), and labels."""
        if "x" not in self._selection:
            from corese_edge.data.calibration import calibration_samples
            from corese_edge.export.comparator import onnx_logits

            chosen = calibration_samples(self.data.selection, SELECTION_IMAGES, self.cfg.seed) if self.data.selection else []
            if not chosen:
                raise DataError("no validation images carved from train to choose on; the train split is too small")
            x, y = load_images(chosen, self.prep)
            self._selection.update(x=x, y=y, fp32=onnx_logits(self.artifact("onnx-fp32", "stage_fp32"), x))
        return self._selection["x"], self._selection["y"]

    def selection_reference(self) -> np.ndarray:
        """The FP32 ONNX's logits on :meth:`selection_images`."""
        self.selection_images()
        return self._selection["fp32"]

    def selection_drop(self, model, reference_arithmetic: bool = False) -> float:
        """Accuracy drop (pp) of ``model`` (an ONNX path or proto) against the FP32 ONNX on the selection images."""
        from corese_edge.export.comparator import onnx_logits

        x, y = self.selection_images()
        logits = onnx_logits(model, x, reference_arithmetic)
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
    data = load_data(cfg, ckpt)
    out = Path(cfg.out) if cfg.out else ckpt_path.parent / "export"
    calib, calib_info = calibration_paths(cfg, data) if cfg.int8 else ([], {})
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
    if target.requires_openvino:  # cpu-best skips the OpenVINO candidates instead
        from corese_edge.export.openvino import openvino_unavailable

        missing = openvino_unavailable()
        if missing:
            raise UserError(f"--target {cfg.target}: {missing}")
    out.mkdir(parents=True, exist_ok=True)
    resolved = dataclasses.replace(cfg, checkpoint=os.fspath(ckpt_path), data=data.root, out=os.fspath(out))
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    return ExportState(cfg, resolved, ckpt_path, ckpt, data, out, work, calib, calib_info, engine_env)


def stage_fp32(state: ExportState) -> Fp32Result:
    """ONNX FP32 (``model.onnx``), then one pass over the ``--val-split`` images for the PyTorch
    reference and the FP32 ONNX; their first >= 64 images are the parity check (:class:`ParityError`)."""
    from corese_edge.export.comparator import Comparator, drift_ort_runner
    from corese_edge.export.onnx_fp32 import export_onnx
    from corese_edge.export.parity import check_parity
    from corese_edge.runtime.torch_runner import TorchRunner

    cfg, model = state.cfg, state.torch_model()
    fp32_path = export_onnx(state.ckpt, state.out / T.onnx_artifact("fp32").filename, cfg.opset, model=model)
    runners = {"reference": TorchRunner(model), "onnx-fp32": drift_ort_runner(fp32_path)}
    try:
        for runner in runners.values():
            runner.activate()
        evaluated = Comparator.run(runners, state.data.evaluation, state.prep, progress=cfg.progress,
                                   desc=f"reference on {cfg.val_split}")
        parity = check_parity(evaluated, runners, state.data.calib_pool, state.prep)
    finally:
        for runner in runners.values():
            runner.close()
    state.fp32 = Fp32Result(fp32_path, parity, evaluated)
    return state.fp32


def stage_fp16(state: ExportState) -> Fp16Result:
    """FP16 ONNX with FP32 I/O (``model.fp16.onnx``); when it drifts past ``--max-drift`` on the
    selection split, :data:`fp16.SENSITIVE_FP16_OPS` stay FP32 if that lowers the drop."""
    from corese_edge.export import fp16 as fp16_stage

    fp32_path = state.artifact("onnx-fp32", "stage_fp32")
    fp16_path = fp16_stage.convert_fp16(fp32_path, state.out / T.onnx_artifact("fp16").filename)
    reference = state.target.reference_arithmetic("fp16")

    def drop(model) -> float:
        return state.selection_drop(model, reference)

    choice = fp16_stage.keep_sensitive_ops_if_better(
        fp16_path, drop(fp16_path), state.cfg.max_drift,
        lambda ops: fp16_stage.convert_fp16(fp32_path, state.work / "fp16-keep.onnx", ops), drop)
    state.fp16 = Fp16Result(fp16_path, choice.keep_fp32_ops, choice.note("FP16"))
    return state.fp16


def stage_int8(state: ExportState) -> Int8Result:
    """INT8 Q/DQ ONNX (``model.int8.onnx``) calibrated on the train split, with ONNX Runtime's
    quantizer (the policy of :class:`int8.Int8Policy`) or ModelOpt.  For ``--target tensorrt``
    everything that is not INT8 is FP16 (:func:`int8.to_fp16_qdq`); FP32 stays only where named:
    ``--keep-fp``, ``--auto-keep``, or :data:`fp16.SENSITIVE_FP16_OPS` when the selection split
    shows they lower a drop over the limit."""
    from corese_edge.export.int8 import get_flavour

    cfg, target = state.cfg, state.target
    fp32_path = state.artifact("onnx-fp32", "stage_fp32")
    flavour = get_flavour(target.int8_flavour)
    calibration = {**state.calib_info, "method": cfg.calib_method, "quantizer": cfg.quantizer,
                   "flavour": flavour.name}
    if cfg.quantizer == "ort" and flavour.fusion_placement:
        # issue 17: on the full coresse this placement matched or beat ModelOpt's on residual Adds, INT8
        # FLOPs, FP32 nodes and fusable blocks (benchmarks/qdq_compare.py), so ORT stays the default
        calibration["qdq_placement"] = "tensorrt-fusion"
        calibration["quantizer_choice"] = ("ort: default for --target tensorrt; its TensorRT fusion placement "
                                           "matches ModelOpt's counts (benchmarks/qdq_compare.py)")
    int8_path = state.out / T.onnx_artifact("int8").filename
    if cfg.quantizer == "modelopt":
        from corese_edge.data.calibration import CalibrationBatches
        from corese_edge.export.int8 import Int8Decision, match_nodes
        from corese_edge.export.modelopt import quantize_modelopt

        kept = match_nodes(cfg.keep_fp, _node_names(fp32_path)) if cfg.keep_fp else ()
        quantize_modelopt(fp32_path, int8_path, CalibrationBatches(state.calib_paths, state.prep, 8), cfg.calib_method,
                          kept, high_precision_dtype=flavour.high_precision)
        decision = Int8Decision(tuple(kept), (), {}, None, ())
    else:
        decision = _quantize_ort(state, fp32_path, int8_path, flavour)
    reasons = dict(decision.reasons)
    reasons.update({name: "--keep-fp" for name in decision.kept if name not in reasons})
    state.int8 = Int8Result(
        int8_path, flavour.name, cfg.quantizer, flavour.high_precision, decision.kept, decision.keep_fp32_ops,
        reasons, onnx_opset(int8_path), calibration, decision.auto_keep, decision.notes)
    return state.int8


def _quantize_ort(state: ExportState, fp32_path: Path, int8_path: Path, flavour):
    """Calibrate once with ONNX Runtime's calibrator, then run :class:`int8.Int8Policy` with the
    drops measured on the selection split as the target computes them."""
    from corese_edge.data.calibration import CalibrationBatches
    from corese_edge.export import int8 as int8_stage
    from corese_edge.export.comparator import onnx_logits

    cfg, work = state.cfg, state.work
    ref_arith = state.target.int8_reference_arithmetic
    pre = int8_stage.prepare_for_quantization(fp32_path, work / "pre.onnx")
    reader = int8_stage.StreamingCalibrationReader(
        CalibrationBatches(state.calib_paths, state.prep, int8_stage.CALIB_BATCH[cfg.calib_method]),
        progress=cfg.progress)
    ranges = int8_stage.calibrate(pre, reader, work / "ranges.json", cfg.calib_method, flavour.name)
    user_keep = int8_stage.match_nodes(cfg.keep_fp, _node_names(pre)) if cfg.keep_fp else ()
    policy = int8_stage.Int8Policy(pre, ranges, flavour, cfg.calib_method, fp32_path, cfg.max_drift, work,
                                   tuple(user_keep), cfg.auto_keep, cfg.progress)
    sensitivity = None
    if cfg.auto_keep:
        x, _ = state.selection_images()
        xs, ref = x[:SENSITIVITY_IMAGES], state.selection_reference()[:SENSITIVITY_IMAGES]
        sensitivity = (lambda proto: onnx_logits(proto, xs, ref_arith), ref)
    return policy.apply(int8_path, lambda model: state.selection_drop(model, ref_arith), sensitivity)


def stage_embed(state: ExportState) -> EmbedResult:
    """``--embed-preprocess``: a uint8-frames variant of every ONNX artifact, checked against FP32."""
    from corese_edge.export.embed import embed_preprocess
    from corese_edge.export.parity import check_embedded

    fp32_path = state.artifact("onnx-fp32", "stage_fp32")
    artifacts = state.artifacts
    paths = {f"{name}-preprocess": embed_preprocess(artifacts[name])
             for name in ("onnx-fp32", "onnx-fp16", "onnx-int8") if name in artifacts}
    check = check_embedded(fp32_path, paths["onnx-fp32-preprocess"], state.data.evaluation, state.prep)
    state.embed = EmbedResult(paths, check)
    return state.embed


def stage_openvino(state: ExportState) -> OpenVinoResult:
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
        if target.requires_openvino:
            raise UserError(f"--target {cfg.target}: {missing}")
        state.openvino = OpenVinoResult(None, None, {"skipped": missing},
                                        notes=(f"OpenVINO candidates skipped: {missing}",))
        return state.openvino
    build = _openvino_build(state)
    float_ir = ov_stage.ir_from_onnx(fp32_path, state.out / T.openvino_artifact("fp32").filename, build=build)
    info: dict[str, Any] = {"device": "CPU", "float_precision": ov_stage.device_float_precision("CPU"),
                            "float_ir": float_ir.name}
    int8_ir, route, calibration = None, None, None
    if cfg.int8:
        quantizer = target.ir_int8_quantizer(cfg.quantizer)
        route = OPENVINO_INT8_ROUTES[quantizer]
        options: dict[str, Any] = {}
        if route == "qdq":
            options["qdq_onnx_path"] = state.artifact("onnx-int8", "stage_int8")
        else:
            if state.int8 is None:  # the ONNX INT8 stage, when it ran, already described the calibration
                calibration = {**state.calib_info, "method": "minmax", "quantizer": "nncf"}
            if cfg.auto_keep:
                x, y = state.selection_images()
                options.update(max_drop_pp=cfg.max_drift, validation=(x, y))
        from corese_edge.data.calibration import CalibrationBatches

        int8_ir = ov_stage.quantize_ir(
            fp32_path, state.out / T.openvino_artifact("int8").filename,
            CalibrationBatches(state.calib_paths, state.prep, 8), route=route,
            subset_size=len(state.calib_paths), progress=cfg.progress, build=build, **options)
        info.update(int8_route=route, int8_quantizer=quantizer, int8_ir=int8_ir.name)
        if route == "qdq":
            info["int8_source"] = state.artifact("onnx-int8", "stage_int8").name
    state.openvino = OpenVinoResult(float_ir, int8_ir, info, route, calibration)
    return state.openvino


def _openvino_build(state: ExportState) -> dict[str, str]:
    """Build facts stored in each IR's rt_info (``corese_edge/build``)."""
    from importlib import metadata

    from corese_edge import __version__

    facts = {"corese_edge": __version__, "source_onnx": state.artifact("onnx-fp32", "stage_fp32").name,
             "checkpoint": state.ckpt_path.name, "model": str(state.ckpt.variant), "target": state.cfg.target}
    for dist in ("openvino", "nncf"):
        try:
            facts[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return facts


def stage_drift(state: ExportState) -> DriftResult:
    """Drift of every artifact against PyTorch FP32 on ``--val-split``, and the precision census of
    every ONNX artifact (also in the report's entries).

    Every artifact runs through its runtime runner on the same batches (:class:`comparator.Comparator`).
    The FP16 and INT8 graphs of ``--target tensorrt`` run with reference arithmetic
    (:meth:`targets.Target.reference_arithmetic`), as TensorRT computes them; the OpenVINO IRs run
    through OpenVINO with the runner's default configuration (the deployment), and their entries
    record the precision OpenVINO really ran (``bf16`` for the float IR on AMX, ``int8``).  Every
    entry names its ``backend`` and ``precision``."""
    from corese_edge.export.comparator import Comparator, open_drift_runner
    from corese_edge.export.drift import DriftReport

    cfg, target, artifacts = state.cfg, state.target, state.artifacts
    if state.fp32 is None:
        raise RuntimeError("the reference logits are missing: run stage_fp32 first")
    census = {name: _census(path) for name, path in artifacts.items() if path.suffix == ".onnx"}
    runners = {}
    for precision in ("fp16", "int8"):
        name = f"onnx-{precision}"
        if name in artifacts:
            runners[name] = open_drift_runner(artifacts[name], target.reference_arithmetic(precision))
    for name in ("openvino-float", "openvino-int8"):
        if name in artifacts:
            runners[name] = open_drift_runner(artifacts[name])
    results = Comparator.run(runners, state.data.evaluation, state.prep, progress=cfg.progress,
                             desc=f"validating on {cfg.val_split}") if runners else None
    report = DriftReport.from_run(state.fp32.evaluated, "reference", state.data.class_names, cfg.max_drift,
                                  split=cfg.val_split)
    logits = {"onnx-fp32": state.fp32.logits["onnx-fp32"], **(results.logits if results else {})}
    for name, value in logits.items():
        extra: dict[str, Any] = {"file": artifacts[name].name}
        facts = results.facts[name] if results and name in results.facts else None
        if facts is not None and facts.backend == "openvino":
            ex = facts.execution
            extra.update(backend="openvino", precision=facts.precision, device=ex.get("device"),
                         inference_precision_hint=ex.get("inference_precision"),
                         runtime_precisions=ex.get("runtime_precisions"))
            if name == "openvino-int8":
                extra.update(route=state.openvino.int8_route)
        else:
            extra.update(backend="onnxruntime", precision=T.ARTIFACTS[name].precision)
        if name == "onnx-int8":
            int8 = state.int8
            extra.update(flavour=target.int8_flavour, quantizer=cfg.quantizer, kept_fp=list(int8.kept),
                         high_precision=int8.high_precision, keep_fp32_ops=list(int8.keep_fp32_ops),
                         ort_graph_optimizations=facts.optimization)
        if name == "onnx-fp16":
            extra.update(keep_fp32_ops=list(state.fp16.keep_fp32_ops), ort_graph_optimizations=facts.optimization)
        if name in census:
            extra.update(census=census[name])
        report.add(name, value, **extra)
    state.drift = DriftResult(report, census)
    return state.drift


def stage_engine(state: ExportState) -> EngineResult | None:
    """TensorRT engines (``model.<precision>.plan`` + sidecar) when TensorRT and a GPU are here and
    the ONNX artifacts passed the drift gate; otherwise a note with the ``build-engine`` commands.
    Adds each engine's drift to the drift report.  None for a target without engines or ``--no-engine``."""
    from corese_edge.export import tensorrt as trt_stage

    cfg, out = state.cfg, state.out
    if not state.target.engines or cfg.engine is False:
        return None
    if state.drift is None:
        raise RuntimeError("the drift report is missing: run stage_drift first")
    artifacts = state.artifacts
    precisions = T.engine_precisions(cfg.fp16, cfg.int8)
    try:
        trt, gpu = state.engine_env or trt_stage.engine_environment()
    except trt_stage.EngineUnavailable as exc:
        commands = [trt_stage.build_engine_command(artifacts[f"onnx-{p}"], out / T.engine_artifact(p).filename,
                                                   cfg.min_batch, cfg.opt_batch, cfg.max_batch) for p in precisions]
        state.engine = EngineResult(notes=(f"engine not built: {exc}; on the target device run: {' && '.join(commands)}",))
        return state.engine
    if not state.drift.report.passed:
        state.engine = EngineResult(notes=("engines not built: the ONNX artifacts failed the drift gate",))
        return state.engine
    builds: dict[str, Any] = {}
    notes: list[str] = []
    for p in precisions:
        built = trt_stage.build_engine(
            artifacts[f"onnx-{p}"], out / T.engine_artifact(p).filename, cfg.min_batch, cfg.opt_batch,
            cfg.max_batch, cfg.workspace_gb, trt=trt, gpu=gpu)
        builds[p] = built
        note = _engine_drift(state.drift.report, built, p, cfg, state.data, state.prep)
        if note:
            notes.append(note)
    state.engine = EngineResult(builds, tuple(notes))
    return state.engine


def _engine_drift(report, built, precision: str, cfg: ExportConfig, data: ExportData, prep) -> str | None:
    """Add the engine's drift entry to ``report`` (its profile [min, max] batch respected); a note
    when the TensorRT runner cannot run here."""
    from corese_edge.export.comparator import Comparator, open_drift_runner
    from corese_edge.runtime.trt import PlanSidecar

    name = f"trt-{precision}"
    try:
        runner = open_drift_runner(built.plan).activate()
    except ImportError as exc:
        return f"{name}: drift not measured, the TensorRT runner is unavailable ({exc})"
    try:
        results = Comparator.run({name: runner}, data.evaluation, prep, progress=cfg.progress,
                                 batch_limits={name: (cfg.min_batch, cfg.max_batch)}, desc=f"validating {name}")
    finally:
        runner.close()
    side = PlanSidecar.read(built.sidecar)  # the one sidecar schema, as the runner reads it
    report.add(name, results.logits[name], file=built.plan.name, backend="tensorrt", precision=precision,
               trt_version=side.trt_version, gpu_name=side.gpu_name)
    return None


def stage_write(state: ExportState, echo: Callable[[str], None] | None = None):
    """drift_report.{json,md,png}, export.json and the closing table (to ``echo``, default the log),
    from the stage results (:func:`record.write_export`).  Does not raise on a failed gate;
    :func:`pipeline.run_export` does, after this."""
    from corese_edge.export.record import write_export

    return write_export(state, echo)


def _census(path: Path) -> dict[str, Any]:
    """The precision census of an ONNX artifact as export.json and the drift report carry it."""
    from corese_edge.export.census import precision_census

    return precision_census(path).to_dict()


def _node_names(path: Path) -> list[str]:
    import onnx

    return [n.name for n in onnx.load(os.fspath(path), load_external_data=False).graph.node]
