from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from corese_edge.data import detect_layout, load_index
from corese_edge.images import read_rgb
from corese_edge.data.layouts import RAFDB_CLASSES
from corese_edge.data.synthetic import MARKER, SCHEMA, generate, render_face
from corese_edge.errors import UserError

SMALL = dict(train_per_class=3, test_per_class=2, size=32)


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_render_face_shape_and_reproducibility() -> None:
    for label in range(7):
        a = render_face(label, np.random.default_rng([5, label]), size=48)
        b = render_face(label, np.random.default_rng([5, label]), size=48)
        assert a.shape == (48, 48, 3) and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert a.std() > 10
    c = render_face(0, np.random.default_rng(6), size=48)
    assert not np.array_equal(c, render_face(0, np.random.default_rng([5, 0]), size=48))
    with pytest.raises(ValueError):
        render_face(7, np.random.default_rng(0))


def test_classes_differ_more_than_nuisance() -> None:
    # Same rng stream -> same nuisance (colours, pose); only the expression recipe differs.
    faces = [render_face(label, np.random.default_rng(123), size=64).astype(float)
             for label in range(7)]
    for i in range(7):
        for j in range(i + 1, 7):
            assert np.abs(faces[i] - faces[j]).mean() > 1.0, (i, j)


def test_generate_layout_counts_and_csv(tmp_path: Path) -> None:
    root = generate(tmp_path / "syn", seed=0, **SMALL)
    assert root == tmp_path / "syn"
    assert detect_layout(root) == "rafdb-kaggle"
    index = load_index(root)  # also cross-checks the CSVs against the folders
    assert index.class_names == RAFDB_CLASSES
    assert index.class_counts("train") == [3] * 7
    assert index.class_counts("test") == [2] * 7
    img = read_rgb(index.split("train")[0].path)
    assert img.shape == (32, 32, 3)
    for split, per in (("train", 3), ("test", 2)):
        with open(root / f"{split}_labels.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == 7 * per
        for row in rows:
            assert (root / "DATASET" / split / row["label"] / row["image"]).is_file()
    marker = json.loads((root / MARKER).read_text())
    assert marker["schema"] == SCHEMA and marker["seed"] == 0 and marker["size"] == 32
    assert not (root / ".partial").exists()


def test_generate_is_byte_reproducible_and_seed_dependent(tmp_path: Path) -> None:
    a = _tree_bytes(generate(tmp_path / "a", seed=7, **SMALL))
    b = _tree_bytes(generate(tmp_path / "b", seed=7, **SMALL))
    c = _tree_bytes(generate(tmp_path / "c", seed=8, **SMALL))
    assert a == b
    assert a.keys() == c.keys()
    images = [k for k in a if k.endswith(".jpg")]
    assert len(images) == 7 * 5
    assert all(a[k] != c[k] for k in images)


def test_generate_reuses_a_complete_set_and_regenerates_on_change(tmp_path: Path) -> None:
    root = generate(tmp_path / "syn", seed=0, **SMALL)
    some = sorted((root / "DATASET" / "train" / "1").iterdir())[0]
    mtime = some.stat().st_mtime_ns
    some_bytes = some.read_bytes()
    generate(root, seed=0, **SMALL)
    assert some.stat().st_mtime_ns == mtime  # reused, not rewritten

    generate(root, seed=1, **SMALL)  # other parameters: replaced
    assert json.loads((root / MARKER).read_text())["seed"] == 1
    assert some.read_bytes() != some_bytes
    assert load_index(root).class_counts("test") == [2] * 7


def test_interrupted_set_is_not_reused(tmp_path: Path) -> None:
    root = generate(tmp_path / "syn", seed=0, **SMALL)
    victim = sorted((root / "DATASET" / "test" / "5").iterdir())[0]
    victim.unlink()  # an incomplete set, even with the marker, is regenerated
    (root / ".partial").mkdir()  # leftover from a killed run
    generate(root, seed=0, **SMALL)
    assert victim.is_file()
    assert not (root / ".partial").exists()
    assert load_index(root).class_counts("test") == [2] * 7


def test_generate_refuses_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    with pytest.raises(UserError, match="thesis.tex"):
        generate(out, **SMALL)
    assert (out / "thesis.tex").read_text() == "keep me"
    with pytest.raises(UserError, match="train_per_class"):
        generate(tmp_path / "x", train_per_class=0)
