"""Calibration sampling (stratified, train only, seeded) and the streaming batch reader."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from corese_edge.data.calibration import CalibrationBatches, calibration_samples, folder_images
from corese_edge.data.layouts import Sample, load_index
from corese_edge.errors import DataError
from corese_edge.preprocessing import Preprocessing


def _samples(counts):
    return [Sample(Path(f"/d/{label}/{i:04d}.jpg"), label) for label, n in enumerate(counts) for i in range(n)]


def test_stratified_proportional_and_every_class_present():
    pool = _samples([300, 60, 30, 6])  # imbalanced, like RAF-DB
    chosen = calibration_samples(pool, 40, seed=1)
    assert len(chosen) == 40 and len(set(chosen)) == 40
    counts = Counter(s.label for s in chosen)
    assert set(counts) == {0, 1, 2, 3}
    for label, n in enumerate([300, 60, 30, 6]):
        assert abs(counts[label] - 40 * n / 396) <= 1.0


def test_deterministic_for_a_seed_and_order_independent():
    pool = _samples([50, 50, 50])
    a = calibration_samples(pool, 20, seed=3)
    b = calibration_samples(list(reversed(pool)), 20, seed=3)
    c = calibration_samples(pool, 20, seed=4)
    assert a == b
    assert a != c


def test_size_larger_than_pool_returns_everything_and_size_zero_fails():
    pool = _samples([3, 2])
    assert sorted(calibration_samples(pool, 99), key=str) == sorted(pool, key=str)
    with pytest.raises(DataError):
        calibration_samples(pool, 0)


def test_folder_images_recurses_samples_and_rejects_empty(tmp_path, synthetic_data):
    index = load_index(synthetic_data)
    root = Path(index.split("train")[0].path).parents[1]
    all_images = folder_images(root)
    assert len(all_images) == len(index.split("train"))
    some = folder_images(root, size=10, seed=0)
    assert len(some) == 10 and set(some) <= set(all_images)
    assert some == folder_images(root, size=10, seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no images"):
        folder_images(tmp_path / "empty")


def test_batches_match_the_eval_transform(synthetic_data):
    from corese_edge.images import read_rgb
    from corese_edge.data.transforms import eval_transform

    prep = Preprocessing(size=40)
    paths = [s.path for s in load_index(synthetic_data).split("train")[:5]]
    stream = CalibrationBatches(paths, prep, batch_size=2)
    batches = list(stream)
    assert len(stream) == 3 == len(batches)
    assert [b.shape for b in batches] == [(2, 3, 40, 40), (2, 3, 40, 40), (1, 3, 40, 40)]
    assert all(b.dtype == np.float32 for b in batches)
    expected = eval_transform(prep)(image=read_rgb(paths[4]))["image"].transpose(2, 0, 1)
    np.testing.assert_allclose(batches[2][0], expected, atol=1e-6)
