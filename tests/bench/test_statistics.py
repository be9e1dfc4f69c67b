"""Statistics computed as trtexec computes them (sampleReporting.cpp findPercentile / findMedian)."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from corese_edge.statistics import coefficient_of_variation, median, percentile, summarize


def _trtexec_percentile(values, p):
    """A literal transcription of trtexec's findPercentile (float arithmetic), for comparison."""
    s = sorted(values)
    all_ = len(s)
    f32 = np.float32
    exclude = int((f32(1) - f32(p) / f32(100)) * f32(all_))
    return s[max(all_ - 1 - exclude, 0)]


@pytest.mark.parametrize("n", [1, 2, 7, 10, 99, 100, 1001])
@pytest.mark.parametrize("p", [0, 50, 90, 95, 99, 100])
def test_percentile_is_trtexecs_nearest_rank(n, p):
    rng = random.Random(n * 1000 + p)
    values = [rng.uniform(0, 10) for _ in range(n)]
    assert percentile(sorted(values), p) == _trtexec_percentile(values, p)


def test_percentile_on_one_to_hundred():
    s = list(range(1, 101))
    # float32 as in trtexec: (1 - 0.9f) * 100 = 10.000002 -> 10 excluded; (1 - 0.99f) * 100 = 0.999999 -> 0
    assert percentile(s, 90) == 90 and percentile(s, 99) == 100 and percentile(s, 100) == 100
    with pytest.raises(ValueError):
        percentile(s, 101)
    assert percentile([], 50) == math.inf


def test_median_even_and_odd():
    assert median([1, 2, 3]) == 2
    assert median([1, 2, 3, 10]) == 2.5


def test_coefficient_of_variation():
    assert coefficient_of_variation([5.0, 5.0, 5.0]) == 0.0
    # population std of [1, 3] is 1, mean 2
    assert coefficient_of_variation([1.0, 3.0]) == pytest.approx(0.5)
    assert coefficient_of_variation([4.0]) == 0.0


def test_summarize_keys_and_order():
    values = [3.0, 1.0, 2.0, 10.0]
    s = summarize(values)
    assert list(s) == ["min", "max", "mean", "median", "p90", "p95", "p99", "cv"]
    assert s["min"] == 1.0 and s["max"] == 10.0 and s["mean"] == 4.0 and s["median"] == 2.5
    assert s["p90"] == _trtexec_percentile(values, 90)
    with pytest.raises(ValueError):
        summarize([])
