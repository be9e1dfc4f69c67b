"""OrtRunner's model sources (path, bytes, ModelProto) and its reference-arithmetic option."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest

from corese_edge.errors import UserError
from corese_edge.runtime.ort import IN_MEMORY, OrtRunner


def _batch():
    return np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)


def test_a_path_bytes_and_a_proto_give_the_same_logits(tiny_onnx):
    x = _batch()
    with OrtRunner(tiny_onnx) as runner:
        want = runner.infer({"input": x})["logits"]
        assert runner.metadata is not None
    proto = onnx.load(str(tiny_onnx))
    for source in (proto, proto.SerializeToString()):
        runner = OrtRunner(source)
        assert runner.path == IN_MEMORY and runner.precision == "fp32"
        with runner:
            np.testing.assert_array_equal(runner.infer({"input": x})["logits"], want)
            assert runner.metadata is not None  # read from the in-memory model's properties


def test_reference_arithmetic_disables_graph_optimizations(tiny_onnx):
    assert OrtRunner(tiny_onnx).optimization == "all"
    assert OrtRunner(tiny_onnx, reference_arithmetic=True).optimization == "disabled"
    with OrtRunner(tiny_onnx, reference_arithmetic=True) as runner:  # an FP32 graph needs no rewrite
        assert runner.infer({"input": _batch()})["logits"].shape == (2, 7)


def test_a_missing_file_is_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="model not found"):
        OrtRunner(tmp_path / "nope.onnx").activate()


def test_onnx_is_imported_only_for_reference_arithmetic(tiny_onnx):
    code = ("import sys; from corese_edge.runtime.ort import OrtRunner; import numpy as np; "
            f"r = OrtRunner({str(tiny_onnx)!r}).activate(); "
            "r.infer({'input': np.zeros((1, 3, 32, 32), np.float32)}); print('onnx' in sys.modules, end=' '); "
            f"OrtRunner({str(tiny_onnx)!r}, reference_arithmetic=True).activate(); print('onnx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
