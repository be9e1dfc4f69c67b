"""The capability table drives validation and the CLI choices."""
from __future__ import annotations

import click
import pytest

from corese_edge.errors import UserError
from corese_edge.export.pipeline import ExportConfig
from corese_edge.export.targets import ARTIFACTS, QUANTIZERS, TARGETS, engine_precisions, get_target, requested_precisions


@pytest.mark.parametrize("name", list(TARGETS))
def test_every_supported_precision_of_a_target_validates(name):
    target = TARGETS[name]
    cfg = ExportConfig(target=name, fp16="fp16" in target.precisions, int8="int8" in target.precisions, engine=False)
    assert cfg.target_spec is target
    for precision in requested_precisions(cfg.fp16, cfg.int8):
        assert f"onnx-{precision}" in ARTIFACTS


@pytest.mark.parametrize("name", [n for n, t in TARGETS.items() if not t.engines])
def test_target_without_engines_refuses_engine(name):
    with pytest.raises(UserError, match="builds no TensorRT engine"):
        ExportConfig(target=name, engine=True)


@pytest.mark.parametrize("name", list(TARGETS))
def test_quantizer_must_fit_the_target(name):
    for quantizer in QUANTIZERS:
        if quantizer in TARGETS[name].quantizers:
            assert ExportConfig(target=name, int8=True, quantizer=quantizer).quantizer == quantizer
        else:
            with pytest.raises(UserError, match="does not fit --target"):
                ExportConfig(target=name, int8=True, quantizer=quantizer)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"target": "gpu"}, "unknown target"),
        ({"keep_fp": ("x",)}, "add --int8"),
        ({"auto_keep": True}, "add --int8"),
        ({"int8": True, "auto_keep": True, "quantizer": "modelopt"}, "use --quantizer ort"),
        ({"int8": True, "quantizer": "modelopt", "calib_method": "percentile"}, "not percentile"),
        ({"min_batch": 8, "opt_batch": 4}, "min-batch"),
        ({"opset": 21}, "opset"),
        ({"calib_size": 0}, "calib-size"),
        ({"calib_method": "kl"}, "calib-method"),
        ({"val_split": "train"}, "val-split"),
    ],
)
def test_invalid_combinations_are_refused_not_corrected(options, message):
    with pytest.raises(UserError, match=message):
        ExportConfig(**options)


def test_engine_precisions_follow_the_requested_ones():
    assert engine_precisions(False, False) == ("fp32",)
    assert engine_precisions(True, False) == ("fp16",)
    assert engine_precisions(True, True) == ("fp16", "int8")
    with pytest.raises(UserError, match="choose one of"):
        get_target("jetson")


def test_cli_choices_come_from_the_table():
    from corese_edge.cli.export import export_command

    params = {p.name: p for p in export_command.params}
    assert isinstance(params["target"].type, click.Choice)
    assert list(params["target"].type.choices) == list(TARGETS)


def test_reference_arithmetic_is_for_the_reduced_precisions_of_tensorrt_only():
    trt, cpu = get_target("tensorrt"), get_target("cpu")
    assert trt.reference_arithmetic("fp16") and trt.reference_arithmetic("int8")
    assert not trt.reference_arithmetic("fp32")
    assert not any(cpu.reference_arithmetic(p) for p in ("fp32", "fp16", "int8"))
