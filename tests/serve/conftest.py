"""Fixtures of the serving tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TINY_SIZE

S = TINY_SIZE


@pytest.fixture(scope="module")
def int8_onnx(tiny_onnx, tmp_path_factory) -> Path:
    """A real Q/DQ INT8 artifact of the tiny model (ONNX Runtime's static quantizer, as the export uses)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from corese_edge.export.onnx_fp32 import read_metadata, set_metadata

    rng = np.random.default_rng(1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": rng.standard_normal((4, 3, S, S)).astype(np.float32)} for _ in range(2)])

        def get_next(self):
            return next(self.batches, None)

    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    quantize_static(str(tiny_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    import onnx

    model = onnx.load(str(out))
    set_metadata(model, read_metadata(tiny_onnx))
    onnx.save(model, str(out))
    return out
