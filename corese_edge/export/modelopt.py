"""``--quantizer modelopt``: INT8 Q/DQ with NVIDIA ModelOpt's ONNX PTQ (the ``[modelopt]`` extra).

ModelOpt's ``modelopt.onnx.quantization.quantize`` places Q/DQ the way TensorRT fuses them and, by
default (``high_precision_dtype="fp16"``), writes every layer it leaves unquantized in FP16 with FP32
graph inputs and outputs: what TensorRT's strong typing needs to run the rest of the graph in FP16.
``high_precision_dtype="fp32"`` keeps those layers FP32.  Both run in ONNX Runtime on a CPU.
Reference: https://nvidia.github.io/TensorRT-Model-Optimizer/reference/generated/modelopt.onnx.quantization.quantize.html

Why ModelOpt runs in a child process (``python -m corese_edge.export.modelopt SPEC``), as read in
nvidia-modelopt 0.47's sources:

* it patches ONNX Runtime's quantizer for the rest of the process (``ort_utils.configure_ort``
  edits ``QDQRegistry``, removing Relu, Concat, Transpose, ... and adding LayerNormalization;
  ``ort_patching.patch_ort_modules`` replaces ``create_calibrator`` and the calibrators' methods),
  so our own ORT quantizer would quantize other op types after a ModelOpt run in the same process;
* it installs a stdout handler on the ``modelopt.onnx`` logger and logs a NVML "Failed to get GPU
  count" *error* on a machine without a GPU, whatever the log level;
* it rewrites its input model in place (``trt_utils.load_onnx_model`` calls
  ``onnx.shape_inference.infer_shapes_path(onnx_path)``) and writes intermediate files next to it,
  so it is handed a private copy in a scratch folder.

Calibration images go to the child as one ``.npy`` file per batch and are read back one batch at a
time through ModelOpt's ``calibration_data_reader`` argument; ModelOpt's patched calibrators merge
each batch into their ranges or histograms and free it, so memory stays at one batch.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from corese_edge.atomic import atomic_path, write_text
from corese_edge.errors import MissingExtra, UserError, require

log = logging.getLogger(__name__)

#: our --calib-method -> ModelOpt's calibration_method (ModelOpt INT8 has no percentile)
METHODS = {"minmax": "max", "entropy": "entropy"}
#: dtypes for the layers ModelOpt leaves unquantized; bf16 (which ModelOpt also offers) is refused
#: because ONNX Runtime's CPU kernels cannot run it, so the drift report could not measure it
HIGH_PRECISION_DTYPES = ("fp16", "fp32")
#: the keyword arguments of ``modelopt.onnx.quantization.quantize`` this module relies on
_QUANTIZE_ARGS = ("onnx_path", "quantize_mode", "calibration_data_reader", "calibration_method", "calibration_eps",
                  "nodes_to_exclude", "high_precision_dtype", "dq_only", "output_path", "log_level")
#: environment for the child: ModelOpt's INT8 path needs no network; these make sure the Hugging Face
#: helpers it ships (used only with ``model_id``) could not reach out either
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def quantize_modelopt(
    onnx_in: str | os.PathLike,
    onnx_out: str | os.PathLike,
    batches: Iterable[np.ndarray],
    method: str = "minmax",
    keep_fp: Sequence[str] = (),
    input_name: str = "input",
    high_precision_dtype: str = "fp16",
) -> Path:
    """Quantize ``onnx_in`` to symmetric INT8 Q/DQ with ModelOpt, calibrating on ``batches``.

    ``batches`` are float32 NCHW arrays (one is in memory at a time).  ModelOpt leaves a Gemm/MatMul
    unquantized when its output in the *first* batch has a dimension of 1 (a GEMV) or an N or K
    below 16, so a first batch of 1 image leaves the SE and classifier GEMMs in FP16; the export
    pipeline calibrates in batches of 8.

    ``keep_fp`` are exact node names left unquantized; they compute in ``high_precision_dtype``
    like every other layer ModelOpt does not quantize (ModelOpt keeps op types, not single nodes,
    out of FP16): ``"fp16"`` gives TensorRT's strongly typed INT8+FP16 graph, ``"fp32"`` keeps them
    FP32.  Graph inputs and outputs stay FP32 either way; weights are stored INT8 (``dq_only``).

    The corese-edge metadata of ``onnx_in`` is copied; ``onnx_in`` is not modified.  The result is
    written atomically to ``onnx_out``, only on success, and its path returned.  Bad input (an
    unreadable model, no metadata, no images, images of the wrong shape, a graph with nothing
    ModelOpt quantizes, or anything ModelOpt refuses) is a one-line :class:`UserError`.
    """
    if method not in METHODS:
        raise UserError(f"--quantizer modelopt supports --calib-method {' or '.join(METHODS)}, not {method!r}")
    if high_precision_dtype not in HIGH_PRECISION_DTYPES:
        raise UserError(f"ModelOpt's high-precision dtype must be {' or '.join(HIGH_PRECISION_DTYPES)}, "
                        f"not {high_precision_dtype!r}")
    if importlib.util.find_spec("modelopt") is None:
        raise MissingExtra("nvidia-modelopt is not installed (--quantizer modelopt): pip install 'corese-edge[modelopt]'")
    onnx = require("onnx", "export")
    from corese_edge.export.onnx_fp32 import read_metadata, set_metadata

    onnx_in = Path(onnx_in)
    expected = _input_shape(onnx, onnx_in, input_name)
    metadata = read_metadata(onnx_in)  # before the long run: a file without it is refused now
    out = Path(onnx_out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # scratch beside the output: the calibration set and ModelOpt's intermediates can be large
    with tempfile.TemporaryDirectory(prefix=".modelopt-", dir=out.parent) as scratch:
        work = Path(scratch)
        model = work / "model.onnx"
        shutil.copyfile(onnx_in, model)
        files = _save_batches(batches, expected, work / "calib")
        spec = {
            "onnx_path": os.fspath(model),
            "output_path": os.fspath(work / "quantized.onnx"),
            "result": os.fspath(work / "result.json"),
            "calib_files": [os.fspath(f) for f in files],
            "input_name": input_name,
            "calibration_method": METHODS[method],
            # ModelOpt reads nodes_to_exclude as regular expressions (re.match): anchor exact names
            "nodes_to_exclude": [re.escape(name) + r"\Z" for name in keep_fp],
            "high_precision_dtype": high_precision_dtype,
        }
        write_text(work / "spec.json", json.dumps(spec))
        _run_child(work / "spec.json", onnx_in)

        proto = onnx.load(spec["output_path"])
        if not any(n.op_type == "DequantizeLinear" for n in proto.graph.node):
            # ModelOpt skips layers TensorRT has no fast INT8 kernel for (Convs with few channels,
            # GEMMs with a dimension below 16 or of 1) and then succeeds without quantizing anything
            raise UserError(f"ModelOpt quantized no layer of {onnx_in} (it skips small Convs and GEMMs); "
                            "use --quantizer ort")
        set_metadata(proto, metadata)
        problems = _rule_violations(proto)
        if problems:
            raise RuntimeError(f"ModelOpt produced a Q/DQ graph TensorRT would reject: {problems[0]}"
                               f" (+{len(problems) - 1} more)")
        with atomic_path(out) as tmp:
            onnx.save(proto, os.fspath(tmp))
    return out


# ----------------------------------------------------------------------------------- parent side


def _input_shape(onnx, path: Path, input_name: str) -> tuple[int | None, ...]:
    """The declared shape of ``input_name`` (None for a symbolic dimension); UserError if unreadable."""
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except Exception as exc:  # onnx raises DecodeError / ValueError on a file that is not ONNX
        raise UserError(f"{path}: not a readable ONNX model ({type(exc).__name__})") from None
    inputs = {i.name: i for i in proto.graph.input}
    if input_name not in inputs:
        raise UserError(f"{path}: the model has no input {input_name!r} (it has: {', '.join(inputs) or 'none'})")
    dims = inputs[input_name].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def _save_batches(batches: Iterable[np.ndarray], expected: tuple[int | None, ...], folder: Path) -> list[Path]:
    """Write each calibration batch to its own ``.npy`` (float32, C order); check it fits the model input."""
    folder.mkdir()
    files: list[Path] = []
    for batch in batches:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        fits = batch.ndim == len(expected) and all(e is None or e == s for e, s in zip(expected[1:], batch.shape[1:]))
        if not fits:
            want = "x".join("N" if e is None else str(e) for e in expected)
            raise UserError(f"calibration images have shape {'x'.join(map(str, batch.shape))}; the model takes {want}")
        path = folder / f"{len(files):05d}.npy"
        np.save(path, batch)
        files.append(path)
    if not files:
        raise UserError("no calibration images were read")
    return files


def _run_child(spec: Path, onnx_in: Path) -> None:
    """Run ModelOpt in a child process; translate its failure into one line."""
    env = {**os.environ, **_OFFLINE_ENV}
    proc = subprocess.run([sys.executable, "-m", __name__, os.fspath(spec)],
                          capture_output=True, text=True, env=env, check=False)
    output = (proc.stdout + proc.stderr).strip()
    if output:
        log.debug("ModelOpt's output:\n%s", output)
    result_path = Path(json.loads(spec.read_text())["result"])
    result = json.loads(result_path.read_text()) if result_path.exists() else None
    if result is None:
        last = output.splitlines()[-1] if output else "no output"
        raise UserError(f"ModelOpt's quantizer process ended with status {proc.returncode} on {onnx_in} "
                        f"before finishing (killed, perhaps out of memory?): {last}")
    if result["status"] == "ok":
        return
    if result["status"] == "missing":
        raise MissingExtra(f"ModelOpt cannot import {result['message']} (--quantizer modelopt): "
                           f"pip install 'corese-edge[modelopt]'")
    if result["status"] == "version":
        raise MissingExtra(f"this nvidia-modelopt ({result['message']}) lacks the quantize() arguments corese-edge "
                           f"uses: pip install -U 'corese-edge[modelopt]'")
    raise UserError(f"ModelOpt could not quantize {onnx_in}: {result['message']}")


def _rule_violations(proto) -> list[str]:
    """Q/DQ problems TensorRT would reject: the rules both quantizers are held to, under strong typing
    (what ModelOpt targets; its FP32 form passes them too)."""
    from corese_edge.export.qdq_rules import qdq_rule_violations

    return qdq_rule_violations(proto, strongly_typed=True)


# ----------------------------------------------------------------------------------- child side


class _NpyBatches:
    """ONNX Runtime ``CalibrationDataReader`` over ``.npy`` batch files, one batch in memory at a time.

    ``get_first`` and ``rewind`` are what ModelOpt's own ``CalibrationDataProvider`` offers beyond
    ``get_next``: ModelOpt calls ``get_first`` for a shape-probing run (``graph_utils``).
    """

    def __init__(self, files: Sequence[str], input_name: str) -> None:
        self.files = list(files)
        self.input_name = input_name
        self._next = 0

    def _feed(self, index: int) -> dict[str, np.ndarray]:
        return {self.input_name: np.load(self.files[index])}

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self.files):
            return None
        self._next += 1
        return self._feed(self._next - 1)

    def get_first(self) -> dict[str, np.ndarray]:
        return self._feed(0)

    def rewind(self) -> None:
        self._next = 0


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _child(spec_path: str) -> int:
    """Child-process entry: run ModelOpt's INT8 PTQ as ``spec_path`` says; write ``{"status": ...}`` to its result file."""
    spec = json.loads(Path(spec_path).read_text())

    def finish(status: str, message: str = "") -> int:
        write_text(spec["result"], json.dumps({"status": status, "message": message}))
        return 0

    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as exc:
        # modelopt.onnx wraps the missing module's ImportError and appends a hint; keep the first line
        return finish("missing", str(exc).splitlines()[0].replace("No module named ", ""))
    import inspect

    params = inspect.signature(quantize).parameters
    missing = [a for a in _QUANTIZE_ARGS if a not in params]
    if missing:
        from importlib.metadata import version

        return finish("version", f"{version('nvidia-modelopt')}, no {', '.join(missing)}")
    try:
        quantize(
            onnx_path=spec["onnx_path"],
            quantize_mode="int8",
            calibration_data_reader=_NpyBatches(spec["calib_files"], spec["input_name"]),
            calibration_method=spec["calibration_method"],
            calibration_eps=["cpu"],
            nodes_to_exclude=spec["nodes_to_exclude"] or None,
            high_precision_dtype=spec["high_precision_dtype"],
            # weights stored as INT8 read by a DequantizeLinear, as the ORT quantizer writes them;
            # the default stores them FP16 -> Q -> DQ, which doubles the file for the same engine
            dq_only=True,
            output_path=spec["output_path"],
            log_level="WARNING",
        )
    except Exception as exc:  # ModelOpt reports bad input with assert/ValueError/onnx errors alike
        return finish("error", _first_line(exc))
    if not Path(spec["output_path"]).exists():
        return finish("error", "it finished without writing a model")
    return finish("ok")


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
