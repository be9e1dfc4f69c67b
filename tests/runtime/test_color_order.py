"""Colour order travels inside the artifact: float and ``--embed-preprocess`` uint8 models agree on
RGB and BGR frames when ``color_order`` says which one they are, and disagree when it lies.

The model is a hand-built ONNX whose decision is the colour itself (mean of channel 0 minus mean
of channel 2), so any channel swap on the way in flips its prediction; an ordinary face model could
ignore colour and hide a missing flip.  The uint8 variant is made by the real
:func:`corese_edge.export.embed.embed_preprocess`, and both run through the real
:class:`ExpressionClassifier` on ONNX Runtime.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from corese_edge import __version__
from corese_edge.metadata import ArtifactMetadata
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime import ExpressionClassifier

onnx = pytest.importorskip("onnx")

CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
SIZE = 16


def _colour_model(path, channel_order: str):
    """float32 NCHW ``input`` -> ``logits``: class 0 scores ch0 - ch2, class 1 scores ch2 - ch0."""
    from onnx import TensorProto, helper, numpy_helper

    from corese_edge.export.onnx_fp32 import INPUT_NAME, OUTPUT_NAME, set_metadata

    weights = np.zeros((3, len(CLASSES)), np.float32)
    weights[0, 0], weights[2, 0] = 1.0, -1.0
    weights[0, 1], weights[2, 1] = -1.0, 1.0
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", [INPUT_NAME], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
         helper.make_node("MatMul", ["features", "weights"], [OUTPUT_NAME])],
        "colour",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", len(CLASSES)])],
        [numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    set_metadata(model, ArtifactMetadata(CLASSES, Preprocessing(size=SIZE, channel_order=channel_order),
                                         "colour-test", "0" * 64, __version__))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module", params=["rgb", "bgr"])
def models(request, tmp_path_factory):
    """(model channel order, {"float": path, "uint8": path})."""
    from corese_edge.export.embed import embed_preprocess

    folder = tmp_path_factory.mktemp(f"colour_{request.param}")
    plain = _colour_model(folder / "model.onnx", request.param)
    return request.param, {"float": plain, "uint8": embed_preprocess(plain)}


def _red_frame() -> np.ndarray:
    """An RGB frame with a strong red channel (not the model's size, so it is resized too)."""
    rng = np.random.default_rng(0)
    rgb = np.empty((30, 40, 3), np.uint8)
    rgb[..., 0] = rng.integers(190, 250, rgb.shape[:2])
    rgb[..., 1] = rng.integers(40, 90, rgb.shape[:2])
    rgb[..., 2] = rng.integers(0, 40, rgb.shape[:2])
    return rgb


@pytest.mark.parametrize("kind", ["float", "uint8"])
def test_prediction_follows_the_declared_colour_order(models, kind):
    model_order, paths = models
    rgb = _red_frame()
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    # Fed in its own channel order, the model sees red in channel 0 (an RGB model: class 0) or in
    # channel 2 (a BGR model: class 1).
    right = 0 if model_order == "rgb" else 1
    wrong = 1 - right
    with ExpressionClassifier.from_artifact(paths[kind]) as clf:
        assert clf.input.dtype == (np.uint8 if kind == "uint8" else np.float32)
        assert clf.predict(rgb)[0].index == right
        assert clf.predict(bgr, color_order="bgr")[0].index == right
        assert clf.predict(bgr)[0].index == wrong  # BGR frames declared as RGB
        assert clf.predict(rgb, color_order="bgr")[0].index == wrong
    with ExpressionClassifier.from_artifact(paths[kind], color_order="bgr") as clf:
        assert clf.predict(bgr)[0].index == right
        assert clf.predict(rgb)[0].index == wrong


def test_float_and_uint8_models_give_the_same_logits_in_both_orders(models, tmp_path):
    _, paths = models
    rgb = _red_frame()
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    # a file is decoded as RGB whatever color_order says
    image = tmp_path / "red.png"
    assert cv2.imwrite(str(image), bgr)
    with ExpressionClassifier.from_artifact(paths["float"]) as f, \
            ExpressionClassifier.from_artifact(paths["uint8"]) as u:
        reference = f.logits(rgb)
        assert abs(reference[0, 0]) > 1.0  # a clear decision, not a tie
        for clf in (f, u):
            for frame, order in ((rgb, "rgb"), (bgr, "bgr"), (str(image), "rgb"), (str(image), "bgr")):
                np.testing.assert_allclose(clf.logits(frame, color_order=order), reference, rtol=1e-5, atol=1e-5)
