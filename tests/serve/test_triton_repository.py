"""``corese-edge package --triton``: every config.pbtxt parses under Triton's own schema
(tritonclient's ``model_config_pb2.ModelConfig``) and its names, dtypes, dims and batch limits are
the artifact's: real small ONNX and OpenVINO artifacts made from the session's tiny model, and for
a plan a fake plan with a real :class:`PlanSidecar` written by its own writer."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.errors import UserError
from corese_edge.export.tensorrt import engine_defaults
from corese_edge.preprocessing import Preprocessing
from corese_edge.runtime import OrtRunner, Preprocessor, softmax
from corese_edge.runtime.faces import FACE_MODEL_SHA256
from corese_edge.runtime.trt import PlanSidecar
from corese_edge.serve.triton import package_triton
from tests.conftest import CLASSES, TINY_SIZE
from tests.serve.fake_pb_utils import parse_config

pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient (dev extra) provides Triton's schema")
from tritonclient.grpc import model_config_pb2 as mc  # noqa: E402

S = TINY_SIZE


def params(config) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, S, S, 3), dtype=np.uint8)


def reference_probs(artifact: Path, x: np.ndarray) -> np.ndarray:
    """In-process: the artifact's own runner with the runtime's preprocessing, then softmax."""
    from corese_edge.runtime.artifacts import open_runner

    with open_runner(artifact) as runner:
        prep = Preprocessor(runner.metadata.preprocessing)
        return softmax(runner.infer({runner.input_names[0]: prep.normalize(x)})[runner.output_names[0]])


def check_classifier_common(config, folder: Path, max_batch: int, opt: int) -> None:
    assert config.name == "coresse"
    assert config.max_batch_size == max_batch
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert list(config.dynamic_batching.preferred_batch_size) == [opt]
    [warmup] = config.model_warmup
    assert warmup.batch_size == opt
    [inp] = config.input
    assert set(warmup.inputs) == {inp.name}
    assert warmup.inputs[inp.name].data_type == inp.data_type and list(warmup.inputs[inp.name].dims) == list(inp.dims)
    [out] = config.output
    assert out.label_filename == "labels.txt"
    assert (folder / "labels.txt").read_text().splitlines() == list(CLASSES)  # Triton: one label per line
    p = params(config)
    assert json.loads(p["class_names"]) == list(CLASSES)
    assert Preprocessing.from_json(p["preprocessing"]).size == S


def test_onnx_repository_parses_and_matches_the_served_graph(tiny_onnx, tmp_path):
    repo = package_triton(tiny_onnx, tmp_path / "models")
    defaults = engine_defaults()
    config = parse_config(repo.models["coresse"] / "config.pbtxt")
    check_classifier_common(config, repo.models["coresse"], defaults["max_batch"], defaults["opt_batch"])
    assert config.platform == "onnxruntime_onnx" and not config.backend
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_AUTO and config.instance_group[0].count == 1
    [inp], [out] = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("frames", mc.TYPE_UINT8, [S, S, 3])
    assert (out.name, out.data_type, list(out.dims)) == ("probabilities", mc.TYPE_FP32, [len(CLASSES)])
    assert params(config)["output_kind"] == "probabilities" and params(config)["input_form"] == "frames"

    # the file in 1/ is what the config says: names, dtypes, dims, a dynamic batch
    served = repo.models["coresse"] / "1" / "model.onnx"
    with OrtRunner(served) as runner:
        [ri], [ro] = runner.inputs, runner.outputs
        assert (ri.name, np.dtype(ri.dtype), ri.shape) == ("frames", np.uint8, (None, S, S, 3))
        assert (ro.name, np.dtype(ro.dtype), ro.shape[1:]) == ("probabilities", np.float32, (len(CLASSES),))
        x = frames(defaults["max_batch"])
        probs = runner.infer({"frames": x})["probabilities"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, reference_probs(tiny_onnx, x), atol=1e-5)
    assert not (repo.models["coresse"] / "1" / "model.py").exists()


def test_face_model_config_and_files(tiny_onnx, tmp_path):
    repo = package_triton(tiny_onnx, tmp_path / "models")
    folder = repo.models["coresse_faces"]
    config = parse_config(folder / "config.pbtxt")
    assert (config.name, config.backend, config.max_batch_size) == ("coresse_faces", "python", 0)
    [inp] = config.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("image", mc.TYPE_STRING, [1])
    got = {o.name: (o.data_type, list(o.dims)) for o in config.output}
    assert got == {"boxes": (mc.TYPE_FP32, [-1, 4]), "landmarks": (mc.TYPE_FP32, [-1, 5, 2]), "scores": (mc.TYPE_FP32, [-1]),
                   "probabilities": (mc.TYPE_FP32, [-1, len(CLASSES)]), "labels": (mc.TYPE_STRING, [-1])}
    p = params(config)
    assert (p["classifier_model"], p["classifier_input"], p["classifier_output"]) == ("coresse", "frames", "probabilities")
    yunet = folder / "1" / p["face_model_file"]
    assert hashlib.sha256(yunet.read_bytes()).hexdigest() == FACE_MODEL_SHA256
    source = Path(__file__).resolve().parents[2] / "corese_edge" / "serve" / "python_models" / "faces.py"
    assert (folder / "1" / "model.py").read_bytes() == source.read_bytes()


def test_openvino_repository_serves_frames_to_probabilities(tiny_onnx, tmp_path):
    pytest.importorskip("openvino")
    from corese_edge.export.openvino import ir_from_onnx
    from corese_edge.runtime import OpenVinoRunner

    xml = ir_from_onnx(tiny_onnx, tmp_path / "ir" / "model.xml")
    repo = package_triton(xml, tmp_path / "models", max_batch=4, instances=2, faces=False)
    assert set(repo.models) == {"coresse"}
    config = parse_config(repo.models["coresse"] / "config.pbtxt")
    check_classifier_common(config, repo.models["coresse"], 4, 4)
    assert config.backend == "openvino" and not config.platform
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU and config.instance_group[0].count == 2
    [inp], [out] = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("frames", mc.TYPE_UINT8, [S, S, 3])
    assert (out.name, out.data_type, list(out.dims)) == ("probabilities", mc.TYPE_FP32, [len(CLASSES)])
    served = repo.models["coresse"] / "1" / "model.xml"
    assert served.with_suffix(".bin").is_file()
    with OpenVinoRunner(served, inference_precision="f32") as runner:
        [ri], [ro] = runner.inputs, runner.outputs
        assert (ri.name, np.dtype(ri.dtype), ri.shape[1:]) == ("frames", np.uint8, (S, S, 3))
        assert (ro.name, ro.shape[1:]) == ("probabilities", (len(CLASSES),))
        assert runner.metadata.class_names == CLASSES  # the metadata travels into the served IR
        x = frames(4, seed=1)
        probs = runner.infer({"frames": x})["probabilities"]
    np.testing.assert_allclose(probs, reference_probs(tiny_onnx, x), atol=1e-4)


def write_plan(folder: Path, *, frames_input: bool, precision: str = "int8") -> Path:
    """A fake plan (random bytes) and a real sidecar committed by PlanSidecar.write."""
    folder.mkdir(parents=True, exist_ok=True)
    data = b"fake plan " + bytes(range(256)) * 4
    name = "frames" if frames_input else "input"
    shape = [-1, S, S, 3] if frames_input else [-1, 3, S, S]
    item = shape[1:]
    prep = Preprocessing(size=S, layout="nhwc" if frames_input else "nchw")
    sidecar = PlanSidecar(
        plan="model.int8.plan", plan_size=len(data), plan_sha256=hashlib.sha256(data).hexdigest(), precision=precision,
        trt_version="10.13.0.35", gpu_name="NVIDIA H200", compute_capability="9.0",
        profile={name: {"min": [1] + item, "opt": [4] + item, "max": [16] + item}},
        inputs=({"name": name, "mode": "input", "dtype": "uint8" if frames_input else "float32", "shape": shape},),
        outputs=({"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, len(CLASSES)]},),
        class_names=CLASSES, preprocessing=prep, model="coresse-lite",
    )
    plan = folder / "model.int8.plan"
    sidecar.write(plan, data)
    return plan


@pytest.mark.parametrize("frames_input", [False, True], ids=["float-input", "frames-input"])
def test_plan_repository_takes_the_sidecars_io_and_profile(tmp_path, frames_input):
    plan = write_plan(tmp_path / "engine", frames_input=frames_input)
    repo = package_triton(plan, tmp_path / "models", faces=False)
    folder = repo.models["coresse"]
    config = parse_config(folder / "config.pbtxt")
    check_classifier_common(config, folder, 16, 4)  # profile max 16, opt 4
    assert config.platform == "tensorrt_plan"
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    [inp], [out] = config.input, config.output
    if frames_input:
        assert (inp.name, inp.data_type, list(inp.dims)) == ("frames", mc.TYPE_UINT8, [S, S, 3])
    else:
        assert (inp.name, inp.data_type, list(inp.dims)) == ("input", mc.TYPE_FP32, [3, S, S])
    # a prebuilt plan without softmax keeps logits, and the parameters say so
    assert (out.name, out.data_type, list(out.dims)) == ("logits", mc.TYPE_FP32, [len(CLASSES)])
    p = params(config)
    assert p["output_kind"] == "logits" and p["softmax"].startswith("not applied")
    assert p["input_form"] == ("frames" if frames_input else "normalized")
    assert (folder / "1" / "model.plan").read_bytes() == plan.read_bytes()
    copied = PlanSidecar.read(folder / "1" / "model.plan.json")  # the runner's own reader accepts the copy
    assert copied.plan_size == plan.stat().st_size
    assert any("logits" in n for n in repo.notes)


def test_plan_batch_limits_are_the_profiles(tmp_path):
    plan = write_plan(tmp_path / "engine", frames_input=True)
    repo = package_triton(plan, tmp_path / "small", faces=False, max_batch=2)
    config = parse_config(repo.models["coresse"] / "config.pbtxt")
    assert config.max_batch_size == 2 and config.model_warmup[0].batch_size == 2  # opt capped at the maximum
    with pytest.raises(UserError, match="exceeds the plan's profile maximum 16"):
        package_triton(plan, tmp_path / "big", faces=False, max_batch=17)


def test_plan_with_a_broken_sidecar_is_refused(tmp_path):
    plan = write_plan(tmp_path / "engine", frames_input=True)
    plan.write_bytes(plan.read_bytes()[:-1])
    with pytest.raises(UserError, match="truncated"):
        package_triton(plan, tmp_path / "models", faces=False)


def test_python_backend_repository(tiny_onnx, tmp_path):
    repo = package_triton(tiny_onnx, tmp_path / "models", backend="python", max_batch=8)
    folder = repo.models["coresse"]
    config = parse_config(folder / "config.pbtxt")
    check_classifier_common(config, folder, 8, 8)
    assert config.backend == "python" and not config.platform
    assert config.instance_group[0].kind == mc.ModelInstanceGroup.KIND_CPU
    [inp], [out] = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("frames", mc.TYPE_UINT8, [S, S, 3])
    assert (out.name, out.data_type, list(out.dims)) == ("probabilities", mc.TYPE_FP32, [len(CLASSES)])
    assert params(config)["artifact_file"] == "model.onnx"
    assert (folder / "1" / "model.onnx").read_bytes() == Path(tiny_onnx).read_bytes()  # the artifact, unchanged
    assert (folder / "1" / "model.py").is_file()
    # packaging again natively leaves no Python model behind
    package_triton(tiny_onnx, tmp_path / "models", faces=False)
    assert not (folder / "1" / "model.py").exists()


def test_threads_reach_each_backends_own_key(tiny_onnx, tmp_path):
    py = package_triton(tiny_onnx, tmp_path / "py", backend="python", instances=2, threads=3, faces=False)
    config = parse_config(py.models["coresse"] / "config.pbtxt")
    assert config.instance_group[0].count == 2 and params(config)["threads"] == "3"
    native = package_triton(tiny_onnx, tmp_path / "native", threads=2, faces=False)
    config = parse_config(native.models["coresse"] / "config.pbtxt")
    assert params(config)["intra_op_thread_count"] == "2" and "threads" not in params(config)
    plain = package_triton(tiny_onnx, tmp_path / "plain", faces=False)
    assert not {"threads", "intra_op_thread_count"} & set(params(parse_config(plain.models["coresse"] / "config.pbtxt")))
    with pytest.raises(UserError, match="--threads must be >= 1"):
        package_triton(tiny_onnx, tmp_path / "bad", threads=0, faces=False)


def test_package_cli(tiny_onnx, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["package", str(tiny_onnx), "--triton", str(tmp_path / "models"), "--no-faces"])
    assert result.exit_code == 0, result.output
    assert "wrote Triton repository" in result.output and "frames -> probabilities" in result.output
    parse_config(tmp_path / "models" / "coresse" / "config.pbtxt")

    result = runner.invoke(cli, ["package", str(tiny_onnx)])
    assert result.exit_code == 2 and result.output.strip() == "error: package needs --triton DIR and/or --deepstream DIR"
    result = runner.invoke(cli, ["package", str(tmp_path / "tiny.pt"), "--triton", str(tmp_path / "m")])
    assert result.exit_code == 2 and "not a checkpoint" in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["package", str(tmp_path / "missing.onnx"), "--triton", str(tmp_path / "m")])
    assert result.exit_code == 2 and "artifact not found" in result.output
