"""Real ONNX Runtime runners on tiny exported models: the runner protocol, ExpressionClassifier's
agreement with the PyTorch checkpoint, batching, streaming, errors."""
from __future__ import annotations

import numpy as np
import pytest

from corese_edge.errors import UserError
from corese_edge.runtime import ExpressionClassifier, OrtRunner, Prediction, TorchRunner, open_runner
from corese_edge.runtime.classifier import softmax


def _torch_logits(checkpoint, x: np.ndarray) -> np.ndarray:
    import torch

    from corese_edge.model.checkpoint import load_model

    model = load_model(checkpoint, se_mode="sample")
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def _test_split(root):
    from corese_edge.data import load_index
    from corese_edge.images import read_rgb

    index = load_index(root)
    samples = index.split("test")
    return [read_rgb(s.path) for s in samples], [s.path for s in samples], index


def _eval_batch(frames, prep):
    from corese_edge.data.transforms import eval_transform, to_chw

    t = eval_transform(prep)
    return np.stack([to_chw(t(image=f)["image"]) for f in frames])


def test_runner_protocol(tiny_onnx, tiny_checkpoint):
    x = np.random.default_rng(0).uniform(-1, 1, (3, 3, 32, 32)).astype(np.float32)
    runner = OrtRunner(tiny_onnx, providers="cpu", threads=1)
    assert not runner.is_active and runner.last_inference_time is None
    with runner as r:
        assert r.input_names == ["input"] and r.output_names == ["logits"]
        assert r.input_shapes == {"input": (None, 3, 32, 32)}
        assert r.output_shapes == {"logits": (None, 7)}
        assert r.input_dtypes["input"] == np.float32 and r.output_dtypes["logits"] == np.float32
        assert r.providers == ["CPUExecutionProvider"]
        assert r.metadata.preprocessing.size == 32 and len(r.metadata.class_names) == 7
        out = r.infer({"input": x})
        assert set(out) == {"logits"} and out["logits"].shape == (3, 7)
        assert r.last_inference_time > 0
    assert not runner.is_active
    np.testing.assert_allclose(out["logits"], _torch_logits(tiny_checkpoint, x), rtol=1e-4, atol=1e-5)
    with pytest.raises(UserError, match="is not active"):
        runner.infer({"input": x})


@pytest.mark.parametrize(
    "feed, message",
    [
        ({"input": np.zeros((1, 3, 32, 32), np.float64)}, "must be float32, got float64"),
        ({"input": np.zeros((1, 3, 24, 24), np.float32)}, r"has shape \(1, 3, 24, 24\); the model takes input: float32\[Nx3x32x32\]"),
        ({"input": np.zeros((3, 32, 32), np.float32)}, "has shape"),
        ({"image": np.zeros((1, 3, 32, 32), np.float32)}, r"expected inputs \['input'\], got \['image'\]"),
        ({"input": np.zeros((0, 3, 32, 32), np.float32)}, "empty batch"),
        ({"input": [[0.0]]}, "must be a numpy array"),
    ],
)
def test_bad_feeds_get_clear_errors(tiny_onnx, feed, message):
    with OrtRunner(tiny_onnx, providers="cpu") as r, pytest.raises(UserError, match=message):
        r.infer(feed)


def test_provider_and_file_errors(tiny_onnx, tmp_path):
    with pytest.raises(UserError, match="provider 'cuda' is not available .*install onnxruntime-gpu.*CPUExecutionProvider"):
        OrtRunner(tiny_onnx, providers=["cuda"]).activate()
    with pytest.raises(UserError, match="model not found"):
        OrtRunner(tmp_path / "none.onnx").activate()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="ONNX Runtime cannot load it"):
        OrtRunner(bad).activate()
    with pytest.raises(UserError, match=r"unknown model format '\.tflite'"):
        open_runner(tmp_path / "m.tflite")


def test_classifier_equals_pytorch_on_the_synthetic_test_split(tiny_checkpoint, tiny_onnx, synthetic_data):
    frames, paths, _ = _test_split(synthetic_data)
    with ExpressionClassifier.from_artifact(tiny_onnx, threads=2) as clf:
        preds = clf.predict(paths)  # file paths, decoded by the runtime
        from_frames = clf.predict(frames)
        x = _eval_batch(frames, clf.preprocessing)
    want = _torch_logits(tiny_checkpoint, x)
    assert len(preds) == len(paths) == len(want)
    assert [p.index for p in preds] == list(want.argmax(1))
    assert [p.index for p in from_frames] == [p.index for p in preds]
    probs = np.stack([p.probs for p in preds])
    np.testing.assert_allclose(probs, softmax(want), atol=1e-5)
    assert all(p.box is None and p.label == clf.class_names[p.index] for p in preds)


