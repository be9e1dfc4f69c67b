"""Training plots (matplotlib, Agg backend, written atomically)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from corese_edge.atomic import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion_matrix(cm: Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike, title: str) -> None:
    plt = _pyplot()
    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_curves(history: Sequence[dict], path: str | os.PathLike, swa_start: int | None = None) -> None:
    """Loss and accuracy per epoch from ``metrics.jsonl`` rows."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(epochs, [h["train_loss"] for h in history], label="train loss")
    if any("val_loss" in h for h in history):
        a.plot(epochs, [h.get("val_loss", np.nan) for h in history], label="val loss")
    a.set_xlabel("epoch")
    a.legend()
    b.plot(epochs, [h["train_accuracy"] for h in history], label="train acc (mixed targets)")
    if any("val_accuracy" in h for h in history):  # absent with --val-fraction 0
        b.plot(epochs, [h.get("val_accuracy", np.nan) for h in history], label="val acc")
    if any("swa_val_accuracy" in h for h in history):
        b.plot(epochs, [h.get("swa_val_accuracy", np.nan) for h in history], label="SWA val acc")
    if swa_start is not None:
        for ax in (a, b):
            ax.axvline(swa_start + 1, color="grey", ls=":", lw=1)
    b.set_xlabel("epoch")
    b.set_ylim(0, 1)
    b.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
