"""CONTRACT: ``runner_logits`` (how the engine drift feeds a ``TrtRunner``) pads and chunks batches into the plan's
optimization profile and runs them through the real ``TrtRunner``, here on the TensorRT and CUDA
fakes (tests/runtime/fakes.py): the fake context refuses a batch outside the profile, and the fake
CUDA layer is asynchronous, so padding, chunking and reading back are all exercised."""
from __future__ import annotations

import numpy as np
import pytest

import corese_edge.runtime.trt as trt_mod
from corese_edge.export.comparator import runner_logits
from tests.runtime.fakes import FakeCuda, FakeTrt, expected_logits, write_plan

pytestmark = pytest.mark.contract

MIN_BATCH, MAX_BATCH, SIZE = 2, 8, 8


@pytest.fixture
def engine_logits(tmp_path, monkeypatch):
    """runner_logits on a fake plan with profile 2..8; yields it and the batch sizes the engine ran."""
    plan = write_plan(tmp_path, size=SIZE, min_batch=MIN_BATCH, max_batch=MAX_BATCH)
    cuda = FakeCuda()
    monkeypatch.setattr(trt_mod, "cuda_api", lambda backend="auto": cuda)
    monkeypatch.setattr(trt_mod, "import_trt", lambda module="auto": FakeTrt())
    ran: list[int] = []
    real_execute = trt_mod.TrtRunner.execute

    def execute(self, batch, transfers=True):
        ran.append(batch)
        return real_execute(self, batch, transfers)

    monkeypatch.setattr(trt_mod.TrtRunner, "execute", execute)
    runner = trt_mod.TrtRunner(str(plan)).activate()
    yield (lambda x: runner_logits(runner, x, min_batch=MIN_BATCH, max_batch=MAX_BATCH)), ran
    runner.close()
    assert cuda.live == {}


@pytest.mark.parametrize("rows, chunks", [
    (1, [2]),            # below the profile's minimum: zero-padded to 2, one row kept
    (7, [7]),
    (9, [8, 2]),         # 8 + 1, the 1 padded to 2
    (20, [8, 8, 4]),
])
def test_logits_equal_the_reference_for_batches_that_do_not_fit_the_profile(engine_logits, rows, chunks):
    fn, ran = engine_logits
    x = np.random.default_rng(rows).uniform(-1, 1, (rows, 3, SIZE, SIZE)).astype(np.float32)
    logits = fn(x)
    assert logits.shape == (rows, 7) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected_logits(x), rtol=1e-5, atol=1e-6)
    assert ran == chunks and all(MIN_BATCH <= b <= MAX_BATCH for b in ran)


def test_consecutive_calls_do_not_leak_rows_between_batches(engine_logits):
    """A short batch after a long one must not pick up the long one's rows from the pinned buffers."""
    fn, _ran = engine_logits
    rng = np.random.default_rng(11)
    big = rng.uniform(-1, 1, (20, 3, SIZE, SIZE)).astype(np.float32)
    small = rng.uniform(-1, 1, (3, 3, SIZE, SIZE)).astype(np.float32)
    np.testing.assert_allclose(fn(big), expected_logits(big), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fn(small), expected_logits(small), rtol=1e-5, atol=1e-6)
    one = small[:1]
    np.testing.assert_allclose(fn(one), expected_logits(one), rtol=1e-5, atol=1e-6)
