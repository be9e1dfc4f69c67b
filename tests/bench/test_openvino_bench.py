"""OpenVINO in the benchmarks: ``bench --model`` dispatching on the suffix, the bench JSON of an IR,
``bench --compare`` over an export folder with IRs, the suite's OpenVINO rows, and the machine's
CPU flags."""
from __future__ import annotations

import json
import re
import shutil
import sys

import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from tests.runtime.test_openvino_runner import _fake_quantize_ir, ir_from, write_tiny_onnx
from corese_edge.runtime.openvino import shared_core

ov = pytest.importorskip("openvino")

FAST = ["--iterations", "3", "--warmup-ms", "0"]


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("ovbench")
    onnx_path = write_tiny_onnx(d / "model.onnx")
    return onnx_path, ir_from(onnx_path, d / "model.xml")


def _bench_json(args, tmp_path, name="b.json"):
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["bench", *args, *FAST, "--json", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_bench_model_xml_writes_the_openvino_json(tiny_pair, tmp_path):
    onnx_path, xml = tiny_pair
    doc, output = _bench_json(["--model", str(xml), "--batch", "1,2", "--threads", "1", "--inference-precision", "f32"], tmp_path)
    ort_doc, _ = _bench_json(["--onnx", str(onnx_path), "--batch", "1,2", "--threads", "1"], tmp_path, "ort.json")
    assert doc["schema"] == ort_doc["schema"] == "corese-edge/bench/1"
    assert set(doc) == set(ort_doc) and set(doc["settings"]) == set(ort_doc["settings"])
    assert [r["batch"] for r in doc["results"]] == [1, 2]
    for r, o in zip(doc["results"], ort_doc["results"]):
        assert r["backend"] == "openvino" and r["precision"] == "fp32" and o["backend"] == "ort"
        assert set(r) - {"execution"} == set(o) - {"providers"}  # same shape, backend facts aside
        assert r["execution"]["inference_precision"] == "f32" and r["execution"]["threads"] == 1
    assert doc["settings"]["threads"] == 1
    assert doc["device"]["versions"]["openvino"] and "cpu_isa" in doc["device"]["host"]
    assert "openvino: device CPU, inference precision f32" in output and "machine:" in output
    assert re.search(r"cpu flags: AVX2 (yes|no), AVX-512F (yes|no), ", output) or not doc["device"]["host"]["cpu_isa"]


def test_bench_model_xml_reports_the_precision_that_ran(tmp_path):
    xml = _fake_quantize_ir(tmp_path / "model.int8.xml")
    doc, _ = _bench_json(["--model", str(xml)], tmp_path)
    assert doc["results"][0]["backend"] == "openvino" and doc["results"][0]["precision"] == "int8"


def test_bench_model_dispatches_on_the_suffix(tiny_pair, tmp_path):
    onnx_path, _ = tiny_pair
    doc, _ = _bench_json(["--model", str(onnx_path)], tmp_path)
    assert doc["results"][0]["backend"] == "ort" and doc["results"][0]["providers"]


@pytest.mark.parametrize("args, message", [
    (lambda d, x: ["--model", str(d / "m.tflite")], r"^error: .*m\.tflite: unknown model format '\.tflite'; expected one of .*\.xml"),
    (lambda d, x: ["--onnx", str(x)], r"^error: --onnx takes a \.onnx file, got .*model\.xml"),
    (lambda d, x: ["--engine", str(x)], r"^error: --engine takes a \.plan or \.engine file"),
    (lambda d, x: ["--model", str(x), "--onnx", str(x)], r"^error: give exactly one of --model, --engine"),
    (lambda d, x: ["--model", str(x), "--device", "0"], r"^error: an OpenVINO model takes --device CPU, GPU.*not a GPU index"),
    (lambda d, x: ["--model", str(x), "--device", "NPU.3"], r"^error: OpenVINO device 'NPU\.3' is not available here; available: "),
    (lambda d, x: ["--model", str(x), "--streams", "many"], r"^error: --streams takes an integer >= 1 or auto"),
])
def test_bench_bad_arguments_are_one_line(tiny_pair, tmp_path, args, message):
    _, xml = tiny_pair
    result = CliRunner().invoke(cli, ["bench", *args(tmp_path, xml), *FAST])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and re.search(message, result.output), result.output


def test_compare_includes_the_irs(tiny_pair, tmp_path):
    onnx_path, _ = tiny_pair
    d = tmp_path / "export"
    d.mkdir()
    shutil.copy(onnx_path, d / "model.onnx")
    # a wide conv, so that the .bin (about 0.14 MB) shows in the size column's two decimals
    ir_from(write_tiny_onnx(tmp_path / "wide.onnx", width=1024), d / "model.xml")
    _fake_quantize_ir(d / "model.int8.xml")
    (d / "notes.xml").write_text("<notes/>")  # an XML without a .bin is not a model
    drift = {"schema": "corese-edge/drift/1", "reference": "onnx-fp32", "artifacts": {
        "onnx-fp32": {"accuracy": 0.8, "accuracy_drop_pp": 0.0},
        "openvino-float": {"accuracy": 0.79, "accuracy_drop_pp": 0.1, "precision": "bf16"}}}
    (d / "drift_report.json").write_text(json.dumps(drift))
    result = CliRunner().invoke(cli, ["bench", "--compare", str(d), *FAST, "--inference-precision", "f32"])
    assert result.exit_code == 0, result.output
    doc = json.loads((d / "bench_compare.json").read_text())
    rows = {r["name"]: r for r in doc["rows"]}
    assert set(rows) == {"onnx-fp32", "openvino-float", "openvino-int8"}
    flt, q = rows["openvino-float"], rows["openvino-int8"]
    assert flt["status"] == "ok" and flt["format"] == "openvino" and flt["precision"] == "fp32"  # f32 was forced
    assert flt["accuracy_drop_pp"] == 0.1 and flt["execution"]["inference_precision"] == "f32"
    assert flt["size_mb"] == round(((d / "model.xml").stat().st_size + (d / "model.bin").stat().st_size) / 1e6, 2)
    assert flt["size_mb"] >= 0.1  # the weights are counted, not just the .xml
    assert q["status"] == "ok" and q["precision"] == "int8" and q["p50_ms_batch1"] > 0
    assert "openvino-float" in result.output and "openvino-int8" in result.output
    assert "cpu flags: AVX2" in result.output or not doc["device"]["host"]["cpu_isa"]


@pytest.fixture
def tiny_suite_models(monkeypatch, tmp_path):
    """The suite's model preparation (a torch export of coresse-lite) replaced by the tiny hand-made
    ONNX and ONNX Runtime's U8S8 quantization of it: the OpenVINO rows are what is under test."""
    import numpy as np

    from corese_edge.bench import suite

    def prepare(variant, work, img_size, calib_images, precisions):
        work.mkdir(parents=True, exist_ok=True)
        paths = {"fp32": write_tiny_onnx(work / "model.onnx")}
        calib = [np.random.default_rng(i).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32) for i in range(2)]
        paths["int8"] = suite.quantize_u8s8(paths["fp32"], work / "model.int8.onnx", calib)
        return paths

    monkeypatch.setattr(suite, "prepare_models", prepare)
    return suite


