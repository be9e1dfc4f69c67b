"""Bench reports: JSON files and latency/throughput-versus-batch plots (matplotlib, imported lazily)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from corese_edge.atomic import atomic_path, write_json
from corese_edge.errors import require


def write_report(path: str | os.PathLike, doc: Mapping[str, Any]) -> Path:
    """Write a bench document (it carries its ``schema``) atomically."""
    write_json(path, dict(doc))
    return Path(path)


def plot_vs_batch(
    series: Mapping[str, Sequence[tuple[int, float, float]]],
    out: str | os.PathLike,
    title: str,
) -> Path:
    """Two panels: median latency (ms) and throughput (images/s) against batch size.

    ``series`` maps a label to ``[(batch, median latency ms, images/s), ...]``.
    """
    matplotlib = require("matplotlib", "export", "for benchmark plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, points in series.items():
        pts = sorted(points)
        if not pts:
            continue
        batches = [p[0] for p in pts]
        ax_lat.plot(batches, [p[1] for p in pts], marker="o", label=label)
        ax_tp.plot(batches, [p[2] for p in pts], marker="o", label=label)
    for ax, ylabel in ((ax_lat, "median latency per query (ms)"), (ax_tp, "throughput (images/s)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_tp.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out


def series_from_results(results: Sequence[Mapping[str, Any]], label_keys: Sequence[str] = ("backend", "precision")) -> dict[str, list[tuple[int, float, float]]]:
    """Group bench results into plot series (only results that ran, i.e. have ``latency_ms``)."""
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in results:
        if "latency_ms" not in r:
            continue
        label = " ".join(str(r.get(k)) for k in label_keys if r.get(k) is not None)
        series.setdefault(label, []).append((int(r["batch"]), float(r["latency_ms"]["median"]), float(r["throughput_ips"])))
    return series
