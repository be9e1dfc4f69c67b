"""``evaluate``: the batch-independence check on both SE modes, and datasets in another layout."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.errors import CheckpointError
from corese_edge.model.checkpoint import load_checkpoint
from corese_edge.train.evaluate import EvaluateConfig, evaluate

from tests.data.layout_fixtures import make_folder


@pytest.fixture(scope="module")
def batch_se_checkpoint(trained_run, tmp_path_factory) -> Path:
    """The trained run's backbones under the seed's batch-mean SE gate, so that a prediction
    depends on the other images in its batch.

    The short training run is near chance and its head can predict one class for every image, in
    which case no batch could ever change a prediction.  So the SE gate and the head are drawn
    afresh (fixed seed, wide enough to saturate the gate differently per image): the batch-mean
    gate then visibly moves the logits, and with them some of the 28 predictions."""
    import torch

    ckpt = load_checkpoint(trained_run.swa_path)
    ckpt.se_mode = "batch"
    gen = torch.Generator().manual_seed(0)
    for name, tensor in ckpt.state_dict.items():
        if name.startswith(("se_fusion.", "classifier.")) and tensor.is_floating_point():
            ckpt.state_dict[name] = torch.randn(tensor.shape, generator=gen) * (0.5 if tensor.dim() > 1 else 0.1)
    return ckpt.save(tmp_path_factory.mktemp("batch_se") / "batch_se.pt")


@pytest.mark.parametrize("mode", ["sample", "batch"])
def test_batch_independence_check_tells_the_se_modes_apart(mode, trained_run, batch_se_checkpoint, tmp_path):
    checkpoint = trained_run.swa_path if mode == "sample" else batch_se_checkpoint
    out = tmp_path / "eval.json"
    # The validation split (28 images) keeps this fast; batch 8 mixes classes in every batch.
    res = CliRunner().invoke(cli, ["evaluate", "--checkpoint", str(checkpoint), "--split", "val", "--batch-size", "8",
                                   "--workers", "0", "--out", str(out)])
    assert res.exit_code == 0, res.output
    bi = json.loads(out.read_text())["batch_independence"]
    assert bi["batch_sizes"] == [1, 8]
    if mode == "sample":
        assert bi["predictions_agree"] is True and bi["max_abs_logit_diff"] < 1e-4
        assert "predictions agree" in res.output
    else:
        assert bi["predictions_agree"] is False and bi["max_abs_logit_diff"] > 1e-2
        assert "predictions DIFFER" in res.output and "SE mode batch" in res.output


def _basic_twin(kaggle: Path, root: Path, per_split_class: dict[str, int]) -> tuple[Path, Path]:
    """Copy the first images of each class of a Kaggle-layout RAF-DB tree into a smaller Kaggle
    tree, and hard-link the same files into a RAF-DB basic tree; returns both roots."""
    small, basic = root / "kaggle", root / "basic-layout"
    aligned = basic / "basic" / "Image" / "aligned"
    aligned.mkdir(parents=True)
    lines = []
    for split, count in per_split_class.items():
        for label_dir in sorted((kaggle / "DATASET" / split).iterdir()):
            for src in sorted(label_dir.glob("*_aligned.jpg"))[:count]:
                dst = small / "DATASET" / split / label_dir.name / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                os.link(dst, aligned / src.name)
                # basic/EmoLabel lists "<split>_<n>.jpg <label id>"; the image is <stem>_aligned.jpg
                lines.append(f"{src.name.replace('_aligned', '')} {label_dir.name}")
    label_file = basic / "basic" / "EmoLabel" / "list_patition_label.txt"
    label_file.parent.mkdir(parents=True)
    label_file.write_text("\n".join(lines) + "\n")
    return small, basic


@pytest.mark.slow
def test_explicit_data_in_another_layout_is_detected(trained_run, synthetic_data, tmp_path):
    """Trained on RAF-DB's Kaggle layout, evaluated on the same images in the basic layout (issue 8 §4)."""
    assert load_checkpoint(trained_run.swa_path).dataset["layout"] == "rafdb-kaggle"
    kaggle, basic = _basic_twin(synthetic_data, tmp_path, {"train": 2, "test": 5})
    results = {}
    for name, root in (("rafdb-kaggle", kaggle), ("rafdb-basic", basic)):
        r = evaluate(EvaluateConfig(checkpoint=str(trained_run.swa_path), data=str(root), batch_size=35, workers=0,
                                    progress=False, out=str(tmp_path / f"eval-{name}.json")))
        results[name] = r
    assert results["rafdb-kaggle"]["num_images"] == results["rafdb-basic"]["num_images"] == 35
    assert results["rafdb-kaggle"]["accuracy"] == results["rafdb-basic"]["accuracy"]
    assert results["rafdb-kaggle"]["confusion_matrix"] == results["rafdb-basic"]["confusion_matrix"]
    assert results["rafdb-basic"]["class_names"] == list(load_checkpoint(trained_run.swa_path).class_names)


def test_explicit_data_must_still_have_the_checkpoints_classes(tiny_checkpoint, tmp_path):
    # as many classes as the checkpoint, other names: only the name check can refuse it
    other = make_folder(tmp_path / "pets", classes=("cat", "dog", "owl", "ant", "bee", "cow", "elk"), per_class=2)
    with pytest.raises(CheckpointError, match="trained on classes"):
        evaluate(EvaluateConfig(checkpoint=str(tiny_checkpoint), data=str(other), workers=0, progress=False,
                                out=str(tmp_path / "eval.json")))
    assert not (tmp_path / "eval.json").exists()