def test_suite_has_openvino_rows(tmp_path, tiny_suite_models):
    suite = tiny_suite_models
    cfg = suite.SuiteConfig(models=("coresse-lite",), backends=("openvino",), precisions=("fp32", "fp16", "int8"),
                            batches=(1,), warmup_ms=0, duration_s=0.0, min_iterations=2, img_size=32,
                            calib_images=2, results_dir=str(tmp_path / "results"), markdown=str(tmp_path / "R.md"), threads=1)
    run = suite.run_suite(cfg, progress=lambda m: None)
    ov_rows = {(r["artifact"], r["precision"]) for r in run["results"] if r["backend"] == "openvino"}
    default = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[shared_core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()]
    assert ov_rows == {("model.xml", default), ("model.onnx", default), ("model.int8.onnx", "int8")}
    not_run = {(r["backend"], r["precision"]) for r in run["not_run"]}
    assert ("openvino", "fp16") in not_run and ("openvino", "fp32") not in not_run
    text = (tmp_path / "R.md").read_text()
    assert f"| coresse-lite | openvino | {default} | 1 |" in text and "| model.xml |" in text
    assert "| coresse-lite | openvino | fp16 | - | not run: OpenVINO picks the float precision per device" in text
    assert re.search(r"CPU flags: AVX2 (yes|no), AVX-512F (yes|no), .*AMX BF16 (yes|no)\.", text)


def test_suite_without_openvino_says_why(tmp_path, monkeypatch, tiny_suite_models):
    suite = tiny_suite_models
    monkeypatch.setitem(sys.modules, "openvino", None)
    cfg = suite.SuiteConfig(models=("coresse-lite",), backends=("openvino",), precisions=("fp32",), batches=(1,),
                            warmup_ms=0, duration_s=0.0, min_iterations=2, img_size=32,
                            results_dir=str(tmp_path / "results"), markdown=str(tmp_path / "R.md"))
    run = suite.run_suite(cfg, progress=lambda m: None)
    assert run["results"] == []
    [row] = run["not_run"]
    assert row["backend"] == "openvino" and "pip install 'corese-edge[openvino]'" in row["reason"]


CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile amx_int8
processor\t: 1
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni amx_tile amx_int8
"""


def test_cpu_isa_booleans(tmp_path):
    from corese_edge.bench.machine import machine_info
    from corese_edge.machine import CPU_ISA, cpu_isa, format_isa

    info = tmp_path / "cpuinfo"
    info.write_text(CPUINFO)
    isa = cpu_isa(info)
    assert list(isa) == list(CPU_ISA)
    assert {k for k, v in isa.items() if v} == {"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"}
    assert "AMX INT8 yes" in format_isa(isa) and "AMX BF16 no" in format_isa(isa) and "AVX-VNNI no" in format_isa(isa)
    assert cpu_isa(tmp_path / "absent") == {} and format_isa({}) == "unknown"  # unknown, not "no"
    host = machine_info()["host"]
    if sys.platform.startswith("linux"):
        assert set(host["cpu_isa"]) == set(CPU_ISA)


def test_suite_int8_is_the_cpu_targets_flavour(tmp_path):
    """The suite's ORT INT8 row must be the artifact `--target cpu` writes: only the flavour's op
    types (Conv, MatMul, Gemm) run as DQ -> op -> Q; ORT's defaults would also wrap the pooling."""
    import numpy as np
    import onnx

    from corese_edge.bench import suite
    from corese_edge.export.int8 import get_flavour

    fp32 = write_tiny_onnx(tmp_path / "model.onnx")
    calib = [np.random.default_rng(i).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32) for i in range(2)]
    q = onnx.load(str(suite.quantize_u8s8(fp32, tmp_path / "model.int8.onnx", calib)))
    dq_out = {o for n in q.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    q_in = {n.input[0] for n in q.graph.node if n.op_type == "QuantizeLinear"}
    int8_ops = {n.op_type for n in q.graph.node if dq_out & set(n.input) and q_in & set(n.output)}
    assert "Conv" in int8_ops and int8_ops <= set(get_flavour("u8s8").op_types), int8_ops
    assert {p.key for p in q.metadata_props} >= {"class_names", "preprocessing"}
