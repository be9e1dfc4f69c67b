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
QUANTIZERS = ("ort", "modelopt")
CALIB_METHODS = ("minmax", "entropy", "percentile")
VAL_SPLITS = ("test", "val")
HARDWARE_COMPAT = ("none", "ampere+")


@dataclass(frozen=True)
class Artifact:
    """One exported file kind: its drift-report name, file name and precision."""

    name: str  # name in drift_report.json: onnx-fp32, onnx-fp16, onnx-int8, trt-fp16, trt-int8, trt-fp32
    filename: str  # inside --out
    precision: str
    backend: str  # "onnx" | "trt"


ARTIFACTS: dict[str, Artifact] = {
    a.name: a
    for a in (
        Artifact("onnx-fp32", "model.onnx", "fp32", "onnx"),
        Artifact("onnx-fp16", "model.fp16.onnx", "fp16", "onnx"),
        Artifact("onnx-int8", "model.int8.onnx", "int8", "onnx"),
        Artifact("trt-fp32", "model.fp32.plan", "fp32", "trt"),
        Artifact("trt-fp16", "model.fp16.plan", "fp16", "trt"),
        Artifact("trt-int8", "model.int8.plan", "int8", "trt"),
    )
}


def onnx_artifact(precision: str) -> Artifact:
    return ARTIFACTS[f"onnx-{precision}"]


def engine_artifact(precision: str) -> Artifact:
    return ARTIFACTS[f"trt-{precision}"]


@dataclass(frozen=True)
class Target:
    """What a deployment target supports.

    ``int8_flavour``: ``"s8s8"`` is symmetric int8 Q/DQ (zero points 0, per-channel weights, float
    bias), the form TensorRT requires, with FP16 everywhere that is not INT8 (opset 19, FP32 I/O;
    :mod:`corese_edge.export.int8`); ``"u8s8"`` is uint8 activations / int8 weights, FP32 elsewhere,
    for ONNX Runtime's fast CPU kernels.  ``int8_reference_arithmetic``: evaluate the reduced-precision
    graphs in ONNX Runtime with graph optimizations disabled and every FP16 tensor rounded where the
    graph says (DESIGN decision 2: on AVX2 without VNNI the fused S8S8 kernels saturate, and ORT's CPU
    provider lacks FP16 kernels, so only that is a faithful reference for what TensorRT computes;
    :meth:`reference_arithmetic`).
    """

    name: str
    precisions: tuple[str, ...]
    quantizers: tuple[str, ...]
    int8_flavour: str
    int8_reference_arithmetic: bool
    engines: bool
    description: str

    def reference_arithmetic(self, precision: str) -> bool:
        """Whether the drift report judges this precision's ONNX by reference arithmetic.

        A TensorRT target's FP16 and INT8 graphs are run the way TensorRT computes them (Q/DQ pairs
        unfused, every FP16 tensor rounded where the graph says; :func:`evaluation.ort_session`),
        not the way ONNX Runtime's CPU kernels would; on a CPU target ONNX Runtime is the deployment.
        """
        return precision in ("fp16", "int8") and self.int8_reference_arithmetic

    def check(self, precision: str) -> None:
        if precision not in self.precisions:
            raise UserError(
                f"target {self.name!r} does not support {precision}; it supports {', '.join(self.precisions)}"
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
    """The table as text (for docs and ``--help``)."""
    rows = [f"{'target':<10} {'precisions':<16} {'int8':<6} {'quantizers':<14} engine"]
    for t in TARGETS.values():
        rows.append(
            f"{t.name:<10} {','.join(t.precisions):<16} {t.int8_flavour:<6} {','.join(t.quantizers):<14} "
            f"{'yes' if t.engines else 'no'}"
        )
    return "\n".join(rows)
