"""--target openvino and --target cpu-best through the export pipeline: real ONNX Runtime and real
OpenVINO on the tiny 32 px model (files, rt_info metadata, drift measured through OpenVINO, the
precision that really ran), the cpu-best choice as a pure function, and the skips without openvino."""
from __future__ import annotations

import json
from importlib import metadata

import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.errors import UserError
from corese_edge.export import cpu_best, make_export_config, run_export
from corese_edge.export.cpu_best import Candidate, choose_fastest
from corese_edge.export.drift import DriftGateFailed
from corese_edge.export.openvino import DEFAULT_ROUTE, device_float_precision, openvino_unavailable
from corese_edge.export.pipeline import OPENVINO_INT8_ROUTES, ExportConfig
from corese_edge.export.targets import ARTIFACTS, TARGETS

needs_openvino = pytest.mark.skipif(openvino_unavailable() is not None, reason=f"{openvino_unavailable()}")

MISSING = "openvino is not installed (OpenVINO IR export): pip install 'corese-edge[openvino]'  [No module named 'openvino']"


def _cfg(tiny_checkpoint, synthetic_data, out, **options):
    base = dict(checkpoint=str(tiny_checkpoint), data=str(synthetic_data), out=str(out), progress=False,
                calib_size=16, max_drift=100.0)
    base.update(options)
    return make_export_config(**base)


def _no_openvino(monkeypatch):
    """As on a machine without the extra: B1's probe is what every caller asks."""
    import corese_edge.export.openvino as ov_stage

    monkeypatch.setattr(ov_stage, "openvino_unavailable", lambda: MISSING)


@pytest.fixture(scope="session")
def ov_export(tiny_checkpoint, synthetic_data, tmp_path_factory):
    """``--target openvino --int8`` (NNCF route, the default) of the untrained 32 px checkpoint."""
    if openvino_unavailable():
        pytest.skip(openvino_unavailable())
    out = tmp_path_factory.mktemp("ov_export")
    lines: list[str] = []
    result = run_export(_cfg(tiny_checkpoint, synthetic_data, out, target="openvino", int8=True), echo=lines.append)
    return result, lines


# ----------------------------------------------------------------------------------- the table


def test_openvino_target_writes_irs_and_refuses_fp16_with_the_reason():
    ov = TARGETS["openvino"]
    assert ov.openvino and not ov.engines and ov.precisions == ("fp32", "int8")
    assert (ARTIFACTS["openvino-float"].filename, ARTIFACTS["openvino-int8"].filename) == ("model.xml", "model.int8.xml")
    assert {ARTIFACTS[n].backend for n in ("openvino-float", "openvino-int8")} == {"openvino"}
    with pytest.raises(UserError, match="does not support fp16.*best float precision"):
        ExportConfig(target="openvino", fp16=True)


def test_default_quantizer_per_target_and_the_openvino_default_is_the_stage_default_route():
    assert ExportConfig().quantizer == "ort" and ExportConfig(target="cpu").quantizer == "ort"
    assert ExportConfig(target="openvino", int8=True).quantizer == "nncf"
    assert OPENVINO_INT8_ROUTES[TARGETS["openvino"].quantizers[0]] == DEFAULT_ROUTE
    assert ExportConfig(target="openvino", int8=True, quantizer="ort").quantizer == "ort"


@pytest.mark.parametrize("options, message", [
    ({"target": "openvino", "int8": True, "calib_method": "entropy"}, "NNCF collects its own"),
    ({"target": "openvino", "int8": True, "keep_fp": ("/head/*",)}, "with --quantizer nncf use --auto-keep"),
    ({"target": "tensorrt", "int8": True, "quantizer": "nncf"}, "does not fit --target tensorrt"),
    ({"target": "cpu-best", "quantizer": "nncf"}, "does not fit --target cpu-best"),
    ({"target": "cpu-best", "bench_seconds": 0}, "--bench-seconds must be positive"),
])
def test_openvino_and_cpu_best_options_are_refused_not_corrected(options, message):
    with pytest.raises(UserError, match=message):
        ExportConfig(**options)


def test_cpu_best_always_makes_int8_candidates_and_nncf_may_auto_keep():
    assert ExportConfig(target="cpu-best").int8 is True
    assert ExportConfig(target="cpu").int8 is False
    assert ExportConfig(target="openvino", int8=True, auto_keep=True).auto_keep  # NNCF's accuracy control


