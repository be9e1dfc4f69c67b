"""export/NAME.yaml profiles: every shipped profile is valid; the command line wins; unknown names fail."""
from __future__ import annotations

import pytest

from corese_edge.errors import UserError
from corese_edge.export.pipeline import make_export_config
from corese_edge.export.profiles import SOURCE_PROFILE_DIR, available_profiles, resolve_profile

SHIPPED = ("desktop-fp16", "desktop-int8", "jetson-orin-int8", "cpu-int8", "openvino-int8", "cpu-best")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_is_a_valid_config_that_pins_target_precision_batch_and_drift(name):
    import yaml

    path = SOURCE_PROFILE_DIR / f"{name}.yaml"
    raw = yaml.safe_load(path.read_text())
    for key in ("target", "int8", "max_drift"):
        assert key in raw, f"{path} should pin {key}"
    cfg = make_export_config(profile=name)
    assert cfg.target == raw["target"] and cfg.int8 == raw["int8"] and cfg.max_drift == raw["max_drift"]
    assert cfg.profile == name
    if cfg.target_spec.engines:
        assert {"min_batch", "opt_batch", "max_batch"} <= set(raw)


def test_profile_is_found_by_name_and_by_path():
    assert resolve_profile("desktop-int8") == available_profiles()["desktop-int8"]
    assert resolve_profile(SOURCE_PROFILE_DIR / "cpu-int8.yaml") == SOURCE_PROFILE_DIR / "cpu-int8.yaml"


def test_command_line_overrides_the_profile_and_the_profile_overrides_defaults():
    cfg = make_export_config(profile="jetson-orin-int8", max_drift=0.25, max_batch=None)
    assert cfg.max_drift == 0.25  # option given
    assert cfg.max_batch == 8  # profile (default would be 32)
    assert cfg.int8 is True


def test_unknown_profile_lists_the_available_ones():
    with pytest.raises(UserError) as err:
        make_export_config(profile="laptop-int4")
    message = str(err.value)
    assert "laptop-int4" in message
    for name in SHIPPED:
        assert name in message


def test_profile_with_an_unknown_key_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: tensorrt\nprecision: int8\n")
    with pytest.raises(UserError, match="unknown option 'precision'"):
        make_export_config(profile=str(bad))
