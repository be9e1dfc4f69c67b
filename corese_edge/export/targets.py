"""The one capability table of export targets x precisions (Ultralytics-style).

Everything that needs to know what a target can do reads it from here: the CLI's choices, config
validation, the export pipeline (which files to write, how to quantize, how ONNX Runtime must run
each artifact for the drift report) and the engine stage.  A combination the table does not allow
is refused with a clear message; it is never silently "corrected".
"""
from __future__ import annotations

from dataclasses import dataclass

from corese_edge.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")
#: ort: ONNX Runtime's quantizer (Q/DQ ONNX); modelopt: NVIDIA ModelOpt (Q/DQ ONNX); nncf: NNCF's
#: post-training quantization of the OpenVINO model (an INT8 IR, no Q/DQ ONNX)
QUANTIZERS = ("ort", "modelopt", "nncf")
CALIB_METHODS = ("minmax", "entropy", "percentile")
VAL_SPLITS = ("test", "val")
HARDWARE_COMPAT = ("none", "ampere+")


@dataclass(frozen=True)
class Artifact:
    """One exported file kind: its drift-report name, file name and precision."""

    name: str  # name in drift_report.json: onnx-fp32, onnx-fp16, onnx-int8, trt-*, openvino-float, openvino-int8
    filename: str  # inside --out (an OpenVINO IR is the .xml; its weights are the .bin beside it)
    precision: str  # "float" for an OpenVINO float IR: it runs at the device's inference precision
    backend: str  # "onnx" | "trt" | "openvino"


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        Artifact("onnx-fp32", "model.onnx", "fp32", "onnx"),
        Artifact("onnx-fp16", "model.fp16.onnx", "fp16", "onnx"),
        Artifact("onnx-int8", "model.int8.onnx", "int8", "onnx"),
        Artifact("trt-fp32", "model.fp32.plan", "fp32", "trt"),
        Artifact("trt-fp16", "model.fp16.plan", "fp16", "trt"),
        Artifact("trt-int8", "model.int8.plan", "int8", "trt"),
        # OpenVINO IR: the float one runs at the device's best float precision (BF16 on a CPU
        # with AMX or AVX-512-BF16, else FP32); the drift report records what really ran
        Artifact("openvino-float", "model.xml", "float", "openvino"),
        Artifact("openvino-int8", "model.int8.xml", "int8", "openvino"),
    )
}


def onnx_artifact(precision: str) -> Artifact:
    return ARTIFACTS[f"onnx-{precision}"]


def engine_artifact(precision: str) -> Artifact:
    return ARTIFACTS[f"trt-{precision}"]


def openvino_artifact(precision: str) -> Artifact:
    """``fp32`` -> the float IR (``model.xml``), ``int8`` -> ``model.int8.xml``."""
    return ARTIFACTS["openvino-int8" if precision == "int8" else "openvino-float"]


