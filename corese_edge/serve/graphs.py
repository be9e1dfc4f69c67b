"""The graphs a server is given: the artifact with its preprocessing embedded and softmax appended.

* ONNX: :func:`served_onnx` embeds the preprocessing with the export's own ``--embed-preprocess``
  (:func:`corese_edge.export.embed.embed_preprocess`; skipped when the artifact already takes
  frames) and appends a ``Softmax`` (:func:`append_softmax`), so the graph takes ``frames`` uint8
  ``[N, S, S, 3]`` and returns ``probabilities`` float32 ``[N, C]``.  Every other node, Q/DQ pairs
  included, is kept as it is.
* OpenVINO IR: :func:`served_openvino` does the same with OpenVINO's ``PrePostProcessor`` (u8 NHWC
  in, convert, ``mean = 255 * mean``, ``scale = 255 * std``, NCHW) and an ``opset`` Softmax; the
  rt_info metadata is written again, with ``layout`` ``nhwc``.

Mean and std come from the artifact's metadata
(docs/ARCHITECTURE.md, "Preprocessing travels with the model"); files go through :mod:`corese_edge.atomic`.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from corese_edge.atomic import atomic_path
from corese_edge.errors import UserError, require
from corese_edge.serve.artifact import FRAMES, PROBABILITIES, ArtifactFacts


def append_softmax(model: Any, name: str = PROBABILITIES) -> Any:
    """``model`` (an ``onnx.ModelProto`` with one ``[N, C]`` output) with ``Softmax(axis=1)`` after
    its output, which becomes ``name``; changed in place and returned.  A graph whose output is
    already ``name`` is returned unchanged."""
    from onnx import helper

    graph = model.graph
    if len(graph.output) != 1:
        raise UserError(f"expected one graph output to append a softmax to, found {len(graph.output)}")
    old = graph.output[0]
    if old.name == name:
        return model
    if len(old.type.tensor_type.shape.dim) != 2:
        raise UserError(f"output {old.name!r} is not [N, C]; cannot append a softmax over the classes")
    # axis=1 on an [N, C] tensor means the same in every opset (before 13 the input is coerced to 2D)
    graph.node.append(helper.make_node("Softmax", [old.name], [name], name="postprocess/Softmax", axis=1))
    new = type(old)()
    new.CopyFrom(old)
    new.name = name
    del graph.output[:]
    graph.output.append(new)
    return model


def served_onnx(facts: ArtifactFacts, out: str | os.PathLike) -> Path:
    """Write ``facts.path`` as the frames -> probabilities graph to ``out`` (see module doc)."""
    onnx = require("onnx", "export", "to package an .onnx artifact")
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="corese-serve-") as tmp:
        source = facts.path
        if not facts.takes_frames:
            from corese_edge.export.embed import embed_preprocess

            source = embed_preprocess(facts.path, Path(tmp) / "frames.onnx")
        model = onnx.load(os.fspath(source))
    append_softmax(model)
    onnx.checker.check_model(model, full_check=True)
    with atomic_path(out) as tmp_out:
        onnx.save(model, os.fspath(tmp_out))
    return out


def softmax_onnx(facts: ArtifactFacts, out: str | os.PathLike) -> Path:
    """``facts.path`` with only the softmax appended (float NCHW ``input`` kept, Q/DQ kept): the
    graph DeepStream's nvinfer is given, since its classifier parser applies no softmax."""
    onnx = require("onnx", "export", "to package an .onnx artifact")
    model = onnx.load(os.fspath(facts.path))
    append_softmax(model)
    onnx.checker.check_model(model, full_check=True)
    out = Path(out)
    with atomic_path(out) as tmp_out:
        onnx.save(model, os.fspath(tmp_out))
    return out


def served_openvino(facts: ArtifactFacts, xml_out: str | os.PathLike) -> Path:
    """Write the IR ``facts.path`` as a frames -> probabilities IR to ``xml_out`` and its ``.bin``."""
    ov = require("openvino", "openvino", "to package an OpenVINO IR")
    from openvino.preprocess import PrePostProcessor

    from corese_edge.metadata import read_rt_info
    from corese_edge.runtime.openvino import shared_core

    model = shared_core().read_model(os.fspath(facts.path))
    meta, build = read_rt_info(model, str(facts.path))
    prep = meta.preprocessing
    if not facts.takes_frames:
        ppp = PrePostProcessor(model)
        ppp.input().tensor().set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC"))
        ppp.input().model().set_layout(ov.Layout("NCHW"))
        # (x - 255 * mean) / (255 * std) == (x / 255 - mean) / std, the eval transform's arithmetic
        ppp.input().preprocess().convert_element_type(ov.Type.f32) \
            .mean([255.0 * m for m in prep.mean]).scale([255.0 * s for s in prep.std])
        model = ppp.build()
    if facts.output.name != PROBABILITIES:
        from openvino import opset13

        result = model.get_results()[0]
        softmax = opset13.softmax(result.input_value(0), 1)
        softmax.output(0).get_tensor().set_names({PROBABILITIES})
        model = ov.Model([softmax.output(0)], model.get_parameters(), model.get_friendly_name())
    model.inputs[0].get_tensor().set_names({FRAMES})
    props = replace(meta, preprocessing=replace(prep, layout="nhwc")).to_props()
    from corese_edge.export.openvino import save_ir

    return save_ir(ov, model, xml_out, props, {**build, "served": "frames -> probabilities (corese-edge package)"})
