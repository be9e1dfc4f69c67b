"""``--quantizer modelopt``: INT8 Q/DQ with NVIDIA ModelOpt (imported lazily; the ``[modelopt]`` extra).

ModelOpt's ``modelopt.onnx.quantization.quantize`` places Q/DQ the way TensorRT fuses them.  Layers
it leaves unquantized would default to FP16; ``high_precision_dtype="fp32"`` keeps them FP32, so the
graph runs correctly in ONNX Runtime on a CPU and the drift report measures only the INT8 error.
Reference: https://nvidia.github.io/TensorRT-Model-Optimizer/reference/generated/modelopt.onnx.quantization.quantize.html
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from corese_edge.atomic import atomic_path
from corese_edge.errors import UserError, require

log = logging.getLogger(__name__)

#: our --calib-method -> ModelOpt's calibration_method (ModelOpt INT8 has no percentile)
METHODS = {"minmax": "max", "entropy": "entropy"}


def quantize_modelopt(
    onnx_in: str | os.PathLike,
    onnx_out: str | os.PathLike,
    batches: Iterable[np.ndarray],
    method: str = "minmax",
    keep_fp: Sequence[str] = (),
    input_name: str = "input",
) -> Path:
    """Quantize ``onnx_in`` to symmetric INT8 Q/DQ with ModelOpt, calibrating on ``batches``.

    ModelOpt's API takes the calibration set as one array, so the images are gathered first
    (512 images at 224 px are about 300 MB of float32).
    """
    if method not in METHODS:
        raise UserError(f"--quantizer modelopt supports --calib-method {' or '.join(METHODS)}, not {method!r}")
    quantization = require("modelopt.onnx.quantization", "modelopt", "--quantizer modelopt")
    onnx = require("onnx", "export")
    from corese_edge.export.onnx_fp32 import read_metadata, set_metadata
    from corese_edge.export.int8 import qdq_problems

    data = np.concatenate([np.asarray(b, dtype=np.float32) for b in batches])
    out = Path(onnx_out)
    with atomic_path(out) as tmp:
        quantization.quantize(
            onnx_path=os.fspath(onnx_in),
            quantize_mode="int8",
            calibration_data={input_name: data},
            calibration_method=METHODS[method],
            calibration_eps=["cpu"],
            nodes_to_exclude=list(keep_fp) or None,
            high_precision_dtype="fp32",
            output_path=os.fspath(tmp),
        )
        proto = onnx.load(os.fspath(tmp))
        set_metadata(proto, read_metadata(onnx_in))
        problems = qdq_problems(proto)
        if problems:
            raise RuntimeError(f"ModelOpt produced a Q/DQ graph TensorRT would reject: {problems[0]}")
        onnx.save(proto, os.fspath(tmp))
    return out
