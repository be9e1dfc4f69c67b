"""Stage 3: FP32 ONNX -> INT8 Q/DQ ONNX with ONNX Runtime's static quantizer.

Two flavours (docs/ARCHITECTURE.md, "Two INT8 flavours"; the capability table in :mod:`corese_edge.export.targets`):

``s8s8`` (``--target tensorrt``)
    Symmetric int8 activations and per-channel symmetric int8 weights on the inputs of Conv, Gemm
    and MatMul (not on their outputs); biases stay float.  Every QuantizeLinear / DequantizeLinear
    zero point is an int8 zero, weights use [-127, 127] -- what TensorRT requires ("zeroPt must be
    all zeros").  Everything that is not INT8 is **FP16** (graph inputs and outputs stay FP32, as
    in the FP16 artifact); only layers named on purpose stay FP32 (``keep_fp`` nodes,
    ``keep_fp32_ops`` op types).  See "INT8 + FP16 for TensorRT" below.  After ORT's quantizer,
    :func:`corese_edge.export.qdq_placement.place_fusion_qdq` adds the Q/DQ TensorRT needs to fuse
    (residual Add inputs, pooling, Conv -> LayerNorm), from ranges :func:`calibrate` collects for it.
``u8s8`` (``--target cpu``)
    uint8 activations, per-channel symmetric int8 weights, on Conv, MatMul and Gemm only; Conv
    outputs are quantized too (so ONNX Runtime fuses each into a QLinearConv), MatMul and Gemm
    outputs stay float (MatMulIntegerToFloat / QGemm with a float output), everything else FP32.
    See "Why the CPU flavour quantizes only the weighted ops" below.

The stage is split so each part can run and be tested alone: :func:`prepare_for_quantization`
(ORT's ``quant_pre_process``), :func:`calibrate` (streams batches through ORT's calibrator and
writes the tensor ranges to a JSON cache), :func:`quantize_int8` (quantizes from that cache, so
re-quantizing with other layers kept in FP32 needs no second calibration; for ``s8s8`` it then
applies :func:`to_fp16_qdq`).

INT8 + FP16 for TensorRT
    Under strong typing (TensorRT 10.x with ``STRONGLY_TYPED``, always in 11.x) a layer runs in the
    type of its tensors, so an ``s8s8`` graph whose non-quantized layers are FP32 runs LayerNorm,
    GELU, the residual Adds and the transposes of the ConvNeXt branch in FP32.  NVIDIA ModelOpt's
    ONNX PTQ (``high_precision_dtype="fp16"``, its default) therefore converts the quantized graph
    to FP16 and raises the opset to 19, the first whose QuantizeLinear / DequantizeLinear take
    FP16 inputs and FP16 scales (nvidia-modelopt 0.47: ``modelopt/onnx/utils.py``
    ``BASE_MIN_OPSET = 19``, ``autocast/convert.py`` ``convert_to_f16``, and
    ``fold_dq_fp32_to_fp16_casts``, which removes ``DQ -> Cast(FP16)`` so that each DQ output
    already has its consumer's type).  :func:`to_fp16_qdq` does the same: opset 19, FP16 scales,
    DQ outputs typed like their consumers, int8 zero points untouched, no casts between a DQ and
    the layer it feeds.  The alternative, FP32 scales at opset 17 with ``Cast`` nodes around every
    Q/DQ pair, leaves ``DQ -> Cast -> Conv`` chains that ModelOpt removes on purpose because the
    DQ no longer feeds the layer it is meant to quantize.

    TensorRT 8.6 (JetPack 6.0) cannot read FP16 scales: its ONNX parser reads every Q/DQ scale as
    float32 (``static_cast<float const*>(scale.values)`` in ``QuantDequantLinearHelper``,
    onnx/onnx-tensorrt tag 8.6-GA ``builtin_op_importers.cpp``); FP16 scales are accepted from the
    9.0 parser on (``inputs.at(1).isFp16()``).  8.6 is weakly typed anyway (precision comes from
    the builder flags, ``INT8`` + ``FP16``), so the one artifact stays one file and the 8.6 build
    parses :func:`weakly_typed_qdq` of it: the same graph with every FP16 tensor widened to FP32,
    at opset 17, which is the graph this module wrote before FP16 was added.

Why the CPU flavour quantizes only the weighted ops
    Quantizing every op ONNX Runtime can quantize (its registry, ~30 op types) wraps ConvNeXt's
    erf-GELU, bias Adds, layer-scale Muls and residual Adds in Q/DQ pairs.  ORT then runs them as
    unfused Div + Erf in FP32 and as QLinearAdd / QLinearMul (a requantization each) instead of one
    BiasGelu, and every Q/DQ pair left between two FP32 ops costs a pass over the tensor
    (DequantizeLinear on one thread: it is a plain loop outside the intra-op thread pool,
    onnxruntime ``core/providers/cpu/quantization/quantize_linear.cc``), which also caps what a
    second thread gains.  With only Conv /
    MatMul / Gemm quantized, and MatMul / Gemm outputs left float, every weighted op fuses
    (QLinearConv; MatMulIntegerToFloat and QGemm, which run on MLAS's U8S8 QGEMM, its AMX kernel
    where the CPU has AMX-INT8), BiasGelu fuses as in FP32, and fewer tensors are rounded.  On the
    full ``coresse`` at 224 px, ONNX Runtime's optimized graph went from 18 Div + 18 Erf, 88
    QLinearAdd and 55 QLinearMul to 18 BiasGelu, 15 QLinearAdd and no QLinearMul, for about 12 %
    less CPU time per image at 1 thread; the demo run's drop stayed 0.00 pp with a smaller largest
    logit difference (``benchmarks/ort_int8_amx.py``).

Bounded calibration memory: ORT's ``CalibMaxIntermediateOutputs`` option clears the collected
outputs *without* merging them in the onnxruntime releases we use (microsoft/onnxruntime#18893;
the fix in PR #20226 was never merged), so it silently drops calibration data.  :func:`calibrate`
instead hands the calibrator one batch per ``collect_data`` call; after each call ORT merges that
batch into its running min/max (MinMax) or histograms (entropy, percentile) and frees it.  Peak
memory is therefore one batch of activations, however many images are used.
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from corese_edge.atomic import atomic_path
from corese_edge.errors import UserError, require
from corese_edge.export.onnx_fp32 import onnx_opset

log = logging.getLogger(__name__)

#: TensorRT's Q/DQ placement: quantize the inputs of the weighted ops
TENSORRT_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: ONNX Runtime CPU's: the weighted ops only (module docstring, "Why the CPU flavour ...")
CPU_OP_TYPES = ("Conv", "Gemm", "MatMul")
#: their outputs stay float, so DQ -> MatMul / Gemm fuse into MatMulIntegerToFloat / QGemm and the
#: bias Add + GELU after them fuse into BiasGelu; Conv outputs stay quantized (QLinearConv needs them)
CPU_FLOAT_OUTPUT_OP_TYPES = ("Gemm", "MatMul")
#: the first opset whose QuantizeLinear / DequantizeLinear take FP16 inputs and scales
FP16_QDQ_OPSET = 19
#: the opset of the weakly typed form that TensorRT 8.6's parser reads (it supports opsets <= 17)
WEAKLY_TYPED_OPSET = 17
#: batch size fed to the calibrator: MinMax keeps only per-tensor min/max of a batch, the histogram
#: methods keep every activation of it until merged, so they get smaller batches
CALIB_BATCH = {"minmax": 8, "entropy": 2, "percentile": 2}


@dataclass(frozen=True)
class Flavour:
    name: str
    activation_type: str  # "QInt8" | "QUInt8" (onnxruntime.quantization.QuantType members)
    weight_type: str
    op_types: tuple[str, ...] | None  # None = every op ORT can quantize
    extra_options: tuple[tuple[str, object], ...]
    symmetric_int8: bool  # all zero points must be int8 zeros
    high_precision: str = "fp32"  # what the layers that are not INT8 compute in: "fp16" | "fp32"
    #: run :func:`corese_edge.export.qdq_placement.place_fusion_qdq` after ORT's quantizer (residual
    #: Adds, pooling, Conv -> LayerNorm: TensorRT's placement recommendations); the CPU flavour does not
    fusion_placement: bool = False


FLAVOURS = {
    "s8s8": Flavour(
        "s8s8", "QInt8", "QInt8", TENSORRT_OP_TYPES,
        (("ActivationSymmetric", True), ("WeightSymmetric", True), ("QuantizeBias", False),
         # TensorRT's placement guidance: quantize the inputs of weighted ops, not their outputs
         ("OpTypesToExcludeOutputQuantization", TENSORRT_OP_TYPES)),
        symmetric_int8=True, high_precision="fp16", fusion_placement=True,
    ),
    "u8s8": Flavour(
        "u8s8", "QUInt8", "QInt8", CPU_OP_TYPES,
        (("WeightSymmetric", True), ("OpTypesToExcludeOutputQuantization", CPU_FLOAT_OUTPUT_OP_TYPES)),
        symmetric_int8=False,
    ),
}


def get_flavour(name: str) -> Flavour:
    try:
        return FLAVOURS[name]
    except KeyError:
        raise UserError(f"unknown INT8 flavour {name!r}; choose one of: {', '.join(FLAVOURS)}") from None


def _calibration_method(name: str):
    quant = require("onnxruntime.quantization", "export", "INT8 quantization")
    methods = {
        "minmax": quant.CalibrationMethod.MinMax,
        "entropy": quant.CalibrationMethod.Entropy,
        "percentile": quant.CalibrationMethod.Percentile,
    }
    try:
        return methods[name]
    except KeyError:
        raise UserError(f"unknown calibration method {name!r}; choose one of: {', '.join(methods)}") from None


def op_types_to_quantize(flavour: Flavour) -> list[str]:
    if flavour.op_types is not None:
        return list(flavour.op_types)
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def op_types_to_calibrate(flavour: Flavour) -> list[str]:
    """The op types whose input and output ranges :func:`calibrate` collects: those the quantizer
    quantizes, plus, for a flavour with ``fusion_placement``, the ops whose inputs that pass quantizes."""
    ops = op_types_to_quantize(flavour)
    if flavour.fusion_placement:
        from corese_edge.export.qdq_placement import PLACEMENT_CALIBRATION_OPS

        ops += [op for op in PLACEMENT_CALIBRATION_OPS if op not in ops]
    return ops


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ORT's quantizer prints, and logs through the root logger itself; keep that off the console.

    Records of named loggers (ours included) are untouched.  A NullHandler stops ``logging.warning``
    from calling ``basicConfig`` behind the application's back.
    """

    class _DropRootRecords(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return False

    root = logging.getLogger()
    drop = _DropRootRecords()
    root.addFilter(drop)
    placeholder = None
    if not root.handlers:
        placeholder = logging.NullHandler()
        root.addHandler(placeholder)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.removeFilter(drop)
        if placeholder is not None:
            root.removeHandler(placeholder)


# ----------------------------------------------------------------------------------- stages


def prepare_for_quantization(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike) -> Path:
    """ORT's ``quant_pre_process`` (shape inference + basic graph optimizations); keep opset <= 20."""
    onnx = require("onnx", "export", "INT8 quantization")
    shape_inference = require("onnxruntime.quantization.shape_inference", "export", "INT8 quantization")
    opset = onnx_opset(onnx_in)
    if opset > 20:
        raise UserError(f"{onnx_in}: opset {opset} is above 20, which ONNX Runtime's quantizer handles; export with --opset 17")
    out = Path(onnx_out)
    with atomic_path(out) as tmp, _quiet_quantizer():
        shape_inference.quant_pre_process(os.fspath(onnx_in), os.fspath(tmp))
    return out


class StreamingCalibrationReader:
    """An ONNX Runtime ``CalibrationDataReader`` over a stream of NCHW batches.

    ``get_next()`` returns ``{input_name: batch}`` and decodes the next batch only when asked, so
    one batch is in memory at a time.  ``progress`` shows a tqdm bar over the batches.
    """

    def __init__(self, batches: Iterable[np.ndarray], input_name: str = "input", progress: bool = False,
                 total: int | None = None, desc: str = "calibrating") -> None:
        self._batches = batches
        self.input_name = input_name
        self.progress = progress
        self.total = total if total is not None else (len(batches) if hasattr(batches, "__len__") else None)
        self.desc = desc
        self.images = 0
        self._it: Iterator[np.ndarray] | None = None
        self._bar = None

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._it is None:
            self._it = iter(self._batches)
            if self.progress:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self.total, desc=self.desc, unit="batch", leave=False)
        batch = next(self._it, None)
        if batch is None:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            return None
        self.images += int(batch.shape[0])
        if self._bar is not None:
            self._bar.update(1)
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:
        self._it = None
        self.images = 0

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        while True:
            feed = self.get_next()
            if feed is None:
                return
            yield feed


