"""Fixtures for the export tests: real exports of tiny models on the synthetic set, real files."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_export(tiny_checkpoint, synthetic_data, tmp_path_factory):
    """FP32 + FP16 + INT8 (TensorRT flavour) + --embed-preprocess of the untrained 32 px checkpoint.

    The model is untrained, so its accuracy is chance level; the drift limit is set out of the way
    and the tests look at the files, the metadata and the arithmetic.
    """
    from corese_edge.export import make_export_config, run_export

    cfg = make_export_config(
        checkpoint=str(tiny_checkpoint), data=str(synthetic_data), fp16=True, int8=True, embed_preprocess=True,
        target="tensorrt", calib_size=16, max_drift=100.0, engine=False, progress=False,
        out=str(tmp_path_factory.mktemp("tiny_export")),
    )
    return run_export(cfg)
