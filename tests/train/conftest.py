"""Small data sets for the trainer tests that look at what a run does (SWA, DDP, options, signals).

They are far smaller than ``synthetic_data`` because these tests check mechanics (averages, equal
parameters, learning rates, dtypes), not accuracy, and each of them trains at least once.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

#: train images per class of ``imbalanced_faces``: the counts differ, so inverse-frequency
#: class weights differ too (class folder names sort in this order)
IMBALANCED_COUNTS = {"a_happy": 12, "b_sad": 6, "c_surprise": 3}


@pytest.fixture(scope="session")
def small_faces(tmp_path_factory) -> Path:
    """The synthetic set (RAF-DB Kaggle layout), 7 classes x 6 train / 2 test images, 32 px."""
    from corese_edge.data.synthetic import generate

    return generate(tmp_path_factory.mktemp("small") / "faces", train_per_class=6, test_per_class=2, size=32, seed=1)


@pytest.fixture(scope="session")
def imbalanced_faces(synthetic_data, tmp_path_factory) -> Path:
    """A 3-class ``train/<class>/`` + ``test/<class>/`` tree with IMBALANCED_COUNTS train images."""
    root = tmp_path_factory.mktemp("imbalanced") / "faces"
    for k, (name, n_train) in enumerate(IMBALANCED_COUNTS.items()):
        for split, n in (("train", n_train), ("test", 2)):
            src = sorted((Path(synthetic_data) / "DATASET" / split / str(k + 4)).glob("*.jpg"))[:n]
            dst = root / split / name
            dst.mkdir(parents=True)
            for p in src:
                shutil.copy(p, dst / p.name)
    return root
