"""OpenVinoRunner on tiny real IRs (OpenVINO runs for real): metadata through rt_info, logits
against ONNX Runtime, the precision that really executes, bad inputs and files, options, the
classifier on an .xml."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from corese_edge import __version__
from corese_edge.errors import MissingExtra, UserError
from corese_edge.metadata import ArtifactMetadata, write_rt_info
from corese_edge.preprocessing import FaceTemplate, Preprocessing
from corese_edge.runtime import ExpressionClassifier, OrtRunner, open_runner
from corese_edge.runtime.openvino import OpenVinoRunner
from corese_edge.runtime.openvino import shared_core

ov = pytest.importorskip("openvino")

CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
SIZE = 16
#: a learned template unlike the default, so a round trip that dropped it would show
TEMPLATE = FaceTemplate(right_eye=(0.31, 0.42), left_eye=(0.69, 0.41), mouth=(0.5, 0.78), source="learned", images=57)


def tiny_metadata(size: int = SIZE) -> ArtifactMetadata:
    return ArtifactMetadata(
        class_names=CLASSES,
        preprocessing=Preprocessing(size=size, interpolation="area", face_template=TEMPLATE),
        model="test-tiny", checkpoint_sha256="0" * 64, corese_edge_version=__version__,
    )


def write_tiny_onnx(path: Path, size: int = SIZE, metadata: bool = True, width: int = 8) -> Path:
    """input (batch, 3, size, size) -> Conv 3x3 (width) -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> logits (batch, 7)."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (width, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (width,)).astype(np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 1.0, (7, width)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (7,)).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        for key, value in tiny_metadata(size).to_props().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def ir_from(onnx_path: Path, xml: Path, build: dict | None = None, metadata: bool = True, **convert) -> Path:
    """OpenVINO's own conversion + the lead's rt_info writer (independent of export/openvino.py)."""
    model = ov.convert_model(str(onnx_path), **convert)
    if metadata:
        props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
        write_rt_info(model, props, build or {"precision": "fp32", "quantizer": "none"})
    ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


@pytest.fixture(scope="module")
def tiny_ir(tmp_path_factory) -> tuple[Path, Path]:
    """(tiny.onnx, tiny.xml) with corese-edge metadata."""
    d = tmp_path_factory.mktemp("ov")
    onnx_path = write_tiny_onnx(d / "tiny.onnx")
    return onnx_path, ir_from(onnx_path, d / "tiny.xml")


def _x(batch: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 3, SIZE, SIZE)).astype(np.float32)


def _cpu_default_precision() -> str:
    """What OpenVINO's CPU plugin runs a float model at here, from the plugin itself."""
    hint = shared_core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    return {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[hint]


# -- metadata, shapes, numbers -----------------------------------------------------------------------
def test_metadata_round_trip_through_the_ir(tiny_ir):
    _, xml = tiny_ir
    with OpenVinoRunner(xml) as r:
        assert r.metadata_problem is None
        assert r.metadata == tiny_metadata()
        assert r.metadata.preprocessing.face_template == TEMPLATE  # learned, not the default
        assert r.metadata.preprocessing.interpolation == "area"
        assert r.build == {"precision": "fp32", "quantizer": "none"}
        assert r.input_shapes == {"input": (None, 3, SIZE, SIZE)} and r.output_shapes == {"logits": (None, 7)}
        assert r.input_dtypes["input"] == np.float32 and r.max_batch is None


def test_logits_equal_onnx_runtime_with_f32_forced(tiny_ir):
    onnx_path, xml = tiny_ir
    x = _x(5)
    with OrtRunner(onnx_path, providers="cpu") as ort_runner:
        want = ort_runner.infer({"input": x})["logits"]
    with OpenVinoRunner(xml, inference_precision="f32", threads=1) as r:
        got = r.infer({"input": x})
        assert r.precision == "fp32" and r.execution["inference_precision"] == "f32"
        assert r.execution["threads"] == 1 and r.execution["hint"] == "LATENCY" and r.execution["device"] == "CPU"
        assert r.last_inference_time > 0
    assert set(got) == {"logits"} and got["logits"].dtype == np.float32 and got["logits"].shape == (5, 7)
    np.testing.assert_allclose(got["logits"], want, rtol=1e-4, atol=1e-4)


def test_outputs_belong_to_the_caller(tiny_ir):
    _, xml = tiny_ir
    with OpenVinoRunner(xml, inference_precision="f32") as r:
        first = r.infer({"input": _x(2, seed=1)})["logits"]
        kept = first.copy()
        second = r.infer({"input": _x(2, seed=2)})["logits"]
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)  # the second query did not overwrite the first result
    assert not np.allclose(first, second)


