"""PyTorch runner, for reference and comparison only (eager mode, the checkpoint's own model).

Importing this module is cheap; torch and the model code are imported by :meth:`TorchRunner.activate`,
and only torch when the runner wraps a module already in memory (the export's FP32 reference).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from corese_edge.errors import UserError, require
from corese_edge.metadata import ArtifactMetadata
from corese_edge.runtime.base import Runner, TensorSpec

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
#: ``TorchRunner.path`` of a runner that wraps a module
IN_MEMORY = "<in-memory module>"


class TorchRunner(Runner):
    """Runs a corese-edge checkpoint (``.pt``) with PyTorch, SE in ``sample`` mode like the export.

    ``model``: the checkpoint's path, or a ``torch.nn.Module`` already built (it is put in eval
    mode and run as it is: NCHW float32 ``input`` -> ``logits``; no metadata).  ``device``:
    ``"cpu"`` or ``"cuda[:N]"``.  ``half=True`` runs the model in FP16 (CUDA only); inputs and
    outputs stay float32 numpy arrays.  ``threads`` sets ``torch.set_num_threads``.  On CUDA the
    timing includes the copies and a synchronize, so ``last_inference_time`` is the host wall time
    of one complete query.
    """

    backend = "torch"

    def __init__(self, model: str | os.PathLike | Any, device: str = "cpu", half: bool = False,
                 threads: int | None = None) -> None:
        in_memory = not isinstance(model, (str, os.PathLike))
        super().__init__(IN_MEMORY if in_memory else os.fspath(model))
        self.module = model if in_memory else None
        self.device = device
        self.half = bool(half)
        self.threads = threads
        self.precision = "fp16" if half else "fp32"
        self.model = None

    def _activate(self) -> None:
        torch = require("torch", "train", "to run .pt checkpoints")
        if self.threads is not None:
            torch.set_num_threads(int(self.threads))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"device {self.device!r} requested but torch sees no CUDA GPU")
        if self.half and not self.device.startswith("cuda"):
            raise UserError("half precision needs a CUDA device (device='cuda')")
        self._torch = torch
        if self.module is not None:
            model = self.module if self.device == "cpu" else self.module.to(self.device)
            self.model = (model.half() if self.half else model).eval()
            self.inputs = (TensorSpec(INPUT_NAME, np.dtype(np.float32), (None, 3, None, None)),)
            self.outputs = (TensorSpec(OUTPUT_NAME, np.dtype(np.float32), (None, None)),)
            return
        from corese_edge.model.checkpoint import load_checkpoint

        ckpt = load_checkpoint(self.path)
        model = ckpt.build_model(se_mode="sample").to(self.device)
        if self.half:
            model = model.half()
        self.model = model.eval()
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

    def execution_facts(self, batch: int | None = None) -> dict[str, dict[str, object]]:
        """The ``threads`` asked for (``None``: torch's default)."""
        return {"settings": {"threads": self.threads}}

