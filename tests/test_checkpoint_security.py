"""No code runs from a checkpoint: every command that reads one refuses a pickle carrying objects.

The payload is the classic one: an object whose ``__reduce__`` tells the unpickler to call
``exec`` with a script, here one that writes a marker file. ``torch.load(weights_only=False)``
would run it while loading (pickle's documented behaviour: "the unpickler will call the callable
returned by __reduce__"); safe loading must refuse the file first, with one line and exit status 2.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from corese_edge.errors import CheckpointError
from corese_edge.model.checkpoint import load_checkpoint, read_state_dict
from corese_edge.model.seed import import_seed


class WritesMarker:
    """Unpickling this calls exec(...), which creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


@pytest.fixture
def poisoned(tiny_checkpoint, tmp_path):
    """(corese-edge checkpoint, seed-notebook checkpoint, marker): both files are otherwise genuine."""
    marker = tmp_path / "code-ran.txt"
    raw = torch.load(tiny_checkpoint, weights_only=True)
    raw["metrics"] = {"note": WritesMarker(marker)}
    ckpt = tmp_path / "poisoned.pt"
    torch.save(raw, ckpt)
    seed = tmp_path / "poisoned_seed.pth"
    torch.save({"epoch": 3, "model_state": raw["state_dict"], "optimizer_state": WritesMarker(marker)}, seed)
    return ckpt, seed, marker


def test_the_payload_runs_when_loaded_unsafely(poisoned):
    """The fixture is a real attack: unsafe loading does run it (so the tests below can fail)."""
    ckpt, _, marker = poisoned
    torch.load(ckpt, weights_only=False)
    assert marker.read_text() == "code ran"


def test_library_loaders_refuse_it(poisoned, tmp_path):
    ckpt, seed, marker = poisoned
    for load in (load_checkpoint, read_state_dict):  # train --init-from/--resume, --pretrained PATH
        with pytest.raises(CheckpointError, match="pickled Python objects .*exec.*refused"):
            load(ckpt)
    with pytest.raises(CheckpointError, match="refused"):
        import_seed(seed, tmp_path / "out.pt", num_classes=7)
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corese_edge", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["evaluate", "export", "import-seed", "predict"])
def test_every_command_refuses_it_in_one_line(command, poisoned, tmp_path):
    import cv2

    ckpt, seed, marker = poisoned
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.full((48, 48, 3), 128, np.uint8))
    args = {
        "evaluate": ["evaluate", "--checkpoint", str(ckpt), "--workers", "0"],
        "export": ["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "export"), "--no-progress"],
        "import-seed": ["import-seed", str(seed), "--out", str(tmp_path / "imported.pt"), "--num-classes", "7"],
        "predict": ["predict", str(image), "--model", str(ckpt)],
    }[command]
    res = _run(*args)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    assert "refused" in lines[0] and "Traceback" not in res.stderr
    assert not marker.exists()
    assert not (tmp_path / "imported.pt").exists() and not (tmp_path / "export").exists()


@pytest.mark.slow
def test_the_seed_notebooks_own_files_still_import(tmp_path):
    """Both seed formats (per-epoch with optimizer state, and the AveragedModel file) go through the
    same safe loader and import; the final SWA file through the command line."""
    from torch.optim.swa_utils import AveragedModel

    from tests.model.test_seed_import import SeedModel

    torch.manual_seed(0)
    model = SeedModel(7)
    per_epoch = tmp_path / "epoch_12.pth"
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()  # a real optimizer state (exp_avg, step counts), as the notebook saved it
    torch.save({"epoch": 12, "model_state": model.state_dict(), "optimizer_state": opt.state_dict()}, per_epoch)
    swa = AveragedModel(model)
    swa.update_parameters(model)
    final = tmp_path / "swa_model_final.pth"
    torch.save({"epoch": 49, "model_state": swa.state_dict()}, final)

    assert import_seed(per_epoch, tmp_path / "a.pt", num_classes=7).epoch == 12
    res = _run("import-seed", str(final), "--out", str(tmp_path / "b.pt"), "--num-classes", "7")
    assert res.returncode == 0, res.stderr[-2000:]
    for out in ("a.pt", "b.pt"):
        ckpt = load_checkpoint(tmp_path / out)
        assert ckpt.kind == "seed-import" and ckpt.variant == "coresse-lite"
        torch.testing.assert_close(ckpt.state_dict["classifier.3.weight"], model.state_dict()["classifier.3.weight"])
