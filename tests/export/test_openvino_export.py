"""OpenVINO IR export (corese_edge.export.openvino), with real OpenVINO and NNCF on tiny models.

Most tests use a hand-made FP32 ONNX (two 3x3 convolutions and a classifier on 8x8 inputs, with
corese-edge metadata), on which NNCF quantizes in about a second; the round trip of the real
architecture uses the session's 32 px coresse-lite ONNX.
"""
from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("nncf")

import onnx  # noqa: E402
import openvino as ov  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from corese_edge import __version__  # noqa: E402
from corese_edge.errors import MissingExtra, UserError  # noqa: E402
from corese_edge.export import openvino as ovx  # noqa: E402
from corese_edge.export.onnx_fp32 import read_metadata, set_metadata  # noqa: E402
from corese_edge.metadata import ArtifactMetadata, read_rt_info  # noqa: E402
from corese_edge.preprocessing import FaceTemplate, Preprocessing  # noqa: E402
from corese_edge.runtime.openvino import shared_core  # noqa: E402

SIZE = 8
# a template that is not the default, so the test sees it travel rather than being filled back in
TEMPLATE = FaceTemplate(right_eye=(0.3, 0.4), left_eye=(0.7, 0.4), mouth=(0.5, 0.8), source="learned", images=12)


def _meta() -> ArtifactMetadata:
    return ArtifactMetadata(class_names=("a", "b", "c"), preprocessing=Preprocessing(size=SIZE, face_template=TEMPLATE),
                            model="hand-made", checkpoint_sha256="0" * 64, corese_edge_version=__version__)


def _small_onnx(path: Path, seed: int = 0) -> Path:
    """input (batch, 3, 8, 8) -> Conv 3x3 -> Relu -> Conv 3x3 -> Relu -> GlobalAveragePool -> Gemm -> logits (batch, 3)."""
    rng = np.random.default_rng(seed)
    f = lambda *shape: numpy_helper.from_array(rng.normal(0, 0.5, shape).astype(np.float32))  # noqa: E731
    inits = [f(8, 3, 3, 3), f(8), f(8, 8, 3, 3), f(8), f(3, 8), f(3)]
    for init, name in zip(inits, ("w1", "b1", "w2", "b2", "wf", "bf")):
        init.name = name
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wf", "bf"], ["logits"], name="head", transB=1),
    ]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    # centre the classes on calibration-like inputs, so the answer depends on the input (not the bias)
    # and INT8 rounding can change it
    logits = _ort_logits(proto.SerializeToString(), np.concatenate(_calib(seed=seed + 100)))
    proto.graph.initializer[5].CopyFrom(numpy_helper.from_array((-logits.mean(0)).astype(np.float32), "bf"))
    set_metadata(proto, _meta())
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))
    return path


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory) -> Path:
    return _small_onnx(tmp_path_factory.mktemp("ov_small") / "model.onnx")


def _calib(scale: float = 1.0, batches: int = 4, seed: int = 1) -> list[np.ndarray]:
    """Batches of 4 images in [0, scale): noise times a per-image, per-channel gain, so images differ."""
    rng = np.random.default_rng(seed)
    return [(scale * rng.uniform(0, 1, (4, 3, SIZE, SIZE)) * rng.uniform(0, 1, (4, 3, 1, 1))).astype(np.float32)
            for _ in range(batches)]


@pytest.fixture(scope="module")
def small_int8(small_onnx, tmp_path_factory) -> Path:
    return ovx.quantize_ir(small_onnx, tmp_path_factory.mktemp("ov_small_int8") / "model.int8.xml", _calib(), progress=False)


def _ort_logits(onnx_path: Path | bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    model = onnx_path if isinstance(onnx_path, bytes) else os.fspath(onnx_path)
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def _ov_logits(xml: Path, x: np.ndarray, precision: str = "f32") -> np.ndarray:
    compiled = shared_core().compile_model(os.fspath(xml), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    return compiled(x)[compiled.outputs[0]]


def _input_range(xml: Path) -> float:
    """input_high of the FakeQuantize on the model input (what calibration measured there)."""
    model = shared_core().read_model(os.fspath(xml))
    for op in model.get_ordered_ops():
        if op.get_type_name() == "FakeQuantize" and op.input_value(0).get_node().get_type_name() == "Parameter":
            high = op.input_value(2).get_node()
            return float(np.max(np.abs(high.get_data())))
    raise AssertionError("no FakeQuantize on the model input")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------- float IR


@pytest.mark.slow
def test_float_ir_round_trip_of_the_real_model(tiny_onnx, tmp_path):
    xml = ovx.ir_from_onnx(tiny_onnx, tmp_path / "model.xml", build={"note": "test"})
    assert xml == tmp_path / "model.xml" and xml.is_file() and xml.with_suffix(".bin").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "model.xml"]  # no temporaries left
    model = shared_core().read_model(os.fspath(xml))
    meta, build = read_rt_info(model, os.fspath(xml))
    assert meta == read_metadata(tiny_onnx)
    assert build["source_onnx_sha256"] == _sha(tiny_onnx) and build["precision"] == "fp32"
    assert build["quantizer"] == "none" and build["openvino_version"] == ov.get_version() and build["note"] == "test"
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    x = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_ov_logits(xml, x), _ort_logits(tiny_onnx, x), rtol=1e-4, atol=1e-4)


