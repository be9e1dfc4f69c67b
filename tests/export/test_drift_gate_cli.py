"""The drift gate as a user meets it: ``corese-edge export --max-drift`` in a subprocess."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING) [\w.]+: ")


@pytest.fixture(scope="module")
def data_labelled_by_the_model(tiny_onnx, synthetic_data, tmp_path_factory) -> Path:
    """The synthetic set with every test image filed under the class the tiny model predicts.

    The untrained model is at chance on the real labels, so quantization could not lower its
    accuracy measurably.  Labelled by its own FP32 predictions, its reference accuracy is 100 %,
    and every prediction INT8 changes is a real accuracy drop.  Train images (calibration only)
    are hard-linked unchanged; no labels CSV, so the class folders are the labels.
    """
    from corese_edge.data.layouts import load_index
    from corese_edge.runtime import ExpressionClassifier

    root = tmp_path_factory.mktemp("labelled_by_model")
    index = load_index(synthetic_data)
    for s in index.split("train"):
        dst = root / "DATASET" / "train" / str(s.label + 1) / Path(s.path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(s.path, dst)
    test = [Path(s.path) for s in index.split("test")]
    with ExpressionClassifier.from_artifact(tiny_onnx) as clf:
        preds = clf.predict([str(p) for p in test])
    for path, pred in zip(test, preds):
        dst = root / "DATASET" / "test" / str(pred.index + 1) / path.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, dst)
    return root


def _flat_calibration_images(folder: Path) -> Path:
    """Calibration frames of one flat grey: the INT8 ranges then fit a constant input, and real
    images saturate them, so the INT8 model really loses accuracy (by tens of points)."""
    import cv2
    import numpy as np

    folder.mkdir()
    for i in range(4):
        cv2.imwrite(str(folder / f"flat_{i}.png"), np.full((32, 32, 3), 100 + i, np.uint8))
    return folder


@pytest.mark.slow
def test_export_exits_nonzero_with_one_line_and_keeps_the_files(tiny_checkpoint, data_labelled_by_the_model, tmp_path):
    limit = 5.0
    out = tmp_path / "export"
    res = subprocess.run(
        [sys.executable, "-m", "corese_edge", "export", "--checkpoint", str(tiny_checkpoint),
         "--data", str(data_labelled_by_the_model), "--int8", "--target", "tensorrt",
         "--calib-data", str(_flat_calibration_images(tmp_path / "calib")), "--calib-size", "4",
         "--no-engine", "--max-drift", str(limit), "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert (out / "drift_report.json").is_file(), res.stderr
    report = json.loads((out / "drift_report.json").read_text())
    # The setup is honest only if the measured drop really is over the limit.
    assert report["reference"]["accuracy"] > 0.9, report["reference"]
    assert report["failed"], report["artifacts"]
    for name in report["failed"]:
        assert report["artifacts"][name]["accuracy_drop_pp"] > limit
    assert report["passed"] is False

    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stdout + res.stderr
    # log records (INFO/WARNING lines of the progress log) may precede it; the error is one line
    lines = [ln for ln in res.stderr.strip().splitlines() if not LOG_LINE.match(ln)]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: drift gate failed: onnx-int8 dropped"), lines[0]
    assert f"--max-drift {limit:g} pp" in lines[0]
    for kept in ("model.onnx", "model.int8.onnx", "drift_report.json", "drift_report.md", "export.json"):
        assert (out / kept).is_file(), kept
    assert json.loads((out / "export.json").read_text())["drift"]["passed"] is False
