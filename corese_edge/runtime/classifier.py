"""ExpressionClassifier: frames in, expression predictions out, on any runner (torch-free).

::

    from corese_edge import ExpressionClassifier

    clf = ExpressionClassifier.from_artifact("model.fp16.plan")       # or model.onnx / model.pt
    [pred] = clf.predict(frame)                     # frame: (H, W, 3) uint8 RGB
    pred.label, pred.probs                          # "Happiness", (7,) float32 summing to 1

    clf = ExpressionClassifier.from_artifact("model.onnx", faces=True, color_order="bgr")
    for pred in clf.stream(frames):                 # EMA-smoothed probabilities for video
        ...

Class names and preprocessing come from the artifact (ONNX metadata, plan sidecar, checkpoint).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from corese_edge.errors import UserError
from corese_edge.runtime.artifacts import open_runner
from corese_edge.runtime.base import Runner
from corese_edge.runtime.preprocess import Preprocessor, as_frames

#: Images per runner call when the backend has no maximum batch of its own (ONNX Runtime, torch).
DEFAULT_BATCH = 32


@dataclass(frozen=True)
class Prediction:
    """One image's result.

    ``label``: the class name; ``index``: its index; ``probs``: ``(num_classes,)`` float32 softmax
    probabilities in class-index order; ``box``: the face ``(x, y, w, h)`` in the input image's
    pixels with ``faces=True``, ``None`` without face detection or when no face was found (the
    whole image is classified then).
    """

    label: str
    index: int
    probs: np.ndarray
    box: tuple[int, int, int, int] | None = None

    @property
    def confidence(self) -> float:
        return float(self.probs[self.index])

    def to_dict(self, class_names: Iterable[str] | None = None) -> dict[str, Any]:
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(self.probs))]
        return {
            "label": self.label,
            "index": self.index,
            "confidence": round(self.confidence, 6),
            "probs": {n: round(float(p), 6) for n, p in zip(names, self.probs)},
            "box": list(self.box) if self.box is not None else None,
        }


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64, returned as float32 (numerically stable)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


class ExpressionClassifier:
    """Wraps an (activated) :class:`~corese_edge.runtime.base.Runner`.

    ``faces``: detect the largest face and crop it RAF-DB style (see :mod:`corese_edge.runtime.faces`).
    ``color_order``: the channel order of the frames you pass, ``"rgb"`` (default) or ``"bgr"``
    (OpenCV); file paths are always decoded correctly.  ``batch_size``: images per runner call,
    capped at the engine's maximum batch.  The classifier owns the runner; :meth:`close` it or
    use ``with``.
    """

    def __init__(
        self,
        runner: Runner,
        faces: bool = False,
        color_order: str = "rgb",
        batch_size: int | None = None,
        face_detector: Any | None = None,
    ) -> None:
        if color_order not in ("rgb", "bgr"):
            raise UserError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        runner.activate()
        if runner.metadata is None:
            raise UserError(runner.metadata_problem or f"{runner.path}: carries no corese-edge metadata")
        if len(runner.inputs) != 1:
            raise UserError(f"{runner.path}: expected one image input, found {runner.input_names}")
        self.runner = runner
        self.metadata = runner.metadata
        self.class_names = tuple(runner.metadata.class_names)
        self.preprocessing = runner.metadata.preprocessing
        self.input = runner.inputs[0]
        self.output_name = runner.outputs[0].name
        self.preprocessor = Preprocessor(self.preprocessing, np.dtype(self.input.dtype))
        self.color_order = color_order
        cap = runner.max_batch or DEFAULT_BATCH
        if batch_size is not None and batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = min(batch_size or cap, cap)
        self.faces = bool(faces)
        if self.faces and face_detector is None:
            from corese_edge.runtime.faces import FaceDetector

            face_detector = FaceDetector()
        self.face_detector = face_detector

    @classmethod
    def from_artifact(
        cls,
        path: str | os.PathLike,
        *,
        faces: bool = False,
        color_order: str = "rgb",
        batch_size: int | None = None,
        **runner_options: Any,
    ) -> "ExpressionClassifier":
        """Open ``path`` with the runner its suffix calls for: ``.plan``/``.engine`` TensorRT,
        ``.onnx`` ONNX Runtime, ``.pt`` PyTorch.  ``runner_options`` go to that runner
        (``providers``, ``threads``, ``cuda_backend``, ``cuda_graph``, ``device``, ...)."""
        runner = open_runner(path, **runner_options)
        try:
            return cls(runner, faces=faces, color_order=color_order, batch_size=batch_size)
        except BaseException:
            runner.close()
            raise

    # -- prediction ------------------------------------------------------------------------------
    def predict(self, images: Any, color_order: str | None = None) -> list[Prediction]:
        """One :class:`Prediction` per image, in order.

        ``images``: an ``(H, W, 3)`` uint8 frame, an ``(N, H, W, 3)`` batch, a path, or a list of
        these.  Batches are split to fit the runner's maximum batch.
        """
        order = color_order or self.color_order
        frames = as_frames(images, order)
        frames, boxes = self._crop_faces(frames, order)
        probs = self._probs(frames, order)
        return [self._prediction(p, box) for p, box in zip(probs, boxes)]

    def logits(self, images: Any, color_order: str | None = None) -> np.ndarray:
        """Raw model outputs ``(N, num_classes)`` float32 for ``images`` (no face cropping)."""
        order = color_order or self.color_order
        return self._logits(as_frames(images, order), order)

    def stream(self, frames: Iterable[Any], momentum: float = 0.6, color_order: str | None = None) -> Iterator[Prediction]:
        """Predictions for a sequence of video frames, smoothed over time.

        The probabilities are an exponential moving average: ``p_t = momentum * p_{t-1} +
        (1 - momentum) * q_t`` where ``q_t`` is frame ``t``'s own softmax (``p_0 = q_0``); the
        label is the argmax of ``p_t``.  ``momentum=0`` disables smoothing.
        """
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"momentum must be in [0, 1), got {momentum}")
        order = color_order or self.color_order
        smoothed: np.ndarray | None = None
        for frame in frames:
            if isinstance(frame, (list, tuple)) or (isinstance(frame, np.ndarray) and frame.ndim == 4):
                raise UserError("stream() takes one frame per item, got a batch")
            [f] = as_frames(frame, order)
            crops, boxes = self._crop_faces([f], order)
            q = self._probs(crops, order)[0]
            smoothed = q if smoothed is None else momentum * smoothed + (1.0 - momentum) * q
            yield self._prediction(smoothed.astype(np.float32), boxes[0])

    # -- internals -------------------------------------------------------------------------------
    def _crop_faces(self, frames: list[np.ndarray], order: str) -> tuple[list[np.ndarray], list[Any]]:
        if not self.faces:
            return frames, [None] * len(frames)
        crops, boxes = [], []
        for frame in frames:
            box = self.face_detector.largest(frame, order)
            if box is None:
                crops.append(frame)
                boxes.append(None)
            else:
                crops.append(self.face_detector.crop(frame, box))
                boxes.append(box.as_tuple())
        return crops, boxes

    def _logits(self, frames: list[np.ndarray], order: str) -> np.ndarray:
        chunks = []
        for start in range(0, len(frames), self.batch_size):
            x = self.preprocessor.from_frames(frames[start : start + self.batch_size], order)
            out = self.runner.infer({self.input.name: x})[self.output_name]
            chunks.append(np.asarray(out, dtype=np.float32).reshape(len(x), -1))
        logits = np.concatenate(chunks, axis=0)
        if logits.shape[1] != len(self.class_names):
            raise UserError(
                f"{self.runner.path}: the model outputs {logits.shape[1]} values per image but its metadata "
                f"names {len(self.class_names)} classes"
            )
        return logits

    def _probs(self, frames: list[np.ndarray], order: str) -> np.ndarray:
        return softmax(self._logits(frames, order))

    def _prediction(self, probs: np.ndarray, box: Any) -> Prediction:
        index = int(np.argmax(probs))
        return Prediction(self.class_names[index], index, probs, box)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> "ExpressionClassifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ExpressionClassifier({self.runner!r}, classes={len(self.class_names)}, faces={self.faces})"
