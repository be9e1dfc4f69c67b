"""``bench --compare``'s INT8-FLOPs column: where each artifact's INT8 FLOP share comes from."""
from __future__ import annotations

import json

import pytest

from corese_edge.bench.compare import find_artifacts, format_compare, int8_flop_share, read_export_census
from corese_edge.export.census import precision_census
from tests.export.onnx_graphs import int8_conv_model, mixed_model, save
from tests.runtime.fakes import write_plan


def _shares(folder):
    recorded = read_export_census(folder)
    return {e.name: int8_flop_share(e, recorded) for e in find_artifacts(folder)}


def test_share_is_computed_from_onnx_or_read_from_sidecar(tmp_path):
    int8 = precision_census(int8_conv_model())
    save(mixed_model(), tmp_path / "model.onnx")
    save(int8_conv_model(), tmp_path / "model.int8.onnx")
    write_plan(tmp_path, "model.int8.plan", census=int8.to_dict())
    write_plan(tmp_path, "model.fp16.plan")  # a sidecar from before the census: unknown, not 0
    shares = _shares(tmp_path)
    assert shares["onnx-fp32"] == 0.0
    assert shares["onnx-int8"] == pytest.approx(int8.int8_flop_share) and 0.9 < shares["onnx-int8"] < 1.0
    assert shares["trt-int8"] == pytest.approx(int8.int8_flop_share, abs=1e-6)
    assert shares["trt-fp16"] is None


def test_export_json_census_is_preferred(tmp_path):
    """export.json records what was built; its census (by artifact or file name) wins over recomputing."""
    save(int8_conv_model(), tmp_path / "model.int8.onnx")
    save(int8_conv_model(), tmp_path / "model.onnx")
    census = {"onnx-int8": {"int8_flop_share": 0.25}, "model.onnx": {"int8_flop_share": 0.5}}
    (tmp_path / "export.json").write_text(json.dumps({"schema": "corese-edge/export/1", "census": census}))
    assert _shares(tmp_path) == {"onnx-fp32": 0.5, "onnx-int8": 0.25}


def test_table_has_the_int8_flops_column():
    doc = {"machine": "m", "rows": [
        {"name": "onnx-int8", "format": "onnx", "precision": "int8", "size_mb": 1.0, "int8_flop_share": 0.9876, "status": "ok"},
        {"name": "trt-fp16", "format": "tensorrt", "precision": "fp16", "size_mb": 1.0, "int8_flop_share": None, "status": "ok"},
    ]}
    lines = format_compare(doc).splitlines()
    header = lines[1]
    col = header.index("INT8 FLOPs")
    assert lines[2][col:col + len("INT8 FLOPs")].strip() == "98.8%"
    assert lines[3][col:col + len("INT8 FLOPs")].strip() == "-"