def test_the_bin_is_moved_into_place_before_the_xml_and_the_files_get_the_umask_mode(small_onnx, tmp_path, monkeypatch):
    """One commit of corese_edge.atomic: the .xml (what readers open) lands last."""
    moved = []
    real_replace = os.replace

    def replace(src, dst):
        moved.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    old = os.umask(0o027)
    try:
        xml = ovx.ir_from_onnx(small_onnx, tmp_path / "m.xml")
    finally:
        os.umask(old)
    assert moved == ["m.bin", "m.xml"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.xml"]
    assert {oct(p.stat().st_mode & 0o777) for p in (xml, xml.with_suffix(".bin"))} == {oct(0o640)}
    assert shared_core().read_model(os.fspath(xml)).inputs[0].get_partial_shape()[0].is_dynamic


def test_float_ir_carries_metadata_dynamic_batch_and_fp32_weights(small_onnx, tmp_path):
    xml = ovx.ir_from_onnx(small_onnx, tmp_path / "model.xml")
    model = shared_core().read_model(os.fspath(xml))
    meta, build = read_rt_info(model, os.fspath(xml))
    assert meta == _meta() and meta.preprocessing.face_template == TEMPLATE
    assert build["source_onnx"] == "model.onnx" and build["source_onnx_sha256"] == _sha(small_onnx)
    weights = [op for op in model.get_ops() if op.get_type_name() == "Constant" and op.get_output_size() == 1
               and len(op.get_output_partial_shape(0)) == 4]
    assert weights and all(w.get_output_element_type(0) == ov.Type.f32 for w in weights)
    for batch in (1, 5):  # dynamic batch: any batch runs, and at f32 it is ONNX Runtime's arithmetic
        x = np.random.default_rng(batch).normal(size=(batch, 3, SIZE, SIZE)).astype(np.float32)
        np.testing.assert_allclose(_ov_logits(xml, x), _ort_logits(small_onnx, x), rtol=1e-5, atol=1e-5)


def test_device_float_precision_is_what_a_compiled_float_ir_runs_at(small_onnx, tmp_path):
    xml = ovx.ir_from_onnx(small_onnx, tmp_path / "model.xml")
    compiled = shared_core().compile_model(os.fspath(xml), "CPU")
    expected = {"bf16": "bf16", "f32": "fp32", "f16": "fp16"}[compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()]
    assert ovx.device_float_precision("CPU") == expected
    with pytest.raises(UserError, match="not available here; available: .*CPU"):
        ovx.device_float_precision("NPU.7")


@pytest.mark.parametrize("content, message", [
    (b"this is not protobuf", "not a readable ONNX file"),
    (None, "not a corese-edge artifact"),
])
def test_bad_onnx_is_one_line_and_writes_nothing(tmp_path, content, message):
    src = tmp_path / "in.onnx"
    if content is None:  # a valid ONNX without corese-edge metadata
        proto = onnx.load(os.fspath(_small_onnx(tmp_path / "plain.onnx")))
        del proto.metadata_props[:]
        onnx.save(proto, os.fspath(src))
    else:
        src.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message) as info:
        ovx.ir_from_onnx(src, out / "model.xml")
    assert "\n" not in str(info.value)
    assert not out.exists() or not list(out.iterdir())
    with pytest.raises(UserError, match="no such ONNX file"):
        ovx.ir_from_onnx(tmp_path / "missing.onnx", out / "model.xml")