class _OneFeed:
    """A CalibrationDataReader holding exactly one feed (so ORT merges after every batch)."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self._feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self._feed = self._feed, None
        return feed


def calibrate(
    model: str | os.PathLike,
    reader: StreamingCalibrationReader,
    ranges_out: str | os.PathLike,
    method: str = "minmax",
    flavour: str = "s8s8",
) -> Path:
    """Run calibration batches through ``model`` (a pre-processed FP32 ONNX); write the ranges.

    The ranges file is ORT's calibration cache (``save_tensors_data``), which
    :func:`quantize_int8` reads.  Returns its path.
    """
    calib = require("onnxruntime.quantization.calibrate", "export", "INT8 calibration")
    cal_method = _calibration_method(method)
    fl = get_flavour(flavour)
    with tempfile.TemporaryDirectory(prefix="corese-calib-") as tmp, _quiet_quantizer():
        calibrator = calib.create_calibrator(
            Path(os.fspath(model)),
            op_types_to_calibrate(fl),
            augmented_model_path=os.path.join(tmp, "augmented.onnx"),
            calibrate_method=cal_method,
            extra_options={"symmetric": fl.symmetric_int8} if method == "percentile" else {},
        )
        batches = 0
        for feed in reader:
            calibrator.collect_data(_OneFeed(feed))  # merges this batch, then frees it
            batches += 1
        if batches == 0:
            raise UserError("no calibration images were read")
        ranges = calibrator.compute_data()
        del calibrator
    out = Path(ranges_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    calib.save_tensors_data(ranges, out)
    log.info("calibrated on %d images (%s, %d batches)", reader.images, method, batches)
    return out


def quantize_int8(
    model: str | os.PathLike,
    onnx_out: str | os.PathLike,
    ranges: str | os.PathLike,
    flavour: str = "s8s8",
    method: str = "minmax",
    keep_fp: Sequence[str] = (),
    metadata_from: str | os.PathLike | None = None,
    high_precision: str | None = None,
    keep_fp32_ops: Sequence[str] = (),
) -> Path:
    """Quantize the pre-processed ``model`` to a Q/DQ ONNX using the calibration ``ranges`` file.

    ``keep_fp`` are node names left unquantized and in FP32.  ``high_precision`` is what every
    other non-INT8 layer computes in: ``"fp16"`` (:func:`to_fp16_qdq`, opset 19, FP32 graph I/O)
    or ``"fp32"``; None takes the flavour's (``s8s8``: fp16, ``u8s8``: fp32).  ``keep_fp32_ops``
    are op types kept in FP32 in an FP16 graph.  ``metadata_from`` (an ONNX with corese-edge
    metadata, normally ``model.onnx``) sets exactly the corese-edge metadata keys on the result.
    For the ``s8s8`` flavour the result is checked: every zero point an int8 zero.
    """
    onnx = require("onnx", "export", "INT8 quantization")
    quant = require("onnxruntime.quantization", "export", "INT8 quantization")
    import inspect

    if "calibration_cache_path" not in inspect.signature(quant.quantize_static).parameters:
        raise UserError("this onnxruntime's quantize_static cannot read a calibration cache; "
                        "upgrade it: pip install -U 'corese-edge[export]' onnxruntime")
    fl = get_flavour(flavour)
    high_precision = high_precision or fl.high_precision
    if high_precision not in ("fp16", "fp32"):
        raise UserError(f"high_precision must be fp16 or fp32, got {high_precision!r}")
    if keep_fp32_ops and high_precision != "fp16":
        raise UserError("keep_fp32_ops names op types kept in FP32 inside an FP16 graph; use high_precision='fp16'")
    out = Path(onnx_out)
    with atomic_path(out) as tmp, _quiet_quantizer():
        quant.quantize_static(
            os.fspath(model),
            os.fspath(tmp),
            None,
            calibration_cache_path=os.fspath(ranges),
            quant_format=quant.QuantFormat.QDQ,
            op_types_to_quantize=op_types_to_quantize(fl),
            per_channel=True,
            reduce_range=False,
            activation_type=getattr(quant.QuantType, fl.activation_type),
            weight_type=getattr(quant.QuantType, fl.weight_type),
            calibrate_method=_calibration_method(method),
            nodes_to_exclude=list(keep_fp),
            extra_options={k: (list(v) if isinstance(v, tuple) else v) for k, v in fl.extra_options},
        )
        proto = onnx.load(os.fspath(tmp))
        if fl.fusion_placement:
            from corese_edge.export.qdq_placement import load_ranges, place_fusion_qdq

            placed = place_fusion_qdq(proto, load_ranges(ranges), keep_nodes=keep_fp)
            log.info("TensorRT fusion placement: %s", placed.to_dict())
        if high_precision == "fp16":
            proto = to_fp16_qdq(proto, keep_ops=keep_fp32_ops, keep_nodes=keep_fp)
        if metadata_from is not None:
            from corese_edge.export.onnx_fp32 import read_metadata, set_metadata

            set_metadata(proto, read_metadata(metadata_from))
        if fl.symmetric_int8:
            from corese_edge.export.qdq_rules import qdq_rule_violations

            problems = qdq_rule_violations(proto, strongly_typed=high_precision == "fp16")
            if problems:
                raise RuntimeError(f"the s8s8 Q/DQ graph is not TensorRT-ready: {problems[0]} (+{len(problems) - 1} more)")
        onnx.save(proto, os.fspath(tmp))
    return out


def to_fp16_qdq(model, keep_ops: Sequence[str] = (), keep_nodes: Sequence[str] = ()):
    """A copy of the FP32 Q/DQ ``model`` in which everything that is not INT8 computes in FP16.

    The opset becomes :data:`FP16_QDQ_OPSET` (19) so that QuantizeLinear / DequantizeLinear take
    FP16 inputs and FP16 scales; each DequantizeLinear output then has the type of the layer it
    feeds, as TensorRT's strong typing needs.  Zero points stay int8 zeros and weights stay int8
    per channel.  Graph inputs and outputs stay FP32 (a Cast at each end, as in the FP16
    artifact).  ``keep_ops`` (op types) and ``keep_nodes`` (node names) stay FP32, with casts at
    their boundary.  Metadata is carried over.  Returns a new ModelProto.
    """
    onnx = require("onnx", "export", "INT8 quantization")
    float16 = require("onnxconverter_common.float16", "export", "FP16 conversion")
    import warnings

    from corese_edge.export.fp16 import unshare_initializers

    if not hasattr(model, "graph"):
        model = onnx.load(os.fspath(model))
    meta = [(p.key, p.value) for p in model.metadata_props]
    opset = onnx_opset(model)
    model = onnx.version_converter.convert_version(model, FP16_QDQ_OPSET) if opset < FP16_QDQ_OPSET else model
    block_ops = list(float16.DEFAULT_OP_BLOCK_LIST) + [op for op in keep_ops if op not in float16.DEFAULT_OP_BLOCK_LIST]
    unshare_initializers(model, set(block_ops), set(keep_nodes))
    with warnings.catch_warnings():
        # "the float32 number 1e-09 will be truncated to 1e-07": expected for tiny weights; scales
        # that small (below FP16's smallest subnormal, 6e-8) cannot occur for ranges TensorRT uses
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block_ops,
                                                node_block_list=list(keep_nodes))
    del half.metadata_props[:]
    for key, value in meta:
        half.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(half, full_check=True)
    return half


def weakly_typed_qdq(model):
    """The form of an FP16 Q/DQ graph that TensorRT 8.6 parses: every FP16 tensor widened to FP32, opset 17.

    8.6's ONNX parser reads Q/DQ scales as float32 and supports opsets up to 17 (module docstring);
    it is weakly typed, so the builder's ``INT8`` + ``FP16`` flags, not the tensor types, let the
    non-quantized layers run in FP16.  FP16 values widen to FP32 exactly, so the INT8 scales and
    every weight are the artifact's own.  A graph without FP16 tensors is returned as a copy.
    """
    onnx = require("onnx", "export")
    from onnx import TensorProto, numpy_helper

    if not hasattr(model, "graph"):
        model = onnx.load(os.fspath(model))
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph

    def widen(t) -> None:
        if t.data_type == TensorProto.FLOAT16:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))

    for t in graph.initializer:
        widen(t)
    for node in graph.node:
        for a in node.attribute:
            if a.name == "to" and node.op_type == "Cast" and a.i == TensorProto.FLOAT16:
                a.i = TensorProto.FLOAT
            if a.type == onnx.AttributeProto.TENSOR:
                widen(a.t)
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT16:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    # Casts that became FLOAT -> FLOAT are identities: drop them so the graph is today's FP32 graph
    rename: dict[str, str] = {}
    keep = []
    outputs = {o.name for o in graph.output}
    types = _float_types(out)
    for node in graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
        if (node.op_type == "Cast" and node.attribute[0].i == TensorProto.FLOAT
                and types.get(node.input[0]) == TensorProto.FLOAT and node.output[0] not in outputs):
            rename[node.output[0]] = node.input[0]
            continue
        keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    del graph.value_info[:]  # stale after the widening; TensorRT infers shapes itself
    opset = onnx_opset(out)
    if opset > WEAKLY_TYPED_OPSET:
        out = onnx.version_converter.convert_version(out, WEAKLY_TYPED_OPSET)
        out.metadata_props.extend([p for p in model.metadata_props if p.key not in {q.key for q in out.metadata_props}])
    onnx.checker.check_model(out, full_check=True)
    return out


def _float_types(model) -> dict[str, int]:
    """Element type of every tensor in ``model`` that ONNX type inference can name."""
    onnx = require("onnx", "export")
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {t.name: t.data_type for t in inferred.graph.initializer}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        types[vi.name] = vi.type.tensor_type.elem_type
    return types


# ----------------------------------------------------------------------------------- checks


def quantized_nodes(model) -> list[str]:
    """Names of the compute nodes that read a DequantizeLinear output (the quantized layers)."""
    onnx = require("onnx", "export")
    if not hasattr(model, "graph"):
        model = onnx.load(os.fspath(model))
    dq_outputs = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [
        n.name for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_outputs for i in n.input)
    ]


def match_nodes(patterns: Sequence[str], names: Sequence[str]) -> tuple[str, ...]:
    """Node names matching any of ``patterns`` (exact names or fnmatch patterns such as ``/classifier/*``).

    A pattern that matches nothing is a :class:`UserError` listing a few names to choose from.
    """
    chosen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            sample = ", ".join(list(names)[:6])
            raise UserError(f"--keep-fp {pattern!r} matches no quantizable layer; names look like: {sample}, ...")
        chosen.extend(h for h in hits if h not in chosen)
    return tuple(chosen)


# ----------------------------------------------------------------------------------- auto-keep


def keep_in_float(qdq_model, fp_model, keep: Iterable[str]):
    """A copy of the Q/DQ ``qdq_model`` where the nodes named in ``keep`` read FP32 inputs again.

    Each kept node's inputs that come from a DequantizeLinear are rewired to the tensor the same
    node reads in ``fp_model`` (the pre-processed FP32 graph the Q/DQ graph was made from); FP32
    weights are copied over; Q/DQ nodes left without consumers are pruned.  An input whose FP32
    tensor no longer exists in the Q/DQ graph (for example a Relu ORT folded away) stays quantized.
    Used to rank layer sensitivity quickly, without re-running the quantizer.
    """
    onnx = require("onnx", "export")
    keep = set(keep)
    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    graph = model.graph
    fp_nodes = {n.name: n for n in fp_model.graph.node}
    fp_inits = {t.name: t for t in fp_model.graph.initializer}
    produced = {o for n in graph.node for o in n.output} | {i.name for i in graph.input}
    have = {t.name for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.name not in keep or node.name not in fp_nodes:
            continue
        src = fp_nodes[node.name]
        for i, name in enumerate(node.input):
            p = producer.get(name)
            if p is None or p.op_type != "DequantizeLinear" or i >= len(src.input):
                continue
            orig = src.input[i]
            if orig in fp_inits and orig not in have:
                graph.initializer.append(fp_inits[orig])
                have.add(orig)
            if orig in produced or orig in have:
                node.input[i] = orig
    _prune(graph)
    return model


def _prune(graph) -> None:
    outputs = {o.name for o in graph.output}
    while True:
        used = {i for n in graph.node for i in n.input} | outputs
        keep = [n for n in graph.node if any(o in used for o in n.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input} | outputs
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)


@dataclass(frozen=True)
class KeepSearch:
    """The outcome of ``--auto-keep``: layers kept in FP32 and the drift measured on the selection set."""

    kept: tuple[str, ...]
    ranking: tuple[tuple[str, float], ...]  # (node, sensitivity: mean |logit diff| when only it is quantized)
    drop_pp_before: float
    drop_pp_after: float
    reached: bool
    trials: tuple[tuple[int, float], ...]  # (layers kept, drop pp) per evaluated candidate

    def to_dict(self) -> dict:
        return {
            "kept": list(self.kept),
            "drop_pp_before": self.drop_pp_before,
            "drop_pp_after": self.drop_pp_after,
            "reached_limit": self.reached,
            "trials": [{"kept": k, "drop_pp": d} for k, d in self.trials],
            "ranking": [{"node": n, "sensitivity": s} for n, s in self.ranking],
        }


def rank_sensitivity(
    qdq_model, fp_model, candidates: Sequence[str], logits_of: Callable[[object], np.ndarray],
    reference: np.ndarray, progress: bool = False,
) -> list[tuple[str, float]]:
    """Rank ``candidates`` by the damage each does when it alone is quantized, most sensitive first.

    ``logits_of(model_proto)`` runs a model on the sensitivity images and returns its logits;
    ``reference`` holds the FP32 logits of the same images.  Sensitivity = mean |logit diff|.
    """
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(candidates), desc="ranking layers", unit="layer", leave=False)
    scores: list[tuple[str, float]] = []
    everything = set(candidates)
    for name in candidates:
        only_this = keep_in_float(qdq_model, fp_model, everything - {name})
        scores.append((name, float(np.mean(np.abs(logits_of(only_this) - reference)))))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return sorted(scores, key=lambda item: (-item[1], item[0]))


def search_keep(
    ranking: Sequence[tuple[str, float]], drop_of: Callable[[tuple[str, ...]], float], limit_pp: float,
    drop_before: float,
) -> KeepSearch:
    """The fewest top-ranked layers to keep in FP32 so that ``drop_of(kept) <= limit_pp``.

    ``drop_of`` re-quantizes with those layers kept and returns the accuracy drop (pp) on the
    selection images.  Doubles the count until the limit is met, then bisects between the last
    failing and the first passing count.  When even keeping every ranked layer misses the limit,
    the count with the smallest drop is returned with ``reached=False``.
    """
    names = tuple(n for n, _ in ranking)
    trials: dict[int, float] = {0: drop_before}
    if drop_before <= limit_pp or not names:
        return KeepSearch((), tuple(ranking), drop_before, drop_before, drop_before <= limit_pp, tuple(trials.items()))

    def trial(k: int) -> float:
        if k not in trials:
            trials[k] = float(drop_of(names[:k]))
            log.info("auto-keep: %d layer(s) in FP32 -> drop %.2f pp", k, trials[k])
        return trials[k]

    lo, hi, k = 0, None, 1
    while k <= len(names):
        if trial(k) <= limit_pp:
            hi = k
            break
        lo = k
        if k == len(names):
            break
        k = min(2 * k, len(names))
    if hi is None:
        best = min(trials, key=lambda c: (trials[c], c))
        return KeepSearch(names[:best], tuple(ranking), drop_before, trials[best], False, tuple(sorted(trials.items())))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if trial(mid) <= limit_pp:
            hi = mid
        else:
            lo = mid
    return KeepSearch(names[:hi], tuple(ranking), drop_before, trials[hi], True, tuple(sorted(trials.items())))


# ----------------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class Int8Decision:
    """What :meth:`Int8Policy.apply` left in FP32, and why.

    ``kept``: node names in FP32 (``--keep-fp`` then ``--auto-keep``); ``keep_fp32_ops``: op types
    in FP32 (:data:`fp16.SENSITIVE_FP16_OPS` when they lowered a drop over the limit);
    ``reasons``: op type or ``--auto-keep`` node -> why; ``auto_keep``: export.json's
    ``auto_keep`` section (None without ``--auto-keep``); ``notes``: lines for the user.
    """

    kept: tuple[str, ...]
    keep_fp32_ops: tuple[str, ...]
    reasons: dict[str, str]
    auto_keep: dict | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Int8Policy:
    """The INT8 quantization policy over one calibration (ONNX Runtime's quantizer).

    Inputs: ``pre`` (:func:`prepare_for_quantization`'s model), ``ranges`` (:func:`calibrate`'s
    cache), the ``flavour``, ``calib_method``, the ``--keep-fp`` nodes ``user_keep``, the
    ``max_drift_pp`` limit and whether to ``auto_keep``; intermediate graphs go to ``work``.
    The accuracy measurement is given to :meth:`apply`, so the policy runs alone on any drop
    function.  Rules, in order: quantize with ``user_keep``; for a flavour whose remainder is FP16,
    keep :data:`fp16.SENSITIVE_FP16_OPS` in FP32 when the drop is over the limit and that lowers
    it; then ``--auto-keep`` keeps the fewest most sensitive layers that bring it within.
    """

    pre: Path
    ranges: Path
    flavour: Flavour
    calib_method: str
    metadata_from: Path
    max_drift_pp: float
    work: Path
    user_keep: tuple[str, ...] = ()
    auto_keep: bool = False
    progress: bool = False

    def quantize(self, keep: Sequence[str], keep_ops: Sequence[str], dest: Path,
                 high_precision: str | None = None) -> Path:
        return quantize_int8(self.pre, dest, self.ranges, self.flavour.name, self.calib_method, keep,
                             metadata_from=self.metadata_from, high_precision=high_precision, keep_fp32_ops=keep_ops)

    def apply(
        self, dest: Path, drop: Callable[[object], float],
        sensitivity: tuple[Callable[[object], np.ndarray], np.ndarray] | None = None,
    ) -> Int8Decision:
        """Write the chosen INT8 graph to ``dest``.

        ``drop(model)`` is the accuracy drop (pp) of an INT8 graph (a path) on the validation split
        carved from train.  ``sensitivity`` = ``(logits_of(proto), reference_logits)`` on the
        ranking images, needed only with ``auto_keep``.
        """
        from corese_edge.export.fp16 import keep_sensitive_ops_if_better

        user_keep = tuple(self.user_keep)
        self.quantize(user_keep, (), dest)
        keep_ops: tuple[str, ...] = ()
        reasons: dict[str, str] = {}
        notes: list[str] = []
        auto: dict | None = None
        measured = None
        if self.flavour.high_precision == "fp16":
            choice = keep_sensitive_ops_if_better(
                dest, drop(dest), self.max_drift_pp,
                lambda ops: self.quantize(user_keep, ops, self.work / "int8-keep.onnx"), drop)
            measured = choice.drop_pp
            if choice.kept:
                keep_ops = choice.keep_fp32_ops
                notes.append(choice.note("INT8", " instead of FP16"))
                reasons.update({op: f"INT8+FP16 dropped {choice.drop_pp_before:.2f} pp on the validation split "
                                    f"carved from train, {choice.drop_pp:.2f} pp with it in FP32" for op in keep_ops})
        kept = user_keep
        if self.auto_keep:
            if sensitivity is None:
                raise ValueError("auto_keep needs the sensitivity images (logits_of, reference)")
            if measured is None:
                measured = drop(dest)
            if measured > self.max_drift_pp:
                search = self._search(dest, drop, measured, keep_ops, sensitivity)
                kept = user_keep + search.kept
                reasons.update({name: "--auto-keep" for name in search.kept})
                self.quantize(kept, keep_ops, dest)
                auto = search.to_dict()
                notes.append(
                    f"--auto-keep: INT8 dropped {measured:.2f} pp on the validation split carved from train; kept "
                    f"{len(search.kept)} layer(s) in FP32 -> {search.drop_pp_after:.2f} pp"
                    + ("" if search.reached else " (the limit was not reached)"))
            else:
                auto = {"kept": [], "drop_pp_before": measured, "drop_pp_after": measured, "reached_limit": True}
        return Int8Decision(kept, keep_ops, reasons, auto, tuple(notes))

    def _search(self, dest: Path, drop: Callable[[object], float], measured: float, keep_ops: tuple[str, ...],
                sensitivity: tuple[Callable[[object], np.ndarray], np.ndarray]) -> KeepSearch:
        onnx = require("onnx", "export", "--auto-keep")
        logits_of, reference = sensitivity
        user_keep = tuple(self.user_keep)
        # the ranking rewires layers of an FP32 Q/DQ graph back to FP32 (keep_in_float), so it
        # ranks on the FP32 form; every trial measures the artifact's own form
        qdq = onnx.load(os.fspath(self.quantize(user_keep, (), self.work / "int8-rank.onnx", high_precision="fp32")))
        fp = onnx.load(os.fspath(self.pre))
        # only layers the quantizer itself quantizes can be excluded from it
        quantizable = set(op_types_to_quantize(self.flavour))
        op_of = {n.name: n.op_type for n in qdq.graph.node}
        candidates = [n for n in quantized_nodes(qdq) if n not in user_keep and op_of[n] in quantizable]
        ranking = rank_sensitivity(qdq, fp, candidates, logits_of, reference, progress=self.progress)

        def drop_of(extra: tuple[str, ...]) -> float:
            return drop(self.quantize(user_keep + extra, keep_ops, self.work / "int8-trial.onnx"))

        return search_keep(ranking, drop_of, self.max_drift_pp, measured)
