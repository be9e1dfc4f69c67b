"""Summary statistics of timing samples, computed the way trtexec computes them.

trtexec (``samples/common/sampleReporting.cpp``) sorts the samples, takes the median as the middle
element (the mean of the two middle ones for an even count) and the p-th percentile as the sorted
element at index ``max(n - 1 - int((1 - p / 100) * n), 0)`` (in float32), i.e. a nearest-rank percentile with no
interpolation.  The coefficient of variation is the population standard deviation over the mean;
trtexec warns when it exceeds 2.5 % (for GPU compute time), and so does corese-edge bench.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

CV_WARN = 0.025
PERCENTILES = (90, 95, 99)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """trtexec's ``findPercentile`` on an ascending sequence."""
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {p}")
    n = len(sorted_values)
    if n == 0:
        return math.inf
    # trtexec computes this in single precision; float64 would give int(9.999...) = 9 for p90 of 100
    exclude = int((np.float32(1.0) - np.float32(p) / np.float32(100.0)) * np.float32(n))
    return float(sorted_values[max(n - 1 - exclude, 0)])


def median(sorted_values: Sequence[float]) -> float:
    """trtexec's ``findMedian`` on an ascending sequence."""
    n = len(sorted_values)
    if n == 0:
        return math.inf
    m = n // 2
    return float(sorted_values[m]) if n % 2 else (float(sorted_values[m - 1]) + float(sorted_values[m])) / 2.0


def coefficient_of_variation(values: Sequence[float]) -> float:
    """Population standard deviation / mean (0 for fewer than two samples or a zero mean)."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    if mean == 0:
        return 0.0
    var = sum((v - mean) ** 2 for v in values) / n
    return math.sqrt(var) / mean


def summarize(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    """``{"min", "max", "mean", "median", "p90", "p95", "p99", "cv"}`` of ``values`` (any unit)."""
    if len(values) == 0:
        raise ValueError("no samples to summarize")
    s = sorted(float(v) for v in values)
    out = {
        "min": s[0],
        "max": s[-1],
        "mean": sum(s) / len(s),
        "median": median(s),
    }
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(s, p)
    out["cv"] = coefficient_of_variation(s)
    return {k: round(v, digits) if k != "cv" else round(v, 6) for k, v in out.items()}
