"""--embed-preprocess: the uint8 NHWC variant computes the eval transform inside the graph."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from corese_edge.data.layouts import load_index


def test_frames_variant_matches_the_eval_transform(tiny_onnx, synthetic_data, tmp_path):
    import cv2

    from corese_edge.images import read_rgb
    from corese_edge.data.transforms import eval_transform
    from corese_edge.export.embed import embed_preprocess
    from corese_edge.export.comparator import onnx_logits
    from corese_edge.export.onnx_fp32 import read_metadata

    out = embed_preprocess(tiny_onnx, tmp_path / "model.preprocess.onnx")
    proto = onnx.load(str(out))
    (inp,) = proto.graph.input
    assert inp.type.tensor_type.elem_type == TensorProto.UINT8
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim][1:] == [32, 32, 3]
    meta, base_meta = read_metadata(out), read_metadata(tiny_onnx)
    assert meta.preprocessing.layout == "nhwc" and meta.class_names == base_meta.class_names

    prep = base_meta.preprocessing
    paths = [s.path for s in load_index(synthetic_data).split("test")[:6]]
    images = [read_rgb(p) for p in paths]
    frames = np.stack([cv2.resize(im, (32, 32), interpolation=prep.cv2_interpolation) for im in images])
    transform = eval_transform(prep)
    nchw = np.stack([transform(image=im)["image"].transpose(2, 0, 1) for im in images]).astype(np.float32)
    expected = onnx_logits(tiny_onnx, nchw)
    got = onnx_logits(out, frames)
    assert np.max(np.abs(got - expected)) <= 1e-4


def test_pipeline_writes_and_checks_a_variant_per_precision(tiny_export):
    names = {p.name for p in tiny_export.out_dir.iterdir()}
    assert {"model.preprocess.onnx", "model.fp16.preprocess.onnx", "model.int8.preprocess.onnx"} <= names
    import json

    record = json.loads(tiny_export.export_json.read_text())
    assert record["embed_preprocess"]["max_abs_logit_diff_vs_fp32"] <= 1e-4
