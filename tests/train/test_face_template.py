"""The face template of a training run: learned at the start, carried by every checkpoint and the
report, kept on --resume, and the default (with the reason) when the face model is missing or
detection is turned off.  The real YuNet detector on the synthetic set (it finds the cartoon faces)."""
from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest
import yaml
from click.testing import CliRunner

from corese_edge.model import load_checkpoint
from corese_edge.preprocessing import DEFAULT_FACE_TEMPLATE, FaceTemplate
from corese_edge.train import TrainConfig, train
from tests.conftest import TRAINED_SIZE

pytestmark = pytest.mark.slow

#: few images: the sample size only changes how long detection takes
SAMPLE = 24


def _cfg(data, out, **kw) -> TrainConfig:
    options = dict(data=str(data), model="coresse-test", img_size=32, epochs=1, batch_size=8, lr=1e-3,
                   warmup_epochs=0, pretrained="none", workers=0, seed=0, out=str(out), progress=False,
                   face_template_images=SAMPLE)
    return TrainConfig(**{**options, **kw})


def _template_logs(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "corese_edge.train.trainer" and "face template" in r.getMessage()]


class Interrupt(Exception):
    pass


def test_a_run_carries_its_learned_template_everywhere(trained_run):
    """The shared training run (synthetic set, default sample of 300): learned, in every
    checkpoint, with the statistics in the checkpoints and the report."""
    stats = trained_run.report["face_template"]
    assert stats["source"] == "learned" and stats["reason"] is None and stats["size"] == TRAINED_SIZE
    assert stats["found"] >= stats["images"] // 2 and stats["images"] == min(stats["sample"], stats["available"])
    template = FaceTemplate.from_dict(stats["template"])
    assert template.source == "learned" and template.images == stats["found"] and template != DEFAULT_FACE_TEMPLATE
    for path in (trained_run.swa_path, trained_run.best_path, trained_run.last_path):
        ckpt = load_checkpoint(path)
        assert ckpt.preprocessing.face_template == template and ckpt.dataset["face_template"] == stats, path
    assert json.loads(trained_run.report_path.read_text())["face_template"] == stats


def test_run_learns_the_template_and_resume_keeps_it(small_faces, tmp_path, caplog):
    """Learned at the start (one log line), resumed after an interruption with the face model gone:
    the run's template is kept, not recomputed (recomputing would fall back to the default)."""
    caplog.set_level(logging.INFO)
    out = tmp_path / "run"
    cfg = _cfg(small_faces, out, epochs=2)

    def stop_before_second_checkpoint(epoch, model):
        if epoch == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train(cfg, on_epoch_end=stop_before_second_checkpoint)
    first = load_checkpoint(out / "checkpoints" / "last.pt")
    template, stats = first.preprocessing.face_template, first.dataset["face_template"]
    assert template.source == "learned" and stats["source"] == "learned" and stats["reason"] is None
    assert stats["images"] == SAMPLE and stats["found"] == template.images >= SAMPLE // 2
    assert stats["template"] == template.to_dict() and stats["size"] == 32
    [line] = _template_logs(caplog)
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(f"face template learned from {template.images} of {SAMPLE} images: right eye (")
    assert yaml.safe_load((out / "config.yaml").read_text())["face_template_images"] == SAMPLE

    caplog.clear()
    result = train(replace(cfg, resume=True, face_model=str(tmp_path / "missing.onnx")))
    assert not _template_logs(caplog)
    for name in ("swa_final.pt", "checkpoints/best.pt", "checkpoints/last.pt"):
        ckpt = load_checkpoint(out / name)
        assert ckpt.preprocessing.face_template == template, name
        assert ckpt.dataset["face_template"] == stats, name
    assert json.loads(result.report_path.read_text())["face_template"] == stats


def test_run_without_the_face_model_finishes_with_the_default(small_faces, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    missing = tmp_path / "nowhere" / "yunet.onnx"
    result = train(_cfg(small_faces, tmp_path / "run", face_model=str(missing)))
    swa = load_checkpoint(result.swa_path)
    assert swa.preprocessing.face_template == DEFAULT_FACE_TEMPLATE
    stats = json.loads(result.report_path.read_text())["face_template"]
    assert stats["source"] == "default" and stats["reason"].startswith("no face model (face model not found")
    assert str(missing) in stats["reason"] and swa.dataset["face_template"] == stats
    [line] = _template_logs(caplog)
    assert line.levelno == logging.WARNING and "\n" not in line.getMessage()
    assert line.getMessage().startswith("face template: the default because no face model")


def test_zero_images_turns_detection_off(small_faces, tmp_path):
    from corese_edge.train.data import prepare_splits
    from corese_edge.train.trainer import Trainer

    trainer = Trainer(_cfg(small_faces, tmp_path / "run", face_template_images=0))
    trainer._learn_face_template(prepare_splits(str(small_faces)))
    assert trainer.prep.face_template == DEFAULT_FACE_TEMPLATE
    assert trainer.face_template_stats["reason"] == "face_template_images is 0 (face detection turned off)"
    # and with images the same trainer learns one (the synthetic faces are found)
    trainer = Trainer(_cfg(small_faces, tmp_path / "run"))
    trainer._learn_face_template(prepare_splits(str(small_faces)))
    assert isinstance(trainer.prep.face_template, FaceTemplate) and trainer.prep.face_template.source == "learned"


def test_cli_options_reach_the_config(tmp_path):
    from corese_edge.cli import cli

    res = CliRunner().invoke(cli, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r"),
                                   "--face-template-images", "-1"])
    assert res.exit_code == 2 and "--face-template-images must be >= 0" in res.output, res.output
    res = CliRunner().invoke(cli, ["train", "--help"])
    assert "--face-model" in res.output and "--face-template-images" in res.output
