"""The trainer end to end on the synthetic set: outputs, report, evaluate, CLI == library."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.model import load_checkpoint
from corese_edge.train.config import TrainConfig
from corese_edge.train.trainer import lr_factor
from tests.conftest import TRAINED_EPOCHS, TRAINED_MODEL, TRAINED_SIZE, TRAINED_SWA_MODELS

pytestmark = pytest.mark.slow


def _check_report_part(part, n_images, n_classes):
    cm = np.asarray(part["confusion_matrix"])
    assert cm.shape == (n_classes, n_classes) and cm.sum() == n_images
    assert part["accuracy"] == pytest.approx(np.trace(cm) / n_images)
    recalls = [part["per_class"][c]["recall"] for c in part["class_names"]]
    assert part["mean_class_accuracy"] == pytest.approx(np.mean(recalls))
    assert sum(part["per_class"][c]["support"] for c in part["class_names"]) == n_images
    for key in ("accuracy", "mean_class_accuracy", "macro_f1"):
        assert 0.0 <= part[key] <= 1.0


def test_run_folder_holds_every_artifact(trained_run):
    out = trained_run.out_dir
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/last.pt", "checkpoints/best.pt", "swa_final.pt",
                 "report.json", "confusion_matrix.png", "curves.png"):
        assert (out / name).is_file(), name
    for png in ("confusion_matrix.png", "curves.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, TRAINED_EPOCHS + 1))
    assert all(r["schema"] == "corese-edge/metrics/1" for r in rows)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["model"] == TRAINED_MODEL and cfg["dataset"] == "rafdb-kaggle" and cfg["epochs"] == TRAINED_EPOCHS


def test_trained_run_discriminates(trained_run):
    """The shared run is a working classifier (chance on 7 classes is 14 %), so the tests built on it
    see real predictions."""
    r = json.loads((trained_run.out_dir / "report.json").read_text())
    assert r["test"]["accuracy"] >= 0.75, r["test"]["accuracy"]


def test_report_describes_swa_and_best_models(trained_run, synthetic_data):
    r = json.loads((trained_run.out_dir / "report.json").read_text())
    assert r["schema"] == "corese-edge/report/1"
    # swa_start 0.75 of 30 epochs -> averaging from the end of epoch int(22.5) = 22 (0-based), i.e. 8 models
    assert r["swa_models"] == TRAINED_SWA_MODELS == 8
    n_test, n_val = r["dataset"]["test"], r["dataset"]["val"]
    assert n_test == 7 * 12 and n_val > 0 and r["dataset"]["train"] + n_val == 7 * 40
    for part, n in ((r["test"], n_test), (r["val"], n_val), (r["best"]["test"], n_test), (r["best"]["val"], n_val)):
        _check_report_part(part, n, 7)
    swa = load_checkpoint(trained_run.swa_path)
    assert swa.kind == "swa" and swa.metrics["test"]["accuracy"] == r["test"]["accuracy"]
    assert swa.preprocessing.size == TRAINED_SIZE and swa.class_names[3] == "Happiness"


def test_evaluate_writes_beside_checkpoint_and_checks_batch_independence(trained_run):
    from corese_edge.train.evaluate import EvaluateConfig, evaluate

    before = (trained_run.out_dir / "report.json").read_bytes()
    r = evaluate(EvaluateConfig(checkpoint=str(trained_run.swa_path), batch_size=16, workers=0, progress=False))
    assert r["path"].endswith("eval-test.json")
    assert (trained_run.out_dir / "eval-test.json").is_file()
    assert (trained_run.out_dir / "report.json").read_bytes() == before
    assert r["batch_independence"]["predictions_agree"] is True
    assert r["batch_independence"]["max_abs_logit_diff"] < 1e-4
    report = json.loads(before)
    assert r["accuracy"] == pytest.approx(report["test"]["accuracy"])


def test_batch_mode_depends_on_the_batch(trained_run, synthetic_data):
    from corese_edge.data.dataset import FERDataset
    from corese_edge.data.layouts import load_index
    from corese_edge.data.transforms import eval_transform
    from corese_edge.train.evaluate import predict_logits

    ckpt = load_checkpoint(trained_run.swa_path)
    ds = FERDataset(load_index(synthetic_data).split("test")[:32], eval_transform(ckpt.preprocessing))
    sample_model, batch_model = ckpt.build_model("sample"), ckpt.build_model("batch")
    s1, _ = predict_logits(sample_model, ds, 1)
    s16, _ = predict_logits(sample_model, ds, 16)
    b1, _ = predict_logits(batch_model, ds, 1)
    b16, _ = predict_logits(batch_model, ds, 16)
    assert np.abs(s1 - s16).max() < 1e-4
    assert np.abs(b1 - s1).max() < 1e-4  # the same function at batch 1
    assert np.abs(b16 - b1).max() > 1e-3  # ... but not at batch 16


def test_evaluate_cli_and_library_agree(trained_run, tmp_path):
    out = tmp_path / "cli-eval.json"
    res = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(trained_run.swa_path), "--batch-size", "8",
                                   "--workers", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "agree" in res.output
    from corese_edge.train.evaluate import EvaluateConfig, evaluate

    lib = evaluate(EvaluateConfig(checkpoint=str(trained_run.swa_path), batch_size=8, workers=0, progress=False,
                                  out=str(tmp_path / "lib-eval.json")))
    cli_r = json.loads(out.read_text())
    assert cli_r["confusion_matrix"] == lib["confusion_matrix"]


def test_existing_run_is_never_overwritten(trained_run):
    res = CliRunner().invoke(cli, ["train", "--data", "x", "--out", str(trained_run.out_dir), "--pretrained", "none"])
    assert res.exit_code == 2
    assert "--resume" in res.output and "Traceback" not in res.output


def test_warmup_starts_above_zero_and_cosine_ends_at_floor():
    assert lr_factor(0, 100, 10, 0.01) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, 0.01) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, 0.01) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.01) == pytest.approx(0.01)
    assert TrainConfig(epochs=2, warmup_epochs=3).effective_warmup_epochs == 1
    assert TrainConfig(epochs=1, warmup_epochs=3).effective_warmup_epochs == 0


def test_config_rejects_odd_batches_and_yaml_overrides(tmp_path):
    from corese_edge.config import build_config
    from corese_edge.errors import UserError

    with pytest.raises(UserError, match="even"):
        build_config(TrainConfig, batch_size=31)
    y = tmp_path / "t.yaml"
    y.write_text("epochs: 7\nimg-size: 96\n")
    cfg = build_config(TrainConfig, y, epochs=9)
    assert cfg.epochs == 9 and cfg.img_size == 96
    y.write_text("epochz: 7\n")
    with pytest.raises(UserError, match="epochz"):
        build_config(TrainConfig, y)
