"""``--embed-preprocess``: a variant of an exported ONNX that takes raw uint8 NHWC frames.

The variant's input ``frames`` is uint8 ``(N, S, S, 3)`` in the model's channel order, already
resized to the model's input size ``S``; the graph casts, normalises
(``x / (255 * std) - mean / std``, the eval transform's arithmetic) and transposes to NCHW, then
runs the original model.  Apps and video pipelines hand over frames without any numpy work.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from corese_edge.atomic import atomic_path
from corese_edge.errors import require

FRAMES_NAME = "frames"


def embedded_path(onnx_path: str | os.PathLike) -> Path:
    """``model.int8.onnx`` -> ``model.int8.preprocess.onnx``."""
    p = Path(onnx_path)
    return p.with_name(p.name[: -len(".onnx")] + ".preprocess.onnx")


def embed_preprocess(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike | None = None) -> Path:
    """Write the uint8-NHWC-frames variant of ``onnx_in`` (default name: :func:`embedded_path`)."""
    onnx = require("onnx", "export", "--embed-preprocess")
    from onnx import TensorProto, helper, numpy_helper

    from corese_edge.export.onnx_fp32 import read_metadata, set_metadata

    meta = read_metadata(onnx_in)
    prep = meta.preprocessing
    model = onnx.load(os.fspath(onnx_in))
    graph = model.graph
    if len(graph.input) != 1:
        raise ValueError(f"{onnx_in}: expected one graph input")
    old = graph.input[0]
    if old.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ValueError(f"{onnx_in}: input {old.name!r} is not float32")
    batch_dim = old.type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_param or (batch_dim.dim_value if batch_dim.dim_value else "batch")
    frames = helper.make_tensor_value_info(FRAMES_NAME, TensorProto.UINT8, [batch, prep.size, prep.size, 3])
    std = np.asarray(prep.std, dtype=np.float32)
    mean = np.asarray(prep.mean, dtype=np.float32)
    scale = numpy_helper.from_array((1.0 / (255.0 * std)).astype(np.float32), "preprocess_scale")
    shift = numpy_helper.from_array((-mean / std).astype(np.float32), "preprocess_shift")
    prefix = [
        helper.make_node("Cast", [FRAMES_NAME], ["preprocess_float"], name="preprocess/Cast", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["preprocess_float", "preprocess_scale"], ["preprocess_scaled"], name="preprocess/Mul"),
        helper.make_node("Add", ["preprocess_scaled", "preprocess_shift"], ["preprocess_nhwc"], name="preprocess/Add"),
        helper.make_node("Transpose", ["preprocess_nhwc"], [old.name], name="preprocess/Transpose", perm=[0, 3, 1, 2]),
    ]
    nodes = prefix + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend([scale, shift])
    del graph.input[:]
    graph.input.append(frames)
    set_metadata(model, replace(meta, preprocessing=replace(prep, layout="nhwc")))
    onnx.checker.check_model(model, full_check=True)
    out = Path(onnx_out) if onnx_out else embedded_path(onnx_in)
    with atomic_path(out) as tmp:
        onnx.save(model, os.fspath(tmp))
    return out
