"""Bad input at the command line, as a user meets it (subprocesses): one line ``error: ...`` on
stderr, no traceback, exit status 2, for ``export``, ``evaluate`` and ``bench``."""
from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corese_edge", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def assert_one_line_error(res: subprocess.CompletedProcess, *fragments: str) -> str:
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory):
    """{"missing": path that does not exist, "junk": random bytes named .pt,
    "not-ours": a real torch.save file that is not a corese-edge checkpoint}."""
    import numpy as np
    import torch

    folder = tmp_path_factory.mktemp("bad_ckpt")
    junk = folder / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    not_ours = folder / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2, 3)}, not_ours)
    return {"missing": folder / "missing.pt", "junk": junk, "not-ours": not_ours}


CHECKPOINT_CASES = [
    ("missing", "checkpoint not found"),
    ("junk", "not a readable PyTorch checkpoint (not a torch.save file)"),
    ("not-ours", "is not a corese-edge checkpoint"),
]


@pytest.mark.parametrize("command", ["export", "evaluate"])
@pytest.mark.parametrize("case,message", CHECKPOINT_CASES, ids=[c for c, _ in CHECKPOINT_CASES])
def test_bad_checkpoint(command, case, message, bad_checkpoints, tmp_path):
    path = bad_checkpoints[case]
    extra = ["--no-engine", "--out", str(tmp_path / "export")] if command == "export" else ["--out", str(tmp_path / "e.json")]
    res = run_cli(command, "--checkpoint", str(path), *extra)
    assert_one_line_error(res, message, str(path))
    assert not (tmp_path / "export").exists() and not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("command,options,message", [
    ("export", ["--int8", "--calib-size", "0"], "--calib-size must be at least 1, got 0"),
    ("export", ["--min-batch", "8", "--opt-batch", "4"], "--min-batch <= --opt-batch <= --max-batch"),
    ("evaluate", ["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ("evaluate", ["--workers", "-1"], "--workers must be 0 or more, got -1"),
])
def test_bad_option_value(command, options, message, tiny_checkpoint, synthetic_data, tmp_path):
    """Values of the right type that the command must still refuse, before any work is done (with a
    good checkpoint and dataset, so that nothing else can stop the command first)."""
    out = ["--no-engine", "--out", str(tmp_path / "export")] if command == "export" else ["--out", str(tmp_path / "e.json")]
    res = run_cli(command, "--checkpoint", str(tiny_checkpoint), "--data", str(synthetic_data), *options, *out)
    assert_one_line_error(res, message)
    assert not (tmp_path / "export").exists() and not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("option,name,message", [
    ("--onnx", "model.bin", "--onnx takes a .onnx file"),
    ("--engine", "model.onnx", "--engine takes a .plan or .engine file"),
    ("--checkpoint", "model.txt", "--checkpoint takes a .pt or .pth file"),
])
def test_bench_refuses_an_unknown_suffix(option, name, message, tmp_path):
    model = tmp_path / name
    model.write_bytes(b"\0" * 64)
    res = run_cli("bench", option, str(model), "--iterations", "1")
    assert_one_line_error(res, message, name)
