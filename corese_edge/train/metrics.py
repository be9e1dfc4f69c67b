"""Classification metrics in plain numpy (the report format shared by train, evaluate and export)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``cm[t, p]`` counts images of true class t predicted as p."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(targets, np.int64), np.asarray(preds, np.int64)), 1)
    return cm


def classification_report(targets: np.ndarray, preds: np.ndarray, class_names: Sequence[str]) -> dict:
    """``accuracy`` (a fraction), ``mean_class_accuracy``, ``macro_f1``, ``per_class`` and
    ``confusion_matrix``.  Classes without support count as 0 recall but are left out of the
    means, so a test split missing a class is not punished twice."""
    n = len(class_names)
    cm = confusion_matrix(targets, preds, n)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / np.maximum(support, 1), 0.0)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    present = support > 0
    total = int(support.sum())
    return {
        "num_images": total,
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "mean_class_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": cm.tolist(),
    }