@pytest.mark.slow
def test_a_failed_save_keeps_the_previous_ir_and_leaves_no_partial_files(small_onnx, tmp_path, monkeypatch):
    xml = ovx.ir_from_onnx(small_onnx, tmp_path / "model.xml")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real_save = ov.save_model

    def save_then_fail(model, path, compress_to_fp16=True):
        real_save(model, path, compress_to_fp16=compress_to_fp16)  # both files written ...
        Path(path).with_suffix(".bin").write_bytes(b"trunc")  # ... one cut short, then the failure
        raise RuntimeError("No space left on device")

    monkeypatch.setattr(ov, "save_model", save_then_fail)
    with pytest.raises(UserError, match="could not save the IR .*No space left"):
        ovx.ir_from_onnx(small_onnx, xml)
    with pytest.raises(UserError, match="could not save the IR"):
        ovx.quantize_ir(small_onnx, tmp_path / "model.int8.xml", _calib(), progress=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_failed_quantization_keeps_the_previous_int8_ir(small_onnx, small_int8, tmp_path):
    xml = tmp_path / "model.int8.xml"
    xml.write_bytes(small_int8.read_bytes())
    xml.with_suffix(".bin").write_bytes(small_int8.with_suffix(".bin").read_bytes())
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(UserError, match="no calibration images"):
        ovx.quantize_ir(small_onnx, xml, [], progress=False)
    bad = [np.zeros((4, 3, SIZE + 1, SIZE), np.float32)]  # a shape the model cannot take: NNCF fails
    with pytest.raises(UserError, match="NNCF could not quantize") as info:
        ovx.quantize_ir(small_onnx, xml, bad, progress=False)
    assert "\n" not in str(info.value)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ------------------------------------------------------------------------------- INT8 IR


def test_int8_ir_is_quantized_carries_metadata_and_stays_close_to_fp32(small_onnx, small_int8):
    model = shared_core().read_model(os.fspath(small_int8))
    assert ovx.quantized_layers(model) >= 3  # the input of both convolutions and of the head
    meta, build = read_rt_info(model, os.fspath(small_int8))
    assert meta == _meta()
    assert build["precision"] == "int8" and build["route"] == "nncf" and build["quantizer"].startswith("nncf ")
    assert build["calibration_images"] == "16" and build["source_onnx_sha256"] == _sha(small_onnx)
    assert build["nncf_activation_range"] == "minmax" and build["nncf_preset"] == "performance"
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    x = np.concatenate(_calib(seed=7))  # in the calibrated range, not the calibration images themselves
    ref, got = _ort_logits(small_onnx, x), _ov_logits(small_int8, x)
    spread = float(ref.max() - ref.min())
    assert np.abs(got - ref).mean() < 0.06 * spread  # about 0.04 measured on this 8x8 model
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.9
    assert not np.array_equal(got, ref)  # INT8 arithmetic really ran


def test_calibration_data_sets_the_ranges(small_onnx, small_int8, tmp_path, capfd):
    capfd.readouterr()
    wide = ovx.quantize_ir(small_onnx, tmp_path / "wide.xml", _calib(scale=10.0), progress=False)
    assert capfd.readouterr().out == ""  # no NNCF progress bars or INFO lines when progress is off
    assert _input_range(wide) == pytest.approx(10 * _input_range(small_int8), rel=0.05)
    # activation ranges are the min / max over all calibration images (NNCF_ACTIVATION_RANGE
    # "minmax"; NNCF's own default would be the mean of per-image maxima, about 0.72 here)
    assert _input_range(small_int8) == pytest.approx(float(np.max(_calib())), rel=0.02)


@pytest.mark.slow
def test_a_subset_is_spread_over_the_stream_and_a_generator_works(small_onnx, small_int8, tmp_path):
    # 8 small batches then 8 large ones: half of them, evenly spaced, reach about 10; the first half
    # (a prefix) would see only the small ones (below 1)
    stream = _calib(scale=1.0, batches=8) + _calib(scale=10.0, batches=8, seed=2)
    spread = ovx.quantize_ir(small_onnx, tmp_path / "spread.xml", stream, subset_size=32, progress=False)
    assert _input_range(spread) > 5.0
    assert read_rt_info(shared_core().read_model(os.fspath(spread)))[1]["calibration_images"] == "32"
    # a one-shot generator: NNCF makes several passes over the data, each must see the images
    once = ovx.quantize_ir(small_onnx, tmp_path / "once.xml", (b for b in _calib()), progress=False)
    assert _input_range(once) == pytest.approx(_input_range(small_int8), rel=1e-6)
    x = np.concatenate(_calib(seed=9))
    np.testing.assert_allclose(_ov_logits(once, x), _ov_logits(small_int8, x), rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_accuracy_control_restores_float_layers_until_within_the_limit(small_onnx, small_int8, tmp_path):
    # validation inputs wider than the calibration range: the input quantizer clips them, so plain
    # INT8 gets some wrong; labels are the float model's answers (float accuracy 100 %).  The first
    # width and seed where plain INT8 drops more than 0.5 pp (rounding differs between CPUs)
    for scale, seed in [(s, k) for s in (1.5, 1.7, 2.0, 1.3) for k in (3, 4, 5)]:
        x = scale * np.concatenate(_calib(batches=12, seed=seed))
        y = _ort_logits(small_onnx, x).argmax(1)
        if (_ov_logits(small_int8, x).argmax(1) == y).mean() < 0.995:
            break
    else:
        pytest.fail("no validation set on which plain INT8 drops more than 0.5 pp: the premise is gone")
    xml = ovx.quantize_ir(small_onnx, tmp_path / "ac.xml", _calib(), max_drop_pp=0.5, validation=(x, y), progress=False)
    model = shared_core().read_model(os.fspath(xml))
    assert read_rt_info(model)[1]["nncf_accuracy_control_max_drop_pp"] == "0.5"
    assert (_ov_logits(xml, x).argmax(1) == y).mean() >= 0.995
    assert 0 < ovx.quantized_layers(model) < ovx.quantized_layers(shared_core().read_model(os.fspath(small_int8)))
    with pytest.raises(UserError, match="needs both max_drop_pp and validation"):
        ovx.quantize_ir(small_onnx, tmp_path / "half.xml", _calib(), max_drop_pp=0.5, progress=False)


@pytest.mark.slow
def test_qdq_route_reads_our_qdq_onnx(small_onnx, tmp_path):
    from corese_edge.export import int8 as int8_stage

    pre = int8_stage.prepare_for_quantization(small_onnx, tmp_path / "pre.onnx")
    ranges = int8_stage.calibrate(pre, int8_stage.StreamingCalibrationReader(_calib()), tmp_path / "r.json", "minmax", "u8s8")
    qdq = int8_stage.quantize_int8(pre, tmp_path / "model.int8.onnx", ranges, "u8s8", metadata_from=small_onnx)
    xml = ovx.quantize_ir(small_onnx, tmp_path / "model.int8.xml", [], route="qdq", qdq_onnx_path=qdq, progress=False,
                          build={"source_onnx": "model.onnx", "target": "openvino"})
    model = shared_core().read_model(os.fspath(xml))
    assert ovx.quantized_layers(model) > 0
    meta, build = read_rt_info(model)
    assert meta == _meta() and build["route"] == "qdq" and build["target"] == "openvino"
    # the source facts name the file that was read and hashed, whatever the caller passed
    assert build["source_onnx"] == "model.int8.onnx" and build["source_onnx_sha256"] == _sha(qdq)
    x = np.concatenate(_calib(seed=5))
    np.testing.assert_allclose(_ov_logits(xml, x), _ort_logits(qdq, x), atol=0.05 * float(np.ptp(_ort_logits(qdq, x))))
    with pytest.raises(UserError, match="nothing quantized"):  # the FP32 ONNX is no Q/DQ graph
        ovx.quantize_ir(small_onnx, tmp_path / "x.xml", [], route="qdq", qdq_onnx_path=small_onnx)
    with pytest.raises(UserError, match="pass qdq_onnx_path"):
        ovx.quantize_ir(small_onnx, tmp_path / "x.xml", [], route="qdq")
    with pytest.raises(UserError, match="unknown OpenVINO INT8 route 'pot'"):
        ovx.quantize_ir(small_onnx, tmp_path / "x.xml", [], route="pot")
    assert not (tmp_path / "x.xml").exists()


# ------------------------------------------------------------------------------- missing packages


@pytest.mark.parametrize("missing", ["openvino", "nncf"])
def test_missing_package_is_one_line_naming_the_extra(small_onnx, tmp_path, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # import of a None entry raises ImportError
    reason = ovx.openvino_unavailable()
    assert reason is not None and "\n" not in reason
    assert reason.startswith(f"{missing} is not installed") and "pip install 'corese-edge[openvino]'" in reason
    with pytest.raises(MissingExtra, match=f"{missing} is not installed.*corese-edge\\[openvino\\]"):
        ovx.quantize_ir(small_onnx, tmp_path / "model.int8.xml", _calib(), progress=False)
    if missing == "openvino":
        with pytest.raises(MissingExtra):
            ovx.ir_from_onnx(small_onnx, tmp_path / "model.xml")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_nncf_through_the_module_is_quiet_and_keeps_nncfs_logger(small_onnx, tmp_path):
    # a fresh interpreter, so this module is what imports nncf (and, during quantization, torch)
    code = ("import sys, numpy as np; from corese_edge.export import openvino as ovx; "
            "assert ovx.openvino_unavailable() is None; "
            "calib = [np.random.default_rng(0).uniform(0, 1, (4, 3, 8, 8)).astype(np.float32)]; "
            "ovx.quantize_ir(sys.argv[1], sys.argv[2], calib, progress=False); "
            "import logging; log = logging.getLogger('nncf'); print(type(log).__name__, log.level)")
    done = subprocess.run([sys.executable, "-c", code, os.fspath(small_onnx), os.fspath(tmp_path / "q.xml")],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["NNCFLogger", str(logging.WARNING)]  # nncf's own class: it calls warning_once
    # torch's "No CUDA runtime is found" (logged when nncf imports torch.utils.cpp_extension) is
    # irrelevant to a CPU export
    assert "CUDA" not in done.stderr