def test_onnx_read_directly_carries_its_metadata(tiny_ir):
    onnx_path, _ = tiny_ir
    with OpenVinoRunner(onnx_path, inference_precision="f32") as r:
        assert r.metadata == tiny_metadata() and r.build == {}
        assert r.infer({"input": _x(1)})["logits"].shape == (1, 7)


def test_ir_without_metadata_sets_the_problem_like_onnx(tmp_path):
    xml = ir_from(write_tiny_onnx(tmp_path / "bare.onnx", metadata=False), tmp_path / "bare.xml", metadata=False)
    with OpenVinoRunner(xml) as r:
        assert r.metadata is None and "not a corese-edge artifact" in r.metadata_problem
        assert r.infer({"input": _x(1)})["logits"].shape == (1, 7)  # still runs
    with pytest.raises(UserError, match="not a corese-edge artifact"):
        ExpressionClassifier.from_artifact(xml)


def test_static_batch_ir_runs_at_that_batch(tmp_path):
    xml = ir_from(write_tiny_onnx(tmp_path / "s.onnx"), tmp_path / "s.xml", input=[2, 3, SIZE, SIZE])
    with OpenVinoRunner(xml) as r:
        assert r.max_batch == 2 and r.input_shapes["input"] == (2, 3, SIZE, SIZE)
        assert r.infer({"input": _x(2)})["logits"].shape == (2, 7)
        with pytest.raises(UserError, match="has shape"):
            r.infer({"input": _x(1)})


# -- the precision that runs ---------------------------------------------------------------------------
def test_default_precision_is_what_the_cpu_runs(tiny_ir):
    _, xml = tiny_ir
    with OpenVinoRunner(xml) as r:
        assert r.precision == _cpu_default_precision()
        assert r.precision in r.execution["runtime_precisions"] or r.precision == "fp32"


def test_bf16_hint_is_never_reported_as_fp32(tiny_ir):
    if "BF16" not in shared_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no BF16 (needs AVX-512-BF16 or AMX)")
    _, xml = tiny_ir
    with OpenVinoRunner(xml, inference_precision="bf16") as r:
        assert r.precision == "bf16" and r.execution["inference_precision"] == "bf16"
        assert r.execution["runtime_precisions"].get("bf16", 0) >= 1  # the Conv really runs in BF16


def _fake_quantize_ir(path: Path) -> Path:
    from openvino import opset13 as ops

    x = ops.parameter([-1, 3, SIZE, SIZE], np.float32, name="input")
    fq = ops.fake_quantize(x, -1.0, 1.0, -1.0, 1.0, 256)
    conv = ops.convolution(fq, ops.constant(np.ones((4, 3, 1, 1), np.float32)), [1, 1], [0, 0], [0, 0], [1, 1])
    conv.output(0).set_names({"logits"})
    ov.save_model(ov.Model([conv], [x], "fq"), str(path))
    return path


def _weight_only_int8_ir(path: Path) -> Path:
    """int8 weight constant -> Convert -> Multiply(scale) -> Conv: NNCF's weight compression pattern."""
    from openvino import opset13 as ops

    x = ops.parameter([-1, 3, SIZE, SIZE], np.float32, name="input")
    w = ops.multiply(ops.convert(ops.constant(np.ones((4, 3, 1, 1), np.int8)), np.float32), ops.constant(np.float32(0.1)))
    conv = ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1])
    conv.output(0).set_names({"logits"})
    ov.save_model(ov.Model([conv], [x], "wc"), str(path))
    return path