@pytest.mark.parametrize("name, target", [("openvino-int8", "openvino"), ("cpu-best", "cpu-best")])
def test_shipped_openvino_profiles_are_valid(name, target):
    cfg = make_export_config(profile=name)
    assert cfg.target == target and cfg.int8 and cfg.engine is False


def test_describe_table_and_cli_help_show_the_new_targets():
    from corese_edge.cli import cli
    from corese_edge.export.targets import describe_table

    table = describe_table()
    assert any(line.startswith("openvino ") and "nncf,ort" in line for line in table.splitlines())
    assert any(line.startswith("cpu-best ") and "fastest" in line for line in table.splitlines())
    text = CliRunner().invoke(cli, ["export", "--help"]).output
    for s in ("--target openvino", "--target cpu-best", "--bench-seconds", "cpu-best   fp32,fp16,int8"):
        assert s in text


# ----------------------------------------------------------------------------------- cpu-best choice


def _cand(name, p50, drop=0.0, passed=True, backend="ort", precision="fp32", file=None):
    return Candidate(name, file or f"{name}.file", backend, precision, p50, drop, passed)


def test_the_fastest_passing_candidate_wins_and_the_line_names_it_with_its_ratio():
    cands = [_cand("onnx-fp32", 80.0, file="model.onnx"), _cand("onnx-int8", 70.0, 0.4, precision="int8"),
             _cand("openvino-float", 30.0, 0.1, backend="openvino", precision="bf16"),
             _cand("openvino-int8", 31.0, 0.29, backend="openvino", precision="int8", file="model.int8.xml")]
    choice = choose_fastest(cands)
    assert choice.winner.name == "openvino-float" and choice.speedup == pytest.approx(80 / 30)
    cands[3] = _cand("openvino-int8", 12.3, 0.29, backend="openvino", precision="int8", file="model.int8.xml")
    choice = choose_fastest(cands)
    assert choice.reason == ("fastest passing CPU model: model.int8.xml (OpenVINO int8) 12.3 ms p50 at batch 1, "
                             "6.5x model.onnx on ONNX Runtime; drop 0.29 pp")
    record = choice.to_dict()
    assert record["winner"] == "openvino-int8" and record["file"] == "model.int8.xml"
    assert record["p50_ms_by_candidate"] == {"onnx-fp32": 80.0, "onnx-int8": 70.0, "openvino-float": 30.0,
                                             "openvino-int8": 12.3}
    assert record["passed"] == [c.name for c in cands] and record["failed"] == []


def test_a_candidate_that_failed_the_gate_is_never_chosen_however_fast():
    cands = [_cand("onnx-fp32", 80.0), _cand("onnx-int8", 5.0, 3.0, passed=False),
             _cand("openvino-int8", 40.0, 0.2, backend="openvino", precision="int8")]
    choice = choose_fastest(cands)
    assert choice.winner.name == "openvino-int8"
    assert choice.to_dict()["failed"] == ["onnx-int8"] and "not chosen (failed the gate): onnx-int8" in choice.reason


def test_ties_keep_the_earlier_candidate_and_untimed_ones_are_not_chosen():
    choice = choose_fastest([_cand("onnx-fp32", 20.0), _cand("onnx-int8", 20.0), _cand("openvino-int8", None)])
    assert choice.winner.name == "onnx-fp32" and "the FP32 reference itself" in choice.reason


def test_no_passing_candidate_means_no_winner_and_a_reason():
    choice = choose_fastest([_cand("onnx-fp32", 20.0, 0.0, passed=False), _cand("onnx-int8", 10.0, 2.5, passed=False)])
    assert choice.winner is None and choice.speedup is None
    assert choice.reason == "no CPU candidate passed the drift gate: onnx-fp32 (0.00 pp), onnx-int8 (2.50 pp)"


