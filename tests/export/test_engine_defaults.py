"""The engine build's defaults are stated once, as EngineConfig's field defaults: build_engine's
signature, ExportConfig, and the click options (and --help) of build-engine and export follow them."""
from __future__ import annotations

import dataclasses
import inspect

from click.testing import CliRunner

from corese_edge.cli.export import build_engine_command, export_command
from corese_edge.export.config import ExportConfig
from corese_edge.export.tensorrt import EngineConfig, build_engine, engine_defaults

DEFAULTS = {f.name: f.default for f in dataclasses.fields(EngineConfig) if f.name != "onnx"}


def _click_defaults(command, *args: str) -> dict:
    """The values the command's options take when left out (click resolves them)."""
    return command.make_context(command.name, list(args)).params


def test_engine_defaults_are_engine_configs_fields():
    assert engine_defaults() == DEFAULTS
    assert DEFAULTS["min_batch"] <= DEFAULTS["opt_batch"] <= DEFAULTS["max_batch"]


def test_build_engine_takes_its_defaults_from_engine_config():
    params = inspect.signature(build_engine).parameters
    assert {name: params[name].default for name in DEFAULTS} == DEFAULTS


def test_build_engine_cli_defaults_and_help_are_engine_configs():
    assert {k: v for k, v in _click_defaults(build_engine_command, "m.onnx").items() if k in DEFAULTS} == DEFAULTS
    assert set(DEFAULTS) <= set(_click_defaults(build_engine_command, "m.onnx"))
    text = " ".join(CliRunner().invoke(build_engine_command, ["--help"], terminal_width=200).output.split("Options:", 1)[1].split())
    for option in ("min_batch", "opt_batch", "max_batch", "workspace_gb", "hardware_compat"):
        flag = "--" + option.replace("_", "-")
        shown = text.split(flag, 1)[1].split(" --", 1)[0]
        assert f"[default: {DEFAULTS[option]}]" in shown, (flag, shown)


def test_export_cli_help_and_export_config_state_engine_configs_defaults():
    """export leaves the options None (a profile may set them); ExportConfig's defaults and the help are EngineConfig's."""
    config = {f.name: f.default for f in dataclasses.fields(ExportConfig)}
    for option in ("min_batch", "opt_batch", "max_batch", "workspace_gb"):
        assert config[option] == DEFAULTS[option], option
        assert _click_defaults(export_command)[option] is None
    text = " ".join(CliRunner().invoke(export_command, ["--help"], terminal_width=200).output.split("Options:", 1)[1].split())
    for option in ("min_batch", "opt_batch", "max_batch", "workspace_gb"):
        flag = "--" + option.replace("_", "-")
        shown = text.split(flag, 1)[1].split(" --", 1)[0]
        assert f"[default: {DEFAULTS[option]:g}]" in shown, (flag, shown)
