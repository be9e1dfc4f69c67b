"""Running every artifact on the same images: ONNX Runtime sessions, PyTorch, TensorRT engines.

Each backend is wrapped as a *logits function* ``f(batch) -> logits``: ``batch`` is NCHW float32
(already preprocessed), ``logits`` is ``(N, classes)`` float32.  :func:`collect_logits` decodes the
images once, batch by batch, and feeds every function the same batch, so memory holds one batch of
pixels plus the logits.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numpy as np

from corese_edge.errors import require
from corese_edge.preprocessing import Preprocessing

LogitsFn = Callable[[np.ndarray], np.ndarray]

#: images per inference call when measuring drift at 224 px; smaller inputs get proportionally
#: larger batches (up to 64), keeping the pixels per call, and so the activation memory, constant
EVAL_BATCH = 8


def eval_batch_size(image_size: int) -> int:
    return int(max(EVAL_BATCH, min(64, EVAL_BATCH * 224 * 224 // max(1, image_size * image_size))))


def ort_session(model, reference_arithmetic: bool = False):
    """An ONNX Runtime CPU session for a path, ``bytes`` or ``ModelProto``.

    ``reference_arithmetic`` disables every graph optimization, so Q/DQ pairs run unfused: the
    reference arithmetic a TensorRT ``s8s8`` graph is judged by (DESIGN decision 2).
    """
    ort = require("onnxruntime", "export", "validating ONNX artifacts")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if reference_arithmetic:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    elif isinstance(model, os.PathLike):
        model = os.fspath(model)
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


class OnnxLogits:
    """Logits of an ONNX model (file, bytes or ModelProto) under ONNX Runtime on the CPU."""

    def __init__(self, model, reference_arithmetic: bool = False) -> None:
        self.session = ort_session(model, reference_arithmetic)
        self.input_name = self.session.get_inputs()[0].name
        self.reference_arithmetic = reference_arithmetic

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)


class TorchLogits:
    """Logits of a ``torch.nn.Module`` in eval mode on the CPU (the FP32 reference)."""

    def __init__(self, model) -> None:
        self.model = model.eval()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch))).float().numpy()


class EngineLogits:
    """Logits of a TensorRT plan through the runtime's ``TrtRunner`` (imported lazily).

    Batches are split or zero-padded to fit the plan's optimization profile [min_batch, max_batch].
    """

    def __init__(self, plan: str | os.PathLike, min_batch: int = 1, max_batch: int = 32,
                 input_name: str = "input", output_name: str = "logits") -> None:
        from corese_edge.runtime.trt import TrtRunner

        self.runner = TrtRunner(os.fspath(plan))
        self.runner.activate()
        self.min_batch, self.max_batch = int(min_batch), int(max_batch)
        self.input_name, self.output_name = input_name, output_name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return run_in_profile(
            lambda b: self.runner.infer({self.input_name: b})[self.output_name], batch, self.min_batch, self.max_batch
        )

    def close(self) -> None:
        self.runner.close()


def run_in_profile(fn: LogitsFn, batch: np.ndarray, min_batch: int, max_batch: int) -> np.ndarray:
    """Call ``fn`` on chunks of at most ``max_batch`` rows, zero-padding a chunk below ``min_batch``."""
    outs = []
    for start in range(0, len(batch), max_batch):
        chunk = batch[start:start + max_batch]
        n = len(chunk)
        if n < min_batch:
            pad = np.zeros((min_batch - n,) + chunk.shape[1:], dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        outs.append(np.asarray(fn(np.ascontiguousarray(chunk)))[:n])
    return np.concatenate(outs).astype(np.float32, copy=False)


def image_batches(paths: Sequence, prep: Preprocessing, batch_size: int = EVAL_BATCH):
    from corese_edge.data.calibration import calibration_batches

    return calibration_batches(paths, prep, batch_size)


def collect_logits(
    samples: Sequence, prep: Preprocessing, fns: Mapping[str, LogitsFn], batch_size: int | None = None,
    progress: bool = False, desc: str = "validating",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run every function on every sample's image; return ``(labels, {name: logits})``.

    ``samples`` have ``.path`` and ``.label``.  The images are decoded once.  ``batch_size``
    defaults to :func:`eval_batch_size` of the input size.
    """
    batch_size = batch_size or eval_batch_size(prep.size)
    paths = [s.path for s in samples]
    labels = np.asarray([int(s.label) for s in samples], dtype=np.int64)
    results: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    batches = image_batches(paths, prep, batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, total=-(-len(paths) // batch_size), desc=desc, unit="batch", leave=False)
    for batch in batches:
        for name, fn in fns.items():
            results[name].append(fn(batch))
    empty = lambda: np.zeros((0, 0), dtype=np.float32)  # noqa: E731
    return labels, {name: (np.concatenate(v) if v else empty()) for name, v in results.items()}
