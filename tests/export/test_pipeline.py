"""run_export end to end on real files: outputs, export.json, the drift gate, engines, clear errors."""
from __future__ import annotations

import json
import shutil
import sys

import pytest

from corese_edge.errors import CheckpointError, DataError, UserError
from corese_edge.export import make_export_config, run_export
from corese_edge.export.drift import DriftGateFailed
from corese_edge.export.tensorrt import EngineUnavailable


def _cfg(tiny_checkpoint, synthetic_data, out, **options):
    base = dict(checkpoint=str(tiny_checkpoint), data=str(synthetic_data), out=str(out), progress=False,
                calib_size=8, max_drift=100.0)
    base.update(options)
    return make_export_config(**base)


def test_outputs_are_exactly_the_documented_files(tiny_export):
    names = sorted(p.name for p in tiny_export.out_dir.iterdir())
    assert names == sorted([
        "model.onnx", "model.fp16.onnx", "model.int8.onnx",
        "model.preprocess.onnx", "model.fp16.preprocess.onnx", "model.int8.preprocess.onnx",
        "drift_report.json", "drift_report.md", "drift.png", "export.json",
    ])  # no temp files or intermediate models left behind


def test_export_json_has_schema_resolved_config_and_versions(tiny_export, tiny_checkpoint, synthetic_data):
    record = json.loads(tiny_export.export_json.read_text())
    assert record["schema"] == "corese-edge/export/1"
    config = record["config"]
    assert config["checkpoint"] == str(tiny_checkpoint) and config["data"] == str(synthetic_data)
    assert config["int8"] is True and config["target"] == "tensorrt" and config["opset"] == 17
    for tool in ("corese-edge", "onnx", "onnxruntime", "torch", "numpy"):
        assert record["versions"][tool]
    assert record["calibration"]["flavour"] == "s8s8" and record["calibration"]["images"] == 16
    assert sum(record["calibration"]["per_class"].values()) == 16
    assert set(record["artifacts"]) == set(tiny_export.artifacts)


def test_drift_report_covers_every_onnx_artifact(tiny_export):
    report = json.loads((tiny_export.out_dir / "drift_report.json").read_text())
    assert set(report["artifacts"]) == {"onnx-fp32", "onnx-fp16", "onnx-int8"}
    assert report["reference"]["name"] == "pytorch-fp32" and report["reference"]["split"] == "test"
    assert report["reference"]["images"] == 84
    assert report["artifacts"]["onnx-fp32"]["max_abs_logit_diff"] <= 1e-4
    assert report["artifacts"]["onnx-int8"]["ort_graph_optimizations"] == "disabled"
    # --target tensorrt: the FP16 graph is judged as TensorRT computes it, not by ORT's CPU kernels
    assert report["artifacts"]["onnx-fp16"]["ort_graph_optimizations"] == "disabled"


def test_drift_gate_fails_below_the_measured_drop_and_keeps_the_files(tiny_checkpoint, synthetic_data, tmp_path):
    cfg = _cfg(tiny_checkpoint, synthetic_data, tmp_path, max_drift=-1.0, engine=False)  # FP32 drops 0 pp
    with pytest.raises(DriftGateFailed, match="onnx-fp32 dropped 0.00 pp"):
        run_export(cfg)
    report = json.loads((tmp_path / "drift_report.json").read_text())
    assert report["passed"] is False and report["failed"] == ["onnx-fp32"]
    assert report["artifacts"]["onnx-fp32"]["passed"] is False
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "export.json").is_file()
    assert json.loads((tmp_path / "export.json").read_text())["drift"]["passed"] is False