def test_timing_interleaves_rounds_over_real_runners(tiny_onnx, tmp_path):
    """Real ONNX Runtime sessions; the order rotates between rounds and p50 is the median of the rounds."""
    from corese_edge.runtime.artifacts import open_runner

    calls: list[str] = []

    class Recording:
        def __init__(self, path):
            self.inner = open_runner(path)
            self.name = path.name

        def __getattr__(self, item):
            return getattr(self.inner, item)

        def timed_query(self, inputs=None):  # what the timing harness calls for each query
            if not calls or calls[-1] != self.name:
                calls.append(self.name)
            return self.inner.timed_query(inputs)

    a, b = tmp_path / "model.onnx", tmp_path / "copy.onnx"
    a.write_bytes(tiny_onnx.read_bytes())
    b.write_bytes(tiny_onnx.read_bytes())
    out = cpu_best.time_candidates({"a": a, "b": b}, seconds=0.15, rounds=3, open_runner=Recording)
    # rounds a,b | b,a | a,b: runs of one runner merge across the round boundaries (a fixed order
    # a,b | a,b | a,b would alternate six times)
    assert calls == ["model.onnx", "copy.onnx", "model.onnx", "copy.onnx"]
    for name in ("a", "b"):
        rounds = out[name]["round_p50_ms"]
        assert len(rounds) == 3 and out[name]["p50_ms"] == sorted(rounds)[1] > 0
        assert out[name]["backend"] == "ort" and out[name]["iterations"] >= 9


# ----------------------------------------------------------------------------------- --target openvino


@needs_openvino
@pytest.mark.slow  # the session's --target openvino --int8 export (ov_export)
def test_openvino_int8_export_writes_both_irs_and_no_intermediates(ov_export):
    result, _ = ov_export
    names = sorted(p.name for p in result.out_dir.iterdir())
    assert names == sorted(["model.onnx", "model.xml", "model.bin", "model.int8.xml", "model.int8.bin",
                            "drift_report.json", "drift_report.md", "drift.png", "export.json"])  # NNCF: no Q/DQ ONNX
    assert set(result.artifacts) == {"onnx-fp32", "openvino-float", "openvino-int8"}


@needs_openvino
@pytest.mark.slow  # the session's --target openvino --int8 export (ov_export)
def test_drift_report_runs_the_irs_through_openvino_and_records_what_ran(ov_export, tiny_checkpoint):
    from corese_edge.data.layouts import load_index
    from corese_edge.export.comparator import Comparator
    from corese_edge.runtime.openvino import OpenVinoRunner
    from corese_edge.runtime.torch_runner import TorchRunner
    from corese_edge.model.checkpoint import load_checkpoint

    result, _ = ov_export
    report = json.loads((result.out_dir / "drift_report.json").read_text())
    assert set(report["artifacts"]) == {"onnx-fp32", "openvino-float", "openvino-int8"}
    fl, q = report["artifacts"]["openvino-float"], report["artifacts"]["openvino-int8"]
    assert fl["backend"] == q["backend"] == "openvino"
    assert fl["precision"] == device_float_precision() and q["precision"] == "int8" and q["route"] == "nncf"
    if device_float_precision() != "fp32":  # this AMX machine: bf16, never reported as fp32
        assert fl["precision"] != "fp32" and fl["max_abs_logit_diff"] > 0
    assert report["artifacts"]["onnx-fp32"]["precision"] == "fp32"
    assert set(q["per_class_recall_drop_pp"]) == set(load_checkpoint(tiny_checkpoint).class_names)
    assert "census" not in fl and "census" not in q  # the census is about ONNX graphs
    md = (result.out_dir / "drift_report.md").read_text()
    assert "| openvino bf16 |" in md or device_float_precision() != "bf16"
    # the numbers are OpenVINO's, in its default configuration: the same run by hand against
    # PyTorch gives the reported accuracy and logit differences
    ckpt = load_checkpoint(tiny_checkpoint)
    root = json.loads(result.export_json.read_text())["dataset"]["root"]
    test = load_index(root).split("test")
    fns = {name: OpenVinoRunner(result.out_dir / name) for name in ("model.xml", "model.int8.xml")}
    fns["torch"] = TorchRunner(ckpt.build_model(se_mode="sample"))
    run = Comparator.run(fns, test, ckpt.preprocessing)
    labels, logits = run.labels, run.logits
    for name, entry in (("model.xml", fl), ("model.int8.xml", q)):
        fns[name].close()
        assert entry["accuracy"] == pytest.approx(float(np.mean(logits[name].argmax(1) == labels)))
        assert entry["mean_abs_logit_diff"] == pytest.approx(float(np.mean(np.abs(logits[name] - logits["torch"]))),
                                                             rel=1e-3, abs=1e-6)


