"""PyTorch runner, for reference and comparison only (eager mode, the checkpoint's own model).

Importing this module is cheap; torch and the model code are imported by :meth:`TorchRunner.activate`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from corese_edge.errors import UserError, require
from corese_edge.metadata import ArtifactMetadata
from corese_edge.runtime.base import Runner, TensorSpec

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class TorchRunner(Runner):
    """Runs a corese-edge checkpoint (``.pt``) with PyTorch, SE in ``sample`` mode like the export.

    ``device``: ``"cpu"`` or ``"cuda[:N]"``.  ``half=True`` runs the model in FP16 (CUDA only);
    inputs and outputs stay float32 numpy arrays.  ``threads`` sets ``torch.set_num_threads``.
    On CUDA the timing includes the copies and a synchronize, so ``last_inference_time`` is the
    host wall time of one complete query.
    """

    backend = "torch"

    def __init__(self, path: str | Path, device: str = "cpu", half: bool = False, threads: int | None = None) -> None:
        super().__init__(str(path))
        self.device = device
        self.half = bool(half)
        self.threads = threads
        self.precision = "fp16" if half else "fp32"
        self.model = None

    def _activate(self) -> None:
        torch = require("torch", "train", "to run .pt checkpoints")
        from corese_edge.model.checkpoint import load_checkpoint

        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {self.device!r} requested but torch sees no CUDA GPU")
        if self.half and not self.device.startswith("cuda"):
            raise UserError("half precision needs a CUDA device (device='cuda')")
        ckpt = load_checkpoint(self.path)
        model = ckpt.build_model(se_mode="sample").to(self.device)
        if self.half:
            model = model.half()
        self.model = model.eval()
        self._torch = torch
        size = ckpt.preprocessing.size
        self.inputs = (TensorSpec(INPUT_NAME, np.dtype(np.float32), (None, 3, size, size)),)
        self.outputs = (TensorSpec(OUTPUT_NAME, np.dtype(np.float32), (None, ckpt.num_classes)),)
        self.metadata = ArtifactMetadata(
            class_names=tuple(ckpt.class_names),
            preprocessing=ckpt.preprocessing,
            model=ckpt.variant,
            checkpoint_sha256="",
            corese_edge_version="",
        )

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(feed[INPUT_NAME])).to(self.device, non_blocking=False)
            if self.half:
                x = x.half()
            y = self.model(x).float().cpu().numpy()
        return {OUTPUT_NAME: y}

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize()

    def _close(self) -> None:
        self.model = None

