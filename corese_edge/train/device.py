"""Which torch device a training or evaluation run uses.

Its own module so that the trainer and ``evaluate`` both import it one way: the trainer already
imports ``evaluate.predict_logits``, so a device helper in either of them made the two import
each other (docs/ARCHITECTURE.md, "Layers").
"""
from __future__ import annotations

import torch

from corese_edge.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when PyTorch sees a GPU, else CPU; an explicit ``cuda`` without one is a
    :class:`UserError` rather than a failure deep inside the first ``.to(device)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu or auto")
    return torch.device(name)
