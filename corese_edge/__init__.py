"""corese-edge: CoRes-SE facial-expression recognition from training to a TensorRT engine.

``import corese_edge`` is cheap and never imports torch: the torch-based ``load_model`` and the
torch-free ``ExpressionClassifier`` are resolved lazily on first use.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "ExpressionClassifier", "Prediction"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from corese_edge.model.checkpoint import load_model

        return load_model
    if name in ("ExpressionClassifier", "Prediction"):
        from corese_edge.runtime import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'corese_edge' has no attribute {name!r}")