@needs_openvino
@pytest.mark.slow  # the session's --target openvino --int8 export (ov_export)
def test_export_json_has_the_openvino_section_versions_and_ir_weights(ov_export):
    result, lines = ov_export
    record = json.loads(result.export_json.read_text())
    assert record["openvino"] == {"device": "CPU", "float_precision": device_float_precision(), "float_ir": "model.xml",
                                  "int8_route": "nncf", "int8_quantizer": "nncf", "int8_ir": "model.int8.xml"}
    assert record["versions"]["openvino"] == metadata.version("openvino")
    assert record["versions"]["nncf"] == metadata.version("nncf")
    assert record["calibration"]["quantizer"] == "nncf" and record["calibration"]["images"] == 16
    ir = record["artifacts"]["openvino-int8"]
    bin_bytes = (result.out_dir / "model.int8.bin").stat().st_size
    assert ir["weights"]["file"] == "model.int8.bin" and ir["weights"]["bytes"] == bin_bytes
    assert ir["bytes"] == bin_bytes + (result.out_dir / "model.int8.xml").stat().st_size
    assert set(record["census"]) == {"onnx-fp32"}
    assert any("openvino-int8" in line and "openvino int8" in line for line in lines)  # the closing table


@needs_openvino
@pytest.mark.slow  # the session's --target openvino --int8 export (ov_export)
def test_irs_carry_the_checkpoint_metadata_and_build_facts(ov_export, tiny_checkpoint):
    from corese_edge.model.checkpoint import load_checkpoint
    from corese_edge.runtime.openvino import OpenVinoRunner

    result, _ = ov_export
    ckpt = load_checkpoint(tiny_checkpoint)
    for name, precision in (("model.xml", "fp32"), ("model.int8.xml", "int8")):
        with OpenVinoRunner(result.out_dir / name) as runner:
            assert list(runner.metadata.class_names) == list(ckpt.class_names)
            assert runner.metadata.preprocessing.to_dict() == ckpt.preprocessing.to_dict()
            assert runner.build["target"] == "openvino" and runner.build["precision"] == precision
            assert runner.build["checkpoint"] == tiny_checkpoint.name and runner.build["source_onnx"] == "model.onnx"


@needs_openvino
@pytest.mark.slow
def test_quantizer_ort_makes_the_int8_ir_from_the_qdq_onnx(tiny_checkpoint, synthetic_data, tmp_path):
    result = run_export(_cfg(tiny_checkpoint, synthetic_data, tmp_path, target="openvino", int8=True, quantizer="ort"))
    assert set(result.artifacts) == {"onnx-fp32", "onnx-int8", "openvino-float", "openvino-int8"}
    record = json.loads(result.export_json.read_text())
    assert record["openvino"]["int8_route"] == "qdq" and record["openvino"]["int8_source"] == "model.int8.onnx"
    assert record["int8"]["high_precision"] == "fp32" and record["calibration"]["flavour"] == "u8s8"
    report = json.loads((tmp_path / "drift_report.json").read_text())
    assert report["artifacts"]["openvino-int8"]["route"] == "qdq"
    assert report["artifacts"]["openvino-int8"]["precision"] == "int8"
    assert report["artifacts"]["onnx-int8"]["backend"] == "onnxruntime"


def test_target_openvino_without_the_extra_is_one_line_before_any_file(tiny_checkpoint, synthetic_data, tmp_path,
                                                                      monkeypatch):
    from corese_edge.cli import cli

    _no_openvino(monkeypatch)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["export", "--checkpoint", str(tiny_checkpoint), "--data", str(synthetic_data),
                                   "--target", "openvino", "--int8", "--out", str(out), "--no-progress"])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == f"error: --target openvino: {MISSING}"
    assert not out.exists()


# ----------------------------------------------------------------------------------- --target cpu-best