@pytest.mark.slow
def test_trained_model_predictions_equal_pytorch(trained_run, synthetic_data, tmp_path):
    """The real short training run, exported and run by the runtime, agrees with PyTorch per image."""
    from corese_edge.export.onnx_fp32 import export_onnx

    onnx_path = export_onnx(trained_run.swa_path, tmp_path / "model.onnx")
    frames, paths, index = _test_split(synthetic_data)
    with ExpressionClassifier.from_artifact(onnx_path) as clf:
        preds = clf.predict(paths)
        x = _eval_batch(frames, clf.preprocessing)
    want = _torch_logits(trained_run.swa_path, x).argmax(1)
    assert [p.index for p in preds] == list(want)
    labels = [s.label for s in index.split("test")]
    assert np.mean(np.asarray(want) == np.asarray(labels)) > 1.0 / len(index.class_names)  # it learned something


def test_auto_batching_splits_without_changing_results(tiny_onnx):
    frames = list(np.random.default_rng(1).integers(0, 256, (11, 40, 40, 3), dtype=np.uint8))
    with ExpressionClassifier.from_artifact(tiny_onnx) as whole:
        ref = whole.logits(frames)
    with ExpressionClassifier.from_artifact(tiny_onnx, batch_size=4) as split:
        calls = []
        original = split.runner.infer
        split.runner.infer = lambda feed: calls.append(len(feed["input"])) or original(feed)
        got = split.logits(frames)
    assert calls == [4, 4, 3]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_single_frame_and_batch_array(tiny_onnx):
    frame = np.random.default_rng(2).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    with ExpressionClassifier.from_artifact(tiny_onnx) as clf:
        [one] = clf.predict(frame)
        two = clf.predict(np.stack([frame, frame]))
        bgr = clf.predict(frame[:, :, ::-1].copy(), color_order="bgr")
    assert isinstance(one, Prediction)
    assert one.probs.shape == (7,) and abs(float(one.probs.sum()) - 1.0) < 1e-5
    assert [p.index for p in two] == [one.index] * 2
    np.testing.assert_allclose(bgr[0].probs, one.probs, atol=1e-6)
    d = one.to_dict(clf.class_names)
    assert d["label"] == one.label and set(d["probs"]) == set(clf.class_names) and d["box"] is None


def test_stream_smooths_probabilities_with_an_ema(tiny_onnx):
    frames = list(np.random.default_rng(3).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8))
    with ExpressionClassifier.from_artifact(tiny_onnx) as clf:
        raw = [p.probs for p in clf.predict(frames)]
        smoothed = [p.probs for p in clf.stream(iter(frames), momentum=0.5)]
        unsmoothed = [p.probs for p in clf.stream(frames, momentum=0.0)]
        with pytest.raises(UserError, match="momentum"):
            list(clf.stream(frames, momentum=1.0))
        with pytest.raises(UserError, match="one frame per item"):
            list(clf.stream([frames]))
    expect = raw[0]
    np.testing.assert_allclose(smoothed[0], raw[0], atol=1e-6)
    for q, got in zip(raw[1:], smoothed[1:]):
        expect = 0.5 * expect + 0.5 * q
        np.testing.assert_allclose(got, expect, atol=1e-6)
    np.testing.assert_allclose(np.stack(unsmoothed), np.stack(raw), atol=1e-6)


def test_from_artifact_picks_torch_for_checkpoints(tiny_checkpoint, tiny_onnx):
    frame = np.random.default_rng(4).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with ExpressionClassifier.from_artifact(tiny_checkpoint) as t, ExpressionClassifier.from_artifact(tiny_onnx) as o:
        assert isinstance(t.runner, TorchRunner) and isinstance(o.runner, OrtRunner)
        np.testing.assert_allclose(t.logits(frame), o.logits(frame), rtol=1e-4, atol=1e-5)


def test_onnx_without_corese_metadata_is_refused(tiny_onnx, tmp_path):
    import onnx

    proto = onnx.load(str(tiny_onnx))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    with OrtRunner(plain) as r:  # a plain ONNX still runs as a runner (bench)
        assert r.metadata is None
    with pytest.raises(UserError, match="not a corese-edge artifact"):
        ExpressionClassifier.from_artifact(plain)


def test_empty_inputs(tiny_onnx):
    with ExpressionClassifier.from_artifact(tiny_onnx) as clf, pytest.raises(UserError, match="the list is empty"):
        clf.predict([])


def test_embedded_preprocessing_graph_takes_uint8_frames(tiny_onnx, tmp_path):
    """export --embed-preprocess writes a graph that takes uint8 NHWC frames; the runtime feeds it
    resized frames and gets the same probabilities as from the plain graph."""
    embed = pytest.importorskip("corese_edge.export.embed")
    variant = embed.embed_preprocess(tiny_onnx, tmp_path / "model.preprocess.onnx")
    frames = list(np.random.default_rng(5).integers(0, 256, (4, 45, 37, 3), dtype=np.uint8))
    with ExpressionClassifier.from_artifact(variant) as e, ExpressionClassifier.from_artifact(tiny_onnx) as plain:
        assert e.input.dtype == np.uint8 and e.input.shape[-1] == 3
        np.testing.assert_allclose(e.logits(frames), plain.logits(frames), rtol=1e-4, atol=1e-5)