@pytest.mark.parametrize("make", [_fake_quantize_ir, _weight_only_int8_ir], ids=["fake-quantize", "int8-weights"])
def test_quantized_ir_reports_int8(tmp_path, make):
    xml = make(tmp_path / "q.xml")
    with OpenVinoRunner(xml, inference_precision="f32") as r:  # the float hint does not hide INT8
        assert r.precision == "int8" and r.metadata is None
        assert r.infer({"input": _x(1)})["logits"].shape == (1, 4, SIZE, SIZE)


def test_qdq_onnx_converted_is_int8(tmp_path):
    from tests.export.onnx_graphs import int8_conv_model

    onnx.save(int8_conv_model(), str(tmp_path / "q.onnx"))
    xml = ir_from(tmp_path / "q.onnx", tmp_path / "q.xml", metadata=False)
    with OpenVinoRunner(xml) as r:
        assert r.precision == "int8"
        # the Conv runs in INT8: the CPU plugin reports the layer by its activation type, i8 or u8
        # (u8 x i8 where the kernel feeds VPDPBUSD/VPMADDUBSW, as on AVX2 and AVX-512 VNNI)
        assert {"i8", "u8"} & set(r.execution["runtime_precisions"]), r.execution["runtime_precisions"]


# -- errors --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "feed, message",
    [
        ({"input": np.zeros((1, 3, SIZE, SIZE), np.float64)}, "must be float32, got float64"),
        ({"input": np.zeros((1, 3, 8, 8), np.float32)}, r"has shape \(1, 3, 8, 8\); the model takes input: float32\[Nx3x16x16\]"),
        ({"input": np.zeros((3, SIZE, SIZE), np.float32)}, "has shape"),
        ({"image": np.zeros((1, 3, SIZE, SIZE), np.float32)}, r"expected inputs \['input'\], got \['image'\]"),
        ({"input": np.zeros((0, 3, SIZE, SIZE), np.float32)}, "empty batch"),
    ],
)
def test_bad_feeds_get_clear_errors(tiny_ir, feed, message):
    _, xml = tiny_ir
    with OpenVinoRunner(xml) as r, pytest.raises(UserError, match=message):
        r.infer(feed)


def test_missing_and_corrupt_files(tiny_ir, tmp_path):
    _, xml = tiny_ir
    with pytest.raises(UserError, match="model not found"):
        OpenVinoRunner(tmp_path / "none.xml").activate()
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(xml.read_bytes())  # the .xml without its .bin
    with pytest.raises(UserError, match=r"lonely\.bin: weights file missing.*copy both"):
        OpenVinoRunner(lonely).activate()
    bad = tmp_path / "bad.xml"
    bad.write_text("<net name='x'><layers><layer id='0'")  # truncated XML
    bad.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(UserError, match=r"bad\.xml: OpenVINO cannot read it \(") as info:
        OpenVinoRunner(bad).activate()
    assert "\n" not in str(info.value)
    short = tmp_path / "short.xml"  # a real .xml whose .bin is truncated
    short.write_bytes(xml.read_bytes())
    short.with_suffix(".bin").write_bytes(xml.with_suffix(".bin").read_bytes()[:10])
    with pytest.raises(UserError, match=r"short\.xml: OpenVINO cannot read it"):
        OpenVinoRunner(short).activate()


def test_unknown_device_lists_the_available_ones(tiny_ir):
    _, xml = tiny_ir
    available = ", ".join(shared_core().available_devices)
    with pytest.raises(UserError, match=rf"device 'GPU\.7' is not available here; available: {available}"):
        OpenVinoRunner(xml, device="gpu.7").activate()
    with pytest.raises(UserError, match="not a GPU index"):
        open_runner(xml, device=0)
    with OpenVinoRunner(xml, device="cpu") as r:  # names are case-insensitive
        assert r.device == "CPU" and r.execution["device"] == "CPU"