def test_no_tensorrt_skips_the_engine_with_the_command_and_engine_flag_demands_one(
        tiny_checkpoint, synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as on this machine; also where TensorRT exists
    result = run_export(_cfg(tiny_checkpoint, synthetic_data, tmp_path / "auto", fp16=True))
    (note,) = [n for n in result.notes if n.startswith("engine not built")]
    assert "TensorRT is not installed" in note
    assert f"corese-edge build-engine {tmp_path / 'auto' / 'model.fp16.onnx'} --out {tmp_path / 'auto' / 'model.fp16.plan'}" in note
    assert not list((tmp_path / "auto").glob("*.plan"))
    with pytest.raises(EngineUnavailable, match="--engine: TensorRT is not installed.*corese-edge build-engine"):
        run_export(_cfg(tiny_checkpoint, synthetic_data, tmp_path / "demand", engine=True))
    assert not (tmp_path / "demand" / "model.onnx").exists()  # refused before minutes of work


def test_missing_checkpoint_is_a_clear_error(synthetic_data, tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found: .*nope.pt"):
        run_export(make_export_config(checkpoint=str(tmp_path / "nope.pt"), data=str(synthetic_data), out=str(tmp_path)))


def test_no_checkpoint_and_no_runs_points_to_train(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="corese-edge train"):
        run_export(make_export_config())


def test_newest_run_is_the_default_checkpoint(tmp_path, tiny_checkpoint, monkeypatch):
    import os
    import time

    from corese_edge.export.pipeline import newest_checkpoint

    for i, name in enumerate(("old", "new")):
        run = tmp_path / "runs" / name
        run.mkdir(parents=True)
        shutil.copy(tiny_checkpoint, run / "swa_final.pt")
        os.utime(run / "swa_final.pt", (time.time() + i, time.time() + i))
    monkeypatch.chdir(tmp_path)
    assert newest_checkpoint().resolve() == (tmp_path / "runs" / "new" / "swa_final.pt").resolve()


def test_checkpoint_with_the_wrong_number_of_classes(synthetic_data, tmp_path):
    from corese_edge.model import CoResSE
    from corese_edge.model.checkpoint import Checkpoint
    from corese_edge.preprocessing import Preprocessing

    names = ["happy", "sad", "angry", "neutral", "surprised"]
    model = CoResSE("coresse-lite", len(names))
    ckpt = Checkpoint(None, "coresse-lite", len(names), "sample", names, Preprocessing(size=32),
                      model.state_dict(), kind="test")
    path = ckpt.save(tmp_path / "five.pt")
    with pytest.raises(CheckpointError, match="predicts 5 classes .* has 7"):
        run_export(make_export_config(checkpoint=str(path), data=str(synthetic_data), out=str(tmp_path / "o")))
    assert not (tmp_path / "o" / "model.onnx").exists()  # refused before any work


def test_checkpoint_without_a_dataset_asks_for_data(tiny_checkpoint, tmp_path):
    with pytest.raises(DataError, match="pass --data"):
        run_export(make_export_config(checkpoint=str(tiny_checkpoint), out=str(tmp_path)))


def test_unknown_profile(tiny_checkpoint):
    with pytest.raises(UserError, match="unknown export profile 'orin-nano-int4'; available profiles: .*cpu-int8"):
        make_export_config(profile="orin-nano-int4", checkpoint=str(tiny_checkpoint))


def test_calibration_data_folder_must_not_hold_test_images(tiny_checkpoint, synthetic_data, tmp_path):
    from corese_edge.data.layouts import load_index

    test_dir = load_index(synthetic_data).split("test")[0].path.parents[1]
    cfg = _cfg(tiny_checkpoint, synthetic_data, tmp_path, int8=True, calib_data=str(test_dir), engine=False)
    with pytest.raises(DataError, match="must never see the test split"):
        run_export(cfg)


@pytest.mark.slow
def test_auto_keep_searches_on_the_validation_split_and_records_what_it_kept(tiny_checkpoint, synthetic_data, tmp_path):
    """An unreachable limit (INT8 would have to beat FP32) forces the whole search: every quantizable
    layer is ranked, kept sets grow along the ranking, and the best set found is applied and reported.
    (The choice of the *fewest* layers is pinned by test_int8.test_search_keep_finds_the_fewest_layers.)"""
    import onnx

    from corese_edge.export.int8 import quantized_nodes

    cfg = make_export_config(checkpoint=str(tiny_checkpoint), data=str(synthetic_data), int8=True, target="tensorrt",
                             calib_size=8, auto_keep=True, max_drift=-0.01, val_split="val", engine=False,
                             progress=False, out=str(tmp_path))
    with pytest.raises(DriftGateFailed):
        run_export(cfg)
    record = json.loads((tmp_path / "export.json").read_text())
    search = record["auto_keep"]
    ranked = [r["node"] for r in search["ranking"]]
    conv_like = {"Conv", "Gemm", "MatMul"}
    assert len(ranked) == len(set(ranked)) > 20
    assert not search["reached_limit"]
    counts = [t["kept"] for t in search["trials"]]
    assert counts[:3] == [0, 1, 2] and counts[-1] == len(ranked)  # doubling up to every layer
    best = min(search["trials"], key=lambda t: (t["drop_pp"], t["kept"]))
    kept = search["kept"]
    assert len(kept) == best["kept"] and search["drop_pp_after"] == best["drop_pp"]
    assert kept == ranked[: len(kept)]
    model = onnx.load(str(tmp_path / "model.int8.onnx"))
    op_of = {n.name: n.op_type for n in model.graph.node}
    assert {op_of[n] for n in ranked} <= conv_like
    assert not set(kept) & set(quantized_nodes(model))
    assert set(ranked) - set(kept) <= set(quantized_nodes(model))
    report = json.loads((tmp_path / "drift_report.json").read_text())
    assert report["reference"]["split"] == "val"
    assert report["artifacts"]["onnx-int8"]["kept_fp"] == kept == record["kept_fp"]
    assert record["int8"]["keep_fp32_nodes"] == kept
    assert record["int8"].get("keep_fp32_reasons", {}) == {name: "--auto-keep" for name in kept}


def _ln_input_types(path):
    import onnx

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info}
    return {types.get(n.input[0]) for n in proto.graph.node if n.op_type == "LayerNormalization"}


@pytest.mark.slow
def test_stages_run_alone_on_one_state(tiny_checkpoint, synthetic_data, tmp_path):
    """fp32 then int8 then drift, without fp16, embed, engine or the final write."""
    from corese_edge.export.pipeline import prepare_export, stage_drift, stage_fp32, stage_int8

    state = prepare_export(_cfg(tiny_checkpoint, synthetic_data, tmp_path, int8=True, engine=False))
    with pytest.raises(RuntimeError, match="run stage_fp32 first"):
        stage_int8(state)
    stage_fp32(state)
    assert set(state.artifacts) == {"onnx-fp32"} and state.details["parity"]["max_abs_logit_diff"] <= 1e-4
    assert state.labels is not None and len(state.labels) == 84
    stage_int8(state)
    assert set(state.artifacts) == {"onnx-fp32", "onnx-int8"}
    assert state.details["int8"] == {"high_precision": "fp16", "keep_fp32_ops": [], "keep_fp32_nodes": [], "opset": 19}
    assert state.details["calibration"]["images"] == 8 and state.kept == ()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.onnx", "model.int8.onnx", state.work.name])
    state.close()
    assert not state.work.exists()
    stage_drift(state)
    assert set(state.report.artifacts) == {"onnx-fp32", "onnx-int8"}
    assert state.report.artifacts["onnx-int8"]["ort_graph_optimizations"] == "disabled"
    assert set(state.census) == {"onnx-fp32", "onnx-int8"}
    assert not (tmp_path / "drift_report.json").exists() and not (tmp_path / "export.json").exists()


@pytest.mark.slow
def test_int8_keeps_layernorm_in_fp32_only_when_the_selection_split_justifies_it(
        tiny_checkpoint, synthetic_data, tmp_path, monkeypatch):
    """The drops on the validation split carved from train decide; here they are given (the
    measurement itself runs for real in test_stages_run_alone_on_one_state and tiny_export)."""
    from corese_edge.export.pipeline import prepare_export, stage_fp32, stage_int8

    state = prepare_export(_cfg(tiny_checkpoint, synthetic_data, tmp_path, int8=True, engine=False, max_drift=1.0))
    stage_fp32(state)
    int8 = tmp_path / "model.int8.onnx"
    for drops, kept in [((3.0, 0.5), ["LayerNormalization"]),  # over the limit, and keeping LN helps
                        ((3.0, 4.0), []),  # over the limit, keeping LN does not help
                        ((0.5,), [])]:  # within the limit: not even tried
        measured, modes = iter(drops), []

        def drop(model, reference_arithmetic=False):
            modes.append(reference_arithmetic)
            return next(measured)

        monkeypatch.setattr(state, "selection_drop", drop)
        state.notes.clear()
        stage_int8(state)
        assert state.details["int8"]["keep_fp32_ops"] == kept
        reasons = state.details["int8"].get("keep_fp32_reasons", {})
        assert list(reasons) == kept and all("3.00 pp" in r and "0.50 pp" in r for r in reasons.values())
        assert modes == [True] * len(drops)  # every drop measured as TensorRT computes it
        assert _ln_input_types(int8) == ({1} if kept else {10})  # FLOAT vs FLOAT16
        assert bool(state.notes) == bool(kept)
    state.close()


def test_export_json_and_drift_report_carry_the_precision_census(tiny_export):
    record = json.loads(tiny_export.export_json.read_text())
    report = json.loads((tiny_export.out_dir / "drift_report.json").read_text())
    onnx_artifacts = {n for n, p in tiny_export.artifacts.items() if p.suffix == ".onnx"}
    assert set(record["census"]) == onnx_artifacts and len(onnx_artifacts) == 6
    int8 = record["census"]["onnx-int8"]
    assert int8["fp32_nodes"] == [] and int8["int8_flop_share"] > 0.95
    assert int8["precisions"]["fp16"]["nodes"] > 0 and int8["precisions"]["fp32"]["nodes"] == 0
    assert record["census"]["onnx-fp16"]["precisions"]["fp16"]["flop_share"] == 1.0
    assert record["census"]["onnx-fp32"]["precisions"]["fp32"]["flop_share"] == 1.0
    for name in ("onnx-fp32", "onnx-fp16", "onnx-int8"):
        assert report["artifacts"][name]["census"] == record["census"][name]
    assert record["int8"] == {"high_precision": "fp16", "keep_fp32_ops": [], "keep_fp32_nodes": [], "opset": 19}
    assert report["artifacts"]["onnx-int8"]["high_precision"] == "fp16"
    assert "| onnx-int8 |" in (tiny_export.out_dir / "drift_report.md").read_text()
