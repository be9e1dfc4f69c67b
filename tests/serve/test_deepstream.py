"""``corese-edge package ARTIFACT.onnx --deepstream DIR``: model.softmax.onnx gives probabilities
with the artifact's argmax (Q/DQ kept), labels.txt is nvinfer's one-line format, and the config
parses as a GLib key file (configparser) with exactly the values the artifact's metadata implies.
DeepStream itself cannot run here."""
from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.errors import UserError
from corese_edge.runtime import OrtRunner, Preprocessor
from corese_edge.serve.deepstream import package_deepstream
from tests.conftest import CLASSES, TINY_SIZE

S = TINY_SIZE


def read_config(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=("#",), inline_comment_prefixes=None,
                                       delimiters=("=",), strict=True)
    parser.optionxform = str  # GLib keys are case-sensitive
    parser.read_string(path.read_text())
    assert parser.sections() == ["property"]
    return dict(parser["property"])


EXPECTED = {
    "gpu-id": "0",
    "net-scale-factor": "0.007843137255",  # 1 / (255 * 0.5)
    "offsets": "127.5;127.5;127.5",
    "model-color-format": "0",
    "onnx-file": "model.softmax.onnx",
    "labelfile-path": "labels.txt",
    "infer-dims": f"3;{S};{S}",
    "batch-size": "16",
    "network-mode": "0",
    "network-type": "1",
    "process-mode": "2",
    "gie-unique-id": "2",
    "operate-on-gie-id": "1",
    "output-blob-names": "probabilities",
    "classifier-threshold": "0",
    "maintain-aspect-ratio": "0",
    "scaling-filter": "1",
    "scaling-compute-hw": "0",
}


def test_fp32_package_files_and_config(tiny_onnx, tmp_path):
    ds = package_deepstream(tiny_onnx, tmp_path / "ds")
    assert read_config(ds.config) == EXPECTED
    assert float(EXPECTED["net-scale-factor"]) == pytest.approx(1 / 127.5, rel=1e-9)
    assert ds.labels.read_text() == ";".join(CLASSES) + "\n"  # one line: one output layer's labels
    assert (tmp_path / "ds" / "deepstream_app_secondary_gie.txt").read_text().count("config-file=config_infer_secondary_coresse.txt") == 1


def softmax_rows(model: Path, artifact: Path, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    x_frames = np.random.default_rng(0).integers(0, 256, (n, S, S, 3), dtype=np.uint8)
    with OrtRunner(artifact) as runner:
        x = Preprocessor(runner.metadata.preprocessing).normalize(x_frames)
        logits = runner.infer({"input": x})["logits"]
    with OrtRunner(model) as runner:
        assert runner.input_names == ["input"] and runner.output_names == ["probabilities"]
        probs = runner.infer({"input": x})["probabilities"]
    return probs, logits


def test_softmax_model_rows_sum_to_one_with_the_artifacts_argmax(tiny_onnx, tmp_path):
    ds = package_deepstream(tiny_onnx, tmp_path / "ds")
    probs, logits = softmax_rows(ds.model, tiny_onnx)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all()


def test_int8_artifact_keeps_its_qdq(int8_onnx, tmp_path):
    import onnx

    ds = package_deepstream(int8_onnx, tmp_path / "ds", batch_size=4, operate_on_class_ids="0;2", threshold=0.3)
    config = read_config(ds.config)
    assert config == {**EXPECTED, "network-mode": "1", "batch-size": "4", "classifier-threshold": "0.3",
                      "operate-on-class-ids": "0;2"}
    ops = lambda p: [n.op_type for n in onnx.load(str(p)).graph.node]  # noqa: E731
    original, served = ops(int8_onnx), ops(ds.model)
    assert served == original + ["Softmax"] and original.count("QuantizeLinear") > 0
    probs, logits = softmax_rows(ds.model, int8_onnx)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == logits.argmax(axis=1)).all()


def test_refusals(tiny_onnx, tmp_path):
    from corese_edge.export.embed import embed_preprocess

    with pytest.raises(UserError, match="takes an .onnx artifact"):
        package_deepstream(tmp_path / "model.plan", tmp_path / "ds")
    embedded = embed_preprocess(tiny_onnx, tmp_path / "model.preprocess.onnx")
    with pytest.raises(UserError, match="takes uint8 frames"):
        package_deepstream(embedded, tmp_path / "ds")
    with pytest.raises(UserError, match="operate-on-class-ids"):
        package_deepstream(tiny_onnx, tmp_path / "ds", operate_on_class_ids="face")


def test_per_channel_std_is_refused(tiny_onnx, tmp_path):
    import onnx

    from corese_edge.preprocessing import Preprocessing

    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key == "preprocessing":
            prep = Preprocessing.from_json(prop.value)
            prop.value = Preprocessing(**{**prep.__dict__, "std": (0.229, 0.224, 0.225)}).to_json()
    path = tmp_path / "imagenet.onnx"
    onnx.save(model, str(path))
    with pytest.raises(UserError, match="net-scale-factor is one number for all channels"):
        package_deepstream(path, tmp_path / "ds")


def test_deepstream_cli(tiny_onnx, tmp_path):
    result = CliRunner().invoke(cli, ["package", str(tiny_onnx), "--deepstream", str(tmp_path / "ds"),
                                      "--operate-on-class-ids", "0"])
    assert result.exit_code == 0, result.output
    assert read_config(tmp_path / "ds" / "config_infer_secondary_coresse.txt")["operate-on-class-ids"] == "0"
