"""Bad input to `corese-edge train`: one clear line naming the file, no traceback, nothing lost."""
from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from corese_edge.cli import cli
from corese_edge.errors import DataError
from corese_edge.train.data import prepare_splits


@pytest.fixture()
def damaged_copy(synthetic_data, tmp_path):
    root = tmp_path / "faces"
    shutil.copytree(synthetic_data, root)
    victims = sorted((root / "DATASET" / "train" / "4").glob("*.jpg"))[:2]
    victims[0].write_bytes(victims[0].read_bytes()[:200])  # truncated JPEG
    victims[1].write_text("not an image")
    return root, victims


def test_corrupt_image_stops_training_with_one_line_naming_it(damaged_copy, tmp_path):
    root, victims = damaged_copy
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, ["train", "--data", str(root), "--model", "coresse-lite", "--img-size", "32",
                                   "--pretrained", "none", "--out", str(out), "--no-progress"])
    assert res.exit_code == 2
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert victims[0].name in lines[0] or victims[1].name in lines[0]
    assert "--skip-bad-images" in lines[0] and "1 more" in lines[0]
    assert "Traceback" not in res.output


def test_skip_bad_images_drops_and_counts_them(damaged_copy):
    root, victims = damaged_copy
    splits = prepare_splits(str(root), skip_bad_images=True)
    assert splits.skipped == 2
    kept = {s.path.name for s in splits.train + splits.val + splits.test}
    assert not kept & {v.name for v in victims}
    assert len(splits.train) + len(splits.val) == 7 * 40 - 2


def test_missing_dataset_and_forced_wrong_layout(tmp_path, synthetic_data):
    res = CliRunner().invoke(cli, ["train", "--data", str(tmp_path / "nowhere"), "--pretrained", "none"])
    assert res.exit_code == 2 and "nowhere" in res.output and "Traceback" not in res.output
    with pytest.raises(DataError):
        prepare_splits(str(synthetic_data), layout="affectnet-official")


def test_validation_split_is_stratified_and_disjoint_from_test(synthetic_data):
    s = prepare_splits(str(synthetic_data), val_fraction=0.25, seed=3)
    val_counts = [sum(1 for x in s.val if x.label == c) for c in range(7)]
    assert val_counts == [10] * 7
    assert not {x.path for x in s.val} & {x.path for x in s.train}
    assert not {x.path for x in s.val} & {x.path for x in s.test}
    assert prepare_splits(str(synthetic_data), val_fraction=0.25, seed=3).val == s.val