@dataclass(frozen=True)
class Target:
    """What a deployment target supports.

    ``int8_flavour``: ``"s8s8"`` is symmetric int8 Q/DQ (zero points 0, per-channel weights, float
    bias), the form TensorRT requires, with FP16 everywhere that is not INT8 (opset 19, FP32 I/O;
    :mod:`corese_edge.export.int8`); ``"u8s8"`` is uint8 activations / int8 weights, FP32 elsewhere,
    for ONNX Runtime's fast CPU kernels.  ``int8_reference_arithmetic``: evaluate the reduced-precision
    graphs in ONNX Runtime with graph optimizations disabled and every FP16 tensor rounded where the
    graph says (docs/ARCHITECTURE.md, "Two INT8 flavours": on AVX2 without VNNI the fused S8S8
    kernels saturate, and ORT's CPU provider lacks FP16 kernels, so only that is a faithful reference for what TensorRT computes;
    :meth:`reference_arithmetic`).  ``quantizers[0]`` is the target's default quantizer.

    ``openvino``: the target writes OpenVINO IR beside the FP32 ONNX: the float IR always, the
    INT8 IR with ``int8`` (by NNCF from the FP32 model, or, with ``--quantizer ort``, by OpenVINO
    reading our U8S8 Q/DQ ONNX).  ``chooses_fastest``: the target exports every CPU candidate
    (ONNX Runtime FP32 / INT8 U8S8 / FP16 when asked, OpenVINO float / INT8 when the extra is
    installed), benches each here and names the fastest one that passes the drift gate; INT8 is
    always on for it (its point is the fastest accurate model), and the export fails its gate
    only when no candidate passes.  ``refusals``: (precision, why) for the one-line refusal.
    """

    name: str
    precisions: tuple[str, ...]
    quantizers: tuple[str, ...]
    int8_flavour: str
    int8_reference_arithmetic: bool
    engines: bool
    description: str
    openvino: bool = False
    chooses_fastest: bool = False
    refusals: tuple[tuple[str, str], ...] = ()

    @property
    def requires_openvino(self) -> bool:
        """Whether this target cannot export without the openvino extra (``cpu-best`` only skips
        its OpenVINO candidates)."""
        return self.openvino and not self.chooses_fastest

    def writes_onnx_int8(self, quantizer: str) -> bool:
        """Whether an INT8 export writes ``model.int8.onnx`` (every INT8 route but NNCF's)."""
        return self.chooses_fastest or quantizer != "nncf"

    def ir_int8_quantizer(self, quantizer: str) -> str:
        """Who makes the INT8 IR: this target's ``quantizer``, or for ``cpu-best`` the default of
        ``openvino`` (its ``quantizer`` is the ONNX Runtime INT8 candidate's)."""
        return TARGETS["openvino"].quantizers[0] if self.chooses_fastest else quantizer

    def reference_arithmetic(self, precision: str) -> bool:
        """Whether the drift report judges this precision's ONNX by reference arithmetic.

        A TensorRT target's FP16 and INT8 graphs are run the way TensorRT computes them (Q/DQ pairs
        unfused, every FP16 tensor rounded where the graph says; ``OrtRunner(reference_arithmetic=True)``),
        not the way ONNX Runtime's CPU kernels would; on a CPU target ONNX Runtime is the deployment.
        """
        return precision in ("fp16", "int8") and self.int8_reference_arithmetic

    def check(self, precision: str) -> None:
        if precision not in self.precisions:
            why = dict(self.refusals).get(precision)
            raise UserError(
                f"target {self.name!r} does not support {precision}; it supports {', '.join(self.precisions)}"
                + (f" ({why})" if why else "")
            )


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="tensorrt",
            precisions=("fp32", "fp16", "int8"),
            quantizers=("ort", "modelopt"),
            int8_flavour="s8s8",
            int8_reference_arithmetic=True,
            engines=True,
            description="TensorRT 8.6 / 10.x / 11.x on a desktop GPU or a Jetson (S8S8 Q/DQ with FP16 elsewhere, FP16 ONNX)",
        ),
        Target(
            name="cpu",
            precisions=("fp32", "fp16", "int8"),
            quantizers=("ort",),
            int8_flavour="u8s8",
            int8_reference_arithmetic=False,
            engines=False,
            description="ONNX Runtime on a CPU (U8S8 Q/DQ for its fast integer kernels)",
        ),
        Target(
            name="openvino",
            precisions=("fp32", "int8"),
            quantizers=("nncf", "ort"),
            int8_flavour="u8s8",  # the Q/DQ ONNX of --quantizer ort, which OpenVINO reads
            int8_reference_arithmetic=False,
            engines=False,
            description="OpenVINO IR on Intel/AMD CPUs (float IR at the device's best float precision, "
                        "BF16 with AMX; INT8 IR by NNCF), beside the FP32 ONNX",
            openvino=True,
            # OpenVINO picks the float precision when it compiles the float IR (BF16 on AMX or
            # AVX-512-BF16 CPUs, FP16 on Intel GPUs); a CPU runs FP16 natively only with AMX-FP16
            refusals=(("fp16", "the float IR already runs at the device's best float precision: BF16 with AMX "
                               "or AVX-512-BF16, FP16 on Intel GPUs"),),
        ),
        Target(
            name="cpu-best",
            precisions=("fp32", "fp16", "int8"),
            quantizers=("ort",),
            int8_flavour="u8s8",
            int8_reference_arithmetic=False,
            engines=False,
            description="every CPU candidate (ONNX Runtime FP32 / INT8, OpenVINO float / INT8), benched here; "
                        "names the fastest that passes the drift gate",
            openvino=True,
            chooses_fastest=True,
        ),
    )
}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UserError(f"unknown target {name!r}; choose one of: {', '.join(TARGETS)}") from None


def requested_precisions(fp16: bool, int8: bool) -> tuple[str, ...]:
    """FP32 is always exported (it is the reference and the source of the other precisions)."""
    return ("fp32",) + (("fp16",) if fp16 else ()) + (("int8",) if int8 else ())


def engine_precisions(fp16: bool, int8: bool) -> tuple[str, ...]:
    """Engines are built for each reduced precision asked for, else for FP32."""
    reduced = tuple(p for p, on in (("fp16", fp16), ("int8", int8)) if on)
    return reduced or ("fp32",)


def describe_table() -> str:
    """The table as text (for docs and ``--help``): the int8 column is the Q/DQ ONNX flavour, the
    first quantizer is the default, ``writes`` what lands in ``--out`` besides ``model.onnx``."""
    rows = [f"{'target':<10} {'precisions':<16} {'int8':<6} {'quantizers':<18} {'engine':<7} writes"]
    for t in TARGETS.values():
        onnx = "/".join(p.upper() for p in t.precisions if p != "fp32")
        if t.openvino and not t.chooses_fastest:
            writes = ["OpenVINO IR float/INT8 (+ Q/DQ ONNX with --quantizer ort)"]
        else:
            writes = [f"ONNX {onnx}"] + (["OpenVINO IR float/INT8"] if t.openvino else [])
        if t.engines:
            writes.append("TensorRT plan")
        if t.chooses_fastest:
            writes.append("names the fastest that passes")
        rows.append(
            f"{t.name:<10} {','.join(t.precisions):<16} {t.int8_flavour:<6} {','.join(t.quantizers):<18} "
            f"{'yes' if t.engines else 'no':<7} {', '.join(writes)}"
        )
    return "\n".join(rows)
