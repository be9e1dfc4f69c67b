"""OpenVINO IR from corese-edge ONNX: the float IR and the INT8 IR (``--target openvino``).

Float IR (:func:`ir_from_onnx`)
    The FP32 ONNX converted by ``openvino.convert_model`` and saved with FP32 weights
    (``compress_to_fp16=False``).  An IR carries no "run in FP32" instruction, so the device runs it
    at its default inference precision: BF16 on a CPU with AMX or AVX-512-BF16, FP32 on other CPUs,
    FP16 on Intel GPUs (:func:`device_float_precision`).  FP16 weights would change nothing on the
    BF16 path and lose bits on the FP32 one, so the weights stay FP32.

INT8 IR (:func:`quantize_ir`), two routes
    ``"nncf"``: NNCF's post-training quantization (``nncf.quantize``) of the OpenVINO model read
    from the FP32 ONNX, calibrated on the same train-split images as the ONNX INT8 artifact; with a
    drift limit and a validation set, ``nncf.quantize_with_accuracy_control``, which keeps the most
    harmful layers in float until the drop is within the limit.  ``"qdq"``: OpenVINO reading the
    Q/DQ ONNX that ONNX Runtime's quantizer wrote (``model.int8.onnx``); OpenVINO turns each
    QuantizeLinear/DequantizeLinear pair into a FakeQuantize and runs the layers it feeds in INT8.
    :data:`DEFAULT_ROUTE` was chosen by measurement (``benchmarks/ov_int8_routes.py``).

Both keep the ONNX's dynamic batch, and both carry the ONNX's corese-edge metadata in rt_info
(:func:`corese_edge.metadata.write_rt_info`) plus build facts (source ONNX and its sha256,
precision, quantizer, OpenVINO version).  The ``.xml`` and ``.bin`` are written to temporary files
in the destination folder and moved into place, ``.bin`` first and ``.xml`` last (one commit of
:func:`corese_edge.atomic.atomic_files`), so a failure while converting, quantizing or saving leaves
any previous IR as it was and no partial files.

``openvino`` and ``nncf`` are imported lazily; a missing one is a one-line
:class:`~corese_edge.errors.MissingExtra` naming ``pip install 'corese-edge[openvino]'``.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from corese_edge.atomic import atomic_files, file_sha256
from corese_edge.errors import MissingExtra, UserError, require
from corese_edge.runtime.openvino import shared_core
from corese_edge.sigstack import signal_stack_guard


ROUTES = ("nncf", "qdq")
#: the INT8 route ``quantize_ir`` takes unless told otherwise.  Measured (benchmarks/ov_int8_routes.py,
#: this 2-core AMX Xeon, two interleaved runs): the NNCF IR was at least as fast as OpenVINO reading
#: our U8S8 Q/DQ ONNX at every point (coresse and coresse-lite, batch 1 and 8; 1.02-1.14x) with the
#: same test top-1 on the synthetic demo (drop 0.00 pp with these settings), so the issue's rule
#: ("prefer NNCF if it is at least as fast and as accurate") picks it.
DEFAULT_ROUTE = "nncf"
#: NNCF settings of the ``nncf`` route, each measured against its alternative on the synthetic demo
#: run and the full coresse (benchmarks/ov_int8_routes.py): the PERFORMANCE preset (symmetric
#: activations; MIXED was no more accurate and slower at coresse batch 8), no model_type
#: (TRANSFORMER leaves about 40 % of the quantizers out and was the slowest INT8 IR at every point),
#: NNCF's default fast bias correction, and activation ranges from the min / max over all
#: calibration images (``MINMAX``, what ONNX Runtime's MinMax calibrator does) instead of NNCF's
#: default mean of per-image min / max, which clipped enough to triple the logit error (0.033 vs
#: 0.0096 of the logits' standard deviation on the demo's test split) at the same speed.
NNCF_PRESET = "performance"
NNCF_MODEL_TYPE: str | None = None
NNCF_FAST_BIAS_CORRECTION = True
NNCF_ACTIVATION_RANGE = "minmax"  # a nncf.quantization.range_estimator.RangeEstimatorParametersSet member
#: OpenVINO's names of inference precisions -> the names corese-edge reports
_PRECISION_NAMES = {"bf16": "bf16", "f32": "fp32", "f16": "fp16"}
#: op types that show an OpenVINO model is quantized (ONNX Q/DQ and NNCF both become FakeQuantize)
_QUANTIZED_OPS = ("FakeQuantize", "FakeConvert")


# ------------------------------------------------------------------------------- availability


def _openvino():
    return require("openvino", "openvino", "OpenVINO IR export")


@contextlib.contextmanager
def _quiet_nncf(progress: bool = False) -> Iterator[None]:
    """NNCF's INFO logging off (its warnings stay on), and its rich progress bars off unless ``progress``.

    NNCF logs through its own ``nncf`` logger with a stdout handler at INFO (nncf 3.4
    ``nncf/common/logging/logger.py``); its progress bars are rich consoles on ``sys.stdout``
    (``nncf/common/logging/track_progress.py``), so redirecting stdout hides them while the
    logger's handler, bound to the real stdout at import, still shows warnings.  Importing nncf
    imports torch where it is installed, whose ``torch.utils.cpp_extension`` warns about a missing
    CUDA runtime at import: irrelevant to a CPU export, so that logger is held at ERROR meanwhile.
    """
    cpp_ext = logging.getLogger("torch.utils.cpp_extension")
    cpp_level = cpp_ext.level
    cpp_ext.setLevel(logging.ERROR)
    # never create the "nncf" logger ourselves: nncf installs its own Logger subclass (with
    # warning_once etc.) by calling getLogger after setLoggerClass, and would get a plain Logger
    nncf_logger = logging.Logger.manager.loggerDict.get("nncf")
    saved = [(nncf_logger, nncf_logger.level)] if isinstance(nncf_logger, logging.Logger) else []
    for obj, _ in saved:
        obj.setLevel(max(obj.level, logging.WARNING))
    try:
        with contextlib.redirect_stdout(io.StringIO()) if not progress else contextlib.nullcontext():
            yield
    finally:
        for obj, level in saved:
            obj.setLevel(level)
        cpp_ext.setLevel(cpp_level)


def _nncf():
    with _quiet_nncf():
        nncf = require("nncf", "openvino", "INT8 quantization of OpenVINO IR")
    # importing nncf set its logger to INFO; keep it at WARNING from here on
    logging.getLogger("nncf").setLevel(max(logging.getLogger("nncf").level, logging.WARNING))
    return nncf


def openvino_unavailable() -> str | None:
    """None when ``openvino`` and ``nncf`` import; otherwise one line saying which is missing and
    ``pip install 'corese-edge[openvino]'``."""
    for load in (_openvino, _nncf):
        try:
            load()
        except MissingExtra as exc:
            return str(exc)
        except Exception as exc:  # a broken install (e.g. a wheel for another CPU) is as unusable as none
            what = "openvino" if load is _openvino else "nncf"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{what} failed to import ({first}): pip install -U 'corese-edge[openvino]'"
    return None


def device_float_precision(device: str = "CPU") -> str:
    """The precision a float IR runs at on ``device`` by default: ``"bf16"``, ``"fp32"`` or ``"fp16"``.

    OpenVINO compiles a model with the device's ``INFERENCE_PRECISION_HINT`` unless told otherwise;
    on a CPU that is bf16 where OpenVINO finds native BF16 support (AMX here) and f32 elsewhere; the
    rule is OpenVINO's and this reads its answer.  A device without
    the property falls back on its ``OPTIMIZATION_CAPABILITIES``.  A device OpenVINO does not see is
    a one-line :class:`UserError` naming the ones it does.
    """
    _openvino()
    core = shared_core()
    if device.split(":")[0].split(".")[0] not in {d.split(".")[0] for d in core.available_devices} | {"AUTO", "HETERO", "MULTI"}:
        raise UserError(f"OpenVINO device {device!r} is not available here; available: {', '.join(core.available_devices)}")
    try:
        hint = core.get_property(device, "INFERENCE_PRECISION_HINT")
        name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        if name in _PRECISION_NAMES:
            return _PRECISION_NAMES[name]
    except RuntimeError:
        pass
    try:
        caps = {str(c).upper() for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")}
    except RuntimeError as exc:
        raise UserError(f"OpenVINO device {device!r}: cannot read its precision ({_first_line(exc)})") from None
    if device.upper().startswith("CPU"):
        return "bf16" if "BF16" in caps else "fp32"
    return "fp16" if "FP16" in caps else "fp32"


# ------------------------------------------------------------------------------- float IR


def ir_from_onnx(onnx_path: str | os.PathLike, xml_path: str | os.PathLike, *,
                 build: Mapping[str, str] | None = None) -> Path:
    """OpenVINO IR (``xml_path`` and the ``.bin`` beside it) from a corese-edge ONNX.

    FP32 weights, dynamic batch kept, the ONNX's corese-edge metadata in rt_info plus build facts
    (``source_onnx``, ``source_onnx_sha256``, ``precision`` ``"fp32"`` -- the IR's own; the device
    picks what it runs at, :func:`device_float_precision` -- ``quantizer`` ``"none"``,
    ``openvino_version``), updated by ``build``.  Written atomically.  Returns ``xml_path``.
    A file that is not a readable corese-edge ONNX, or one OpenVINO cannot convert, is a
    one-line :class:`UserError`.
    """
    ov = _openvino()
    props = _onnx_props(onnx_path)
    model = _convert(ov, onnx_path)
    facts = {"precision": "fp32", "quantizer": "none"}
    facts.update(build or {})
    return save_ir(ov, model, xml_path, props, _build_facts(ov, onnx_path, facts))


# ------------------------------------------------------------------------------- INT8 IR


def quantize_ir(
    fp32_onnx_path: str | os.PathLike,
    xml_path: str | os.PathLike,
    calibration: Iterable[np.ndarray],
    *,
    route: str = DEFAULT_ROUTE,
    qdq_onnx_path: str | os.PathLike | None = None,
    subset_size: int = 300,
    max_drop_pp: float | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    progress: bool = True,
    build: Mapping[str, str] | None = None,
) -> Path:
    """The INT8 IR at ``xml_path`` (and its ``.bin``); returns ``xml_path``.

    ``route="nncf"``: NNCF quantizes the OpenVINO model of ``fp32_onnx_path``, calibrated on
    ``calibration``: NCHW float32 batches, preprocessed like the model's input (normally
    :class:`corese_edge.data.calibration.CalibrationBatches` over the images the ONNX INT8 artifact
    is calibrated on).  It uses at most ``subset_size`` images; when the stream holds more, an
    evenly spaced ``subset_size`` of them, so a stream sorted by class stays spread over the
    classes (pass ``subset_size`` >= the stream's size to use every image).  With ``max_drop_pp``
    and ``validation`` (``(x, y)``: NCHW float32 images and their integer labels),
    ``nncf.quantize_with_accuracy_control`` keeps layers in float until the top-1 accuracy drop
    against the float model is at most ``max_drop_pp`` percentage points; otherwise
    ``nncf.quantize``.

    ``route="qdq"``: OpenVINO reads ``qdq_onnx_path`` (a Q/DQ ONNX from the ONNX INT8 stage) as it
    is; ``calibration`` is not used (that ONNX was calibrated already).

    The metadata and build facts (``precision`` ``"int8"``, ``quantizer``, ``route``, the source
    ONNX's sha256, ``calibration_images`` for nncf) go into rt_info; ``build`` adds to them.  Written
    atomically.  One-line :class:`UserError` for an unknown route, a missing ``qdq_onnx_path``, a
    calibration stream without images, a bad ONNX, a failed quantization, and a result that holds
    no quantized layer.  ``progress`` shows NNCF's progress bars.
    """
    if route not in ROUTES:
        raise UserError(f"unknown OpenVINO INT8 route {route!r}; choose one of: {', '.join(ROUTES)}")
    ov = _openvino()
    props = _onnx_props(fp32_onnx_path)
    facts: dict[str, str] = {"precision": "int8", "route": route}
    if route == "qdq":
        if qdq_onnx_path is None:
            raise UserError("the qdq route reads the Q/DQ ONNX (model.int8.onnx): pass qdq_onnx_path")
        _onnx_props(qdq_onnx_path)  # the Q/DQ file must itself be a corese-edge ONNX
        model = _convert(ov, qdq_onnx_path)
        facts["quantizer"] = "onnxruntime Q/DQ read by OpenVINO"
        source = qdq_onnx_path
    else:
        if subset_size < 1:
            raise UserError(f"subset_size must be at least 1, got {subset_size}")
        if (max_drop_pp is None) != (validation is None):
            raise UserError("accuracy-controlled quantization needs both max_drop_pp and validation (x, y)")
        nncf = _nncf()
        images = _CalibrationImages(calibration, subset_size)
        model = _convert(ov, fp32_onnx_path)
        model = _nncf_quantize(nncf, model, images, max_drop_pp, validation, progress)
        facts.update(quantizer=f"nncf {nncf.__version__}", calibration_images=str(len(images)),
                     nncf_preset=NNCF_PRESET, nncf_model_type=str(NNCF_MODEL_TYPE),
                     nncf_activation_range=NNCF_ACTIVATION_RANGE,
                     nncf_fast_bias_correction=str(NNCF_FAST_BIAS_CORRECTION).lower())
        if max_drop_pp is not None:
            facts["nncf_accuracy_control_max_drop_pp"] = f"{float(max_drop_pp):g}"
        source = fp32_onnx_path
    if quantized_layers(model) == 0:
        raise UserError(f"{source}: OpenVINO found nothing quantized in it (no FakeQuantize); "
                        + ("export it with --int8" if route == "qdq" else "NNCF quantized no layer"))
    facts.update(build or {})
    return save_ir(ov, model, xml_path, props, _build_facts(ov, source, facts))


def quantized_layers(model: Any) -> int:
    """Number of FakeQuantize / FakeConvert ops in an ``openvino.Model`` (0: not quantized)."""
    return sum(op.get_type_name() in _QUANTIZED_OPS for op in model.get_ops())


class _CalibrationImages:
    """A re-iterable stream of single images ``(1, C, H, W)`` drawn from NCHW batches.

    One image per item, so NNCF's ``subset_size`` counts images (as ``--calib-size`` does) and its
    statistics are per image whatever the batch size of the source.  A re-iterable source
    (``CalibrationBatches``, a list) is streamed again on every NNCF pass, one batch in memory;
    a one-shot iterator is read once and its chosen images kept.
    """

    def __init__(self, batches: Iterable[np.ndarray], limit: int) -> None:
        self._batches = batches
        self._kept: list[np.ndarray] | None = None  # the chosen images of a one-shot source
        if iter(batches) is batches:  # a generator: NNCF makes several passes, so keep the images
            self._kept = list(_single_images(batches))
        total = getattr(batches, "num_images", None)
        if total is None:
            total = len(self._kept) if self._kept is not None else sum(1 for _ in _single_images(batches))
        if total == 0:
            raise UserError("no calibration images were read (the calibration stream is empty)")
        chosen = np.unique(np.round(np.linspace(0, total - 1, min(limit, total))).astype(int)).tolist()
        self._chosen = set(chosen)
        if self._kept is not None:
            self._kept = [self._kept[i] for i in chosen]

    def __len__(self) -> int:
        return len(self._chosen)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._kept is not None:
            yield from self._kept
            return
        for i, img in enumerate(_single_images(self._batches)):
            if i in self._chosen:
                yield img


def _single_images(batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for batch in batches:
        arr = np.asarray(batch, dtype=np.float32)
        if arr.ndim != 4:
            raise UserError(f"calibration batches must be NCHW arrays, got shape {arr.shape}")
        for i in range(arr.shape[0]):
            yield np.ascontiguousarray(arr[i:i + 1])


def _nncf_quantize(nncf, model, images: _CalibrationImages, max_drop_pp: float | None,
                   validation: tuple[np.ndarray, np.ndarray] | None, progress: bool,
                   overrides: Mapping[str, Any] | None = None):
    """``nncf.quantize`` (or its accuracy-control form) with this module's settings; ``overrides``
    replaces keyword arguments of those calls (benchmarks/ov_int8_routes.py compares settings)."""
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    common = dict(
        preset=getattr(nncf.QuantizationPreset, NNCF_PRESET.upper()),
        subset_size=len(images),
        fast_bias_correction=NNCF_FAST_BIAS_CORRECTION,
        model_type=getattr(nncf.ModelType, NNCF_MODEL_TYPE.upper()) if NNCF_MODEL_TYPE else None,
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=getattr(RangeEstimatorParametersSet, NNCF_ACTIVATION_RANGE.upper())),
    )
    common.update(overrides or {})
    calibration = nncf.Dataset(images)
    try:
        # NNCF makes and frees OpenVINO cores of its own (sigstack.py says what that can break)
        with _quiet_nncf(progress), signal_stack_guard():
            if max_drop_pp is None:
                return nncf.quantize(model, calibration, **common)
            x, y = validation
            x = np.asarray(x, dtype=np.float32)
            y = np.asarray(y).astype(np.int64).ravel()
            if x.ndim != 4 or len(x) != len(y) or len(y) == 0:
                raise UserError(f"validation must be (x NCHW, y labels) of the same non-zero length; got {x.shape}, {y.shape}")
            items = [(x[i:i + 1], int(y[i])) for i in range(len(y))]
            # the same settings; this function names the advanced parameters differently
            common["advanced_quantization_parameters"] = common.pop("advanced_parameters")
            return nncf.quantize_with_accuracy_control(
                model, calibration, nncf.Dataset(items), _top1_validation,
                max_drop=float(max_drop_pp) / 100.0, drop_type=nncf.DropType.ABSOLUTE, **common)
    except UserError:
        raise
    except Exception as exc:  # NNCF's own errors (nncf.ValidationError, RuntimeError from OpenVINO)
        raise UserError(f"NNCF could not quantize the model ({_first_line(exc)})") from None


def _top1_validation(compiled_model, items: Iterable[tuple[np.ndarray, int]]) -> tuple[float, list[float]]:
    """NNCF's ``validation_fn``: (top-1 accuracy in [0, 1], 1.0/0.0 per item)."""
    output = compiled_model.outputs[0]
    hits = [float(int(np.argmax(compiled_model(x)[output], axis=1)[0]) == label) for x, label in items]
    return (sum(hits) / len(hits) if hits else 0.0), hits


# ------------------------------------------------------------------------------- shared parts


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # OpenVINO's messages start with a C++ source location line; the reason is further down
    useful = [ln for ln in lines if not ln.startswith(("Exception from", "Check ")) and ".cpp:" not in ln]
    return (useful or lines or [type(exc).__name__])[0][:300]


def _onnx_props(onnx_path: str | os.PathLike) -> dict[str, str]:
    """The corese-edge metadata_props of an ONNX file (validated), or a one-line UserError."""
    from corese_edge.metadata import ONNX_KEYS, ArtifactMetadata

    path = Path(onnx_path)
    if not path.is_file():
        raise UserError(f"{path}: no such ONNX file")
    onnx = require("onnx", "export", "reading ONNX metadata")
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise UserError(f"{path}: not a readable ONNX file ({_first_line(exc)})") from None
    props = {p.key: p.value for p in proto.metadata_props if p.key in ONNX_KEYS}
    ArtifactMetadata.from_props(props, source=str(path))  # one-line UserError when not corese-edge
    return props


def _convert(ov, onnx_path: str | os.PathLike):
    try:
        return ov.convert_model(os.fspath(onnx_path))
    except Exception as exc:
        raise UserError(f"{onnx_path}: OpenVINO could not convert it ({_first_line(exc)})") from None


def _build_facts(ov, source: str | os.PathLike, facts: Mapping[str, str]) -> dict[str, str]:
    """``facts`` plus the file the IR was converted from and OpenVINO's version; those name the
    file actually hashed, so a caller's ``source_onnx`` (e.g. model.onnx for a qdq-route IR read
    from model.int8.onnx) does not override them."""
    out = {str(k): str(v) for k, v in facts.items()}
    out.update(source_onnx=Path(source).name, source_onnx_sha256=file_sha256(source), openvino_version=ov.get_version())
    return out


def save_ir(ov, model, xml_path: str | os.PathLike, props: Mapping[str, str], build: Mapping[str, str]) -> Path:
    """Metadata into rt_info, then ``ov.save_model`` to temporaries beside ``xml_path``, moved into place."""
    from corese_edge.metadata import write_rt_info

    xml = Path(xml_path)
    if xml.suffix != ".xml":
        raise UserError(f"{xml}: an OpenVINO IR file name must end in .xml")
    write_rt_info(model, props, build)
    # .bin first, .xml last: the .xml is what readers open, and it names its .bin by stem (the
    # temporaries share one stem, so save_model writes the .bin of tmp_xml to tmp_bin)
    with atomic_files(xml.with_suffix(".bin"), xml) as (tmp_bin, tmp_xml):
        try:
            ov.save_model(model, os.fspath(tmp_xml), compress_to_fp16=False)
        except Exception as exc:
            raise UserError(f"{xml}: OpenVINO could not save the IR ({_first_line(exc)})") from None
    return xml