@pytest.mark.parametrize("options, message", [
    ({"hint": "fast"}, "hint must be one of latency, throughput, cumulative_throughput"),
    ({"inference_precision": "int4"}, "inference_precision must be f32, bf16 or f16"),
    ({"streams": 0}, "streams must be an integer >= 1 or 'auto'"),
    ({"threads": 0}, "threads must be an integer >= 1"),
    ({"device": "GPU", "threads": 2}, "threads applies to OpenVINO's CPU device only"),
    ({"device": ""}, "an OpenVINO device is a name"),
])
def test_invalid_options_are_one_line(tiny_ir, options, message):
    with pytest.raises(UserError, match=message) as info:
        OpenVinoRunner(tiny_ir[1], **options)
    assert "\n" not in str(info.value)


def test_options_reach_the_compiled_model(tiny_ir):
    # each option differs from what the hint alone gives (LATENCY: 1 stream; THROUGHPUT: one per core)
    with OpenVinoRunner(tiny_ir[1], streams=2, threads=2) as r:
        assert r.execution["num_streams"] == 2 and r.execution["hint"] == "LATENCY" and r.execution["threads"] == 2
    with OpenVinoRunner(tiny_ir[1], hint="throughput", streams=1, threads=1) as r:
        assert r.execution["num_streams"] == 1 and r.execution["hint"] == "THROUGHPUT" and r.execution["threads"] == 1


def test_missing_openvino_is_one_line_naming_the_extra(tiny_ir, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    with pytest.raises(MissingExtra, match=r"openvino is not installed .*pip install 'corese-edge\[openvino\]'") as info:
        OpenVinoRunner(tiny_ir[1]).activate()
    assert "\n" not in str(info.value)


# -- the classifier --------------------------------------------------------------------------------------
def test_classifier_on_the_ir_equals_the_onnx(tiny_ir):
    onnx_path, xml = tiny_ir
    frames = np.random.default_rng(3).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    with ExpressionClassifier.from_artifact(xml, inference_precision="f32") as clf:
        assert clf.runner.backend == "openvino" and clf.class_names == CLASSES
        assert clf.preprocessing.face_template == TEMPLATE
        preds = clf.predict(frames)
        [one] = clf.predict(frames[0])
    with ExpressionClassifier.from_artifact(onnx_path) as ref:
        want = ref.predict(frames)
    assert [p.index for p in preds] == [p.index for p in want] and one.index == preds[0].index
    np.testing.assert_allclose(np.stack([p.probs for p in preds]), np.stack([p.probs for p in want]), atol=1e-4)
    with ExpressionClassifier.from_artifact(xml) as default:  # the device's default precision
        assert default.runner.precision == _cpu_default_precision()
        assert [p.label for p in default.predict(frames)][0] in CLASSES


def test_calls_from_several_threads_are_serialized(tmp_path):
    """One InferRequest per runner: concurrent infer() calls must not mix each other's results
    (without the runner's lock, 4 threads x 30 calls here return other threads' logits)."""
    import threading

    xml = ir_from(write_tiny_onnx(tmp_path / "t.onnx", size=48, width=32), tmp_path / "t.xml")
    xs = [np.random.default_rng(i).uniform(-1, 1, (2, 3, 48, 48)).astype(np.float32) for i in range(4)]
    errors: list[str] = []
    with OpenVinoRunner(xml, inference_precision="f32", threads=1) as r:
        want = [r.infer({"input": x})["logits"] for x in xs]

        def work(i: int) -> None:
            try:
                for _ in range(30):
                    if not np.array_equal(r.infer({"input": xs[i]})["logits"], want[i]):
                        errors.append(f"thread {i}: another query's logits")
            except Exception as exc:  # a busy InferRequest raises
                errors.append(f"thread {i}: {type(exc).__name__}")

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