@needs_openvino
@pytest.mark.slow
def test_cpu_best_end_to_end_names_the_fastest_passing_candidate(tiny_checkpoint, synthetic_data, tmp_path):
    from corese_edge.cli import cli

    res = CliRunner().invoke(cli, ["export", "--checkpoint", str(tiny_checkpoint), "--data", str(synthetic_data),
                                   "--target", "cpu-best", "--calib-size", "16", "--max-drift", "100",
                                   "--bench-seconds", "0.3", "--out", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "export.json").read_text())
    best = record["cpu_best"]
    p50 = best["p50_ms_by_candidate"]
    assert set(p50) == {"onnx-fp32", "onnx-int8", "openvino-float", "openvino-int8"} and all(v > 0 for v in p50.values())
    assert best["winner"] == min(best["passed"], key=p50.get) and (tmp_path / best["file"]).is_file()
    assert best["speedup_vs_onnx_fp32"] == pytest.approx(p50["onnx-fp32"] / p50[best["winner"]])
    assert best["timing"]["batch"] == 1 and best["timing"]["seconds_per_candidate"] == 0.3
    assert best["reason"] in res.output.splitlines()
    assert res.output.splitlines()[-1].startswith(f"fastest passing CPU model: {best['file']} (")
    report = json.loads((tmp_path / "drift_report.json").read_text())
    assert {c["name"]: c["precision"] for c in best["candidates"]} == {
        n: report["artifacts"][n]["precision"] for n in p50}
    assert record["config"]["int8"] is True and record["target"]["chooses_fastest"] is True


def _cpu_best_state(tiny_checkpoint, synthetic_data, out, **options):
    from corese_edge.export.pipeline import prepare_export, stage_drift, stage_fp32, stage_int8, stage_openvino

    state = prepare_export(_cfg(tiny_checkpoint, synthetic_data, out, target="cpu-best", **options))
    stage_fp32(state)
    stage_int8(state)
    stage_openvino(state)
    state.close()
    stage_drift(state)
    return state


@pytest.mark.slow
def test_without_openvino_cpu_best_skips_its_candidates_and_a_failed_one_is_never_chosen(
        tiny_checkpoint, synthetic_data, tmp_path, monkeypatch):
    from corese_edge.export.pipeline import stage_cpu_best, stage_write

    _no_openvino(monkeypatch)
    state = _cpu_best_state(tiny_checkpoint, synthetic_data, tmp_path, max_drift=1.0)
    assert state.notes == [f"OpenVINO candidates skipped: {MISSING}"]
    assert state.details["openvino"] == {"skipped": MISSING} and not list(tmp_path.glob("*.xml"))
    assert set(state.report.artifacts) == {"onnx-fp32", "onnx-int8"}
    # the INT8 ONNX measured as wrong on every image: the real gate fails it
    wrong = np.eye(7, dtype=np.float32)[(state.labels + 1) % 7]
    state.report.add("onnx-int8", wrong, file="model.int8.onnx", backend="onnxruntime", precision="int8")
    assert not state.report.artifacts["onnx-int8"]["passed"]
    timed = []

    def timer(paths, seconds):  # the INT8 ONNX is by far the fastest
        timed.append((sorted(paths), seconds))
        return {n: {"p50_ms": 1.0 if n == "onnx-int8" else 50.0} for n in paths}

    stage_cpu_best(state, timer=timer)
    assert timed == [(["onnx-fp32", "onnx-int8"], 1.5)]
    assert state.cpu_best.winner.name == "onnx-fp32"
    assert any(n.startswith("cpu-best: onnx-int8 dropped") for n in state.notes)
    lines: list[str] = []
    result = stage_write(state, lines.append)
    assert result.passed and not result.drift.passed  # the export passes; the report still marks onnx-int8
    record = json.loads(result.export_json.read_text())
    assert record["cpu_best"]["winner"] == "onnx-fp32" and record["cpu_best"]["failed"] == ["onnx-int8"]
    assert lines[-1] == state.cpu_best.reason and "the FP32 reference itself" in lines[-1]


@pytest.mark.slow
def test_cpu_best_fails_its_gate_only_when_no_candidate_passes(tiny_checkpoint, synthetic_data, tmp_path, monkeypatch):
    _no_openvino(monkeypatch)
    monkeypatch.setattr(cpu_best, "time_candidates", lambda paths, seconds: {n: {"p50_ms": 10.0} for n in paths})
    with pytest.raises(DriftGateFailed, match="--target cpu-best: no CPU candidate passed the drift gate: onnx-fp32"):
        # -100 pp: no candidate can pass. At -1 pp the untrained model's INT8 passed on an AVX2-only EPYC,
        # where it happened to score 1.19 pp above the FP32 reference.
        run_export(_cfg(tiny_checkpoint, synthetic_data, tmp_path, target="cpu-best", max_drift=-100.0))
    record = json.loads((tmp_path / "export.json").read_text())
    assert record["cpu_best"]["winner"] is None and record["drift"]["passed"] is False
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.int8.onnx").is_file()  # files kept
