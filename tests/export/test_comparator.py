"""The comparator: several runtime runners on one stream of decoded batches, typed results."""
from __future__ import annotations

import numpy as np
import pytest

from corese_edge.data.layouts import load_index
from corese_edge.export import comparator as C
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime.ort import OrtRunner

PREP = Preprocessing(size=32)


@pytest.fixture(scope="module")
def fp16_onnx(tiny_onnx, tmp_path_factory):
    from corese_edge.export.fp16 import convert_fp16

    return convert_fp16(tiny_onnx, tmp_path_factory.mktemp("cmp") / "model.fp16.onnx")


def test_an_ort_runner_and_a_reference_arithmetic_one_see_the_same_batches(fp16_onnx, synthetic_data, monkeypatch):
    samples = load_index(synthetic_data).split("test")[:21]
    decoded, fed = [], {"plain": [], "reference": []}
    real_batches = C.image_batches

    def batches(paths, prep, batch_size):
        for batch in real_batches(paths, prep, batch_size):
            decoded.append(batch)
            yield batch

    real_logits = C.runner_logits

    def logits(runner, batch, *args):
        fed["reference" if runner.reference_arithmetic else "plain"].append(batch)
        return real_logits(runner, batch, *args)

    monkeypatch.setattr(C, "image_batches", batches)
    monkeypatch.setattr(C, "runner_logits", logits)
    runners = {"plain": OrtRunner(fp16_onnx), "reference": OrtRunner(fp16_onnx, reference_arithmetic=True)}
    results = C.Comparator.run(runners, samples, PREP, batch_size=8)

    assert results.names == ("plain", "reference")
    np.testing.assert_array_equal(results.labels, [s.label for s in samples])
    assert [len(b) for b in decoded] == [8, 8, 5]  # decoded once, one batch of pixels at a time
    assert all(a is b for a, b in zip(fed["plain"], decoded)) and all(a is b for a, b in zip(fed["reference"], decoded))
    assert results.facts["plain"] == C.RunnerFacts("ort", "fp16", {}, "all")
    assert results.facts["reference"] == C.RunnerFacts("ort", "fp16", {}, "disabled")
    assert not any(r.is_active for r in runners.values())  # activated by the comparator, closed by it
    x = np.concatenate(decoded)
    for name, runner in (("plain", OrtRunner(fp16_onnx)), ("reference", OrtRunner(fp16_onnx, reference_arithmetic=True))):
        with runner:
            want = runner.infer({"input": x})["logits"]
        assert results.logits[name].shape == (21, 7) and results.logits[name].dtype == np.float32
        np.testing.assert_allclose(results.logits[name], want, rtol=0, atol=1e-6)
    # the two arithmetics are different computations of the same FP16 graph
    assert 0 < np.max(np.abs(results.logits["plain"] - results.logits["reference"])) < 0.05


def test_runner_logits_leaves_an_active_runner_open_and_chunks_to_its_limits(tiny_onnx, synthetic_data):
    samples = load_index(synthetic_data).split("test")[:5]
    with OrtRunner(tiny_onnx) as runner:
        one = C.Comparator.run({"fp32": runner}, samples, PREP)
        assert runner.is_active
        limited = C.Comparator.run({"fp32": runner}, samples, PREP, batch_limits={"fp32": (4, 2)})
    np.testing.assert_allclose(limited.logits["fp32"], one.logits["fp32"], atol=1e-6)
    assert one.extended(limited).logits["fp32"].shape == (10, 7)
