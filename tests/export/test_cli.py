"""The click commands are thin: the CLI and the library give the same artifacts."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from corese_edge.cli.export import build_engine_command, export_command
from corese_edge.errors import UserError
from corese_edge.model.checkpoint import file_sha256


@pytest.mark.slow
def test_cli_and_library_give_the_same_artifacts(tiny_checkpoint, synthetic_data, tmp_path, monkeypatch):
    from corese_edge.data import calibration
    from corese_edge.data.layouts import load_index
    from corese_edge.export import make_export_config, run_export

    seen: list = []
    original = calibration.CalibrationBatches.__init__

    def spy(self, paths, *args, **kwargs):
        seen.extend(paths)
        original(self, paths, *args, **kwargs)

    monkeypatch.setattr(calibration.CalibrationBatches, "__init__", spy)
    args = ["--checkpoint", str(tiny_checkpoint), "--data", str(synthetic_data), "--int8", "--target", "cpu",
            "--calib-size", "8", "--max-drift", "100", "--no-progress", "--out", str(tmp_path / "cli")]
    result = CliRunner().invoke(export_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "onnx-int8" in result.output and "accuracy" in result.output  # the closing table

    run_export(make_export_config(checkpoint=str(tiny_checkpoint), data=str(synthetic_data), int8=True,
                                  target="cpu", calib_size=8, max_drift=100.0, progress=False,
                                  out=str(tmp_path / "lib")))
    for name in ("model.onnx", "model.int8.onnx"):
        assert file_sha256(tmp_path / "cli" / name) == file_sha256(tmp_path / "lib" / name), name
    cli_report = json.loads((tmp_path / "cli" / "drift_report.json").read_text())
    lib_report = json.loads((tmp_path / "lib" / "drift_report.json").read_text())
    assert cli_report["artifacts"] == lib_report["artifacts"]
    cli_cfg = json.loads((tmp_path / "cli" / "export.json").read_text())["config"]
    lib_cfg = json.loads((tmp_path / "lib" / "export.json").read_text())["config"]
    assert {k: v for k, v in cli_cfg.items() if k != "out"} == {k: v for k, v in lib_cfg.items() if k != "out"}

    # calibration never touched a test image (both runs, 8 images each)
    test_paths = {s.path.resolve() for s in load_index(synthetic_data).split("test")}
    assert len(seen) == 16 and not {p.resolve() for p in seen} & test_paths


def test_cli_errors_are_user_errors_for_the_group_to_print(tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(export_command, ["--profile", "nope", "--checkpoint", str(tiny_checkpoint)])
    assert result.exit_code != 0 and isinstance(result.exception, UserError)
    assert "available profiles" in str(result.exception)
    result = CliRunner().invoke(export_command, ["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)])
    assert isinstance(result.exception, UserError) and "checkpoint not found" in str(result.exception)
    result = CliRunner().invoke(build_engine_command, [str(tmp_path / "missing.onnx")])
    assert isinstance(result.exception, UserError)


@pytest.mark.parametrize("command", [export_command, build_engine_command])
def test_help_shows_examples(command):
    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and f"corese-edge {command.name}" in result.output
