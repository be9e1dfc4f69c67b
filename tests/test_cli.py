"""The command line as a user meets it: help with examples everywhere, one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from corese_edge.cli import COMMANDS, cli


def test_top_level_help_lists_every_command_with_examples():
    res = CliRunner().invoke(cli, ["--help"])
    assert res.exit_code == 0
    assert "Examples:" in res.output
    for name in COMMANDS:
        assert name in res.output


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_shows_examples(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Examples:" in res.output
    assert f"corese-edge {name}" in res.output or "torchrun" in res.output


def test_help_does_not_import_torch():
    code = ("import sys\nfrom corese_edge.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_import_seed_cli_writes_a_loadable_checkpoint(tmp_path, tiny_checkpoint):
    from corese_edge.model import load_checkpoint

    # a seed-format file made from the tiny model's weights
    sd = load_checkpoint(tiny_checkpoint).state_dict
    seed = tmp_path / "swa_model.pth"
    torch.save({"epoch": 49, "model_state": {**{f"module.{k}": v for k, v in sd.items()}, "n_averaged": torch.tensor(12)}}, seed)
    out = tmp_path / "imported.pt"
    res = CliRunner().invoke(cli, ["import-seed", str(seed), "--out", str(out), "--num-classes", "7", "--img-size", "32"])
    assert res.exit_code == 0, res.output
    ck = load_checkpoint(out)
    assert ck.kind == "seed-import" and ck.epoch == 49 and ck.preprocessing.size == 32
    assert all(torch.equal(ck.state_dict[k], v) for k, v in sd.items())
    bad = CliRunner().invoke(cli, ["import-seed", str(tmp_path / "missing.pth"), "--out", str(out), "--num-classes", "7"])
    assert bad.exit_code == 2 and "missing.pth" in bad.output and "Traceback" not in bad.output


def test_missing_extra_is_one_line_naming_it(tmp_path):
    """A Python where torch cannot be imported (a stub package that raises) gets the extra's name."""
    blocker = tmp_path / "block"
    (blocker / "torch").mkdir(parents=True)
    (blocker / "torch" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    import os

    env = {**os.environ, "PYTHONPATH": str(blocker)}
    res = subprocess.run([sys.executable, "-m", "corese_edge", "train", "--data", str(tmp_path)],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == ["error: torch is not installed, and 'train' needs it: pip install 'corese-edge[train]'"]
