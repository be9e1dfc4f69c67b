"""ExpressionClassifier: frames in, expression predictions out, on any runner (torch-free).

::

    from corese_edge import ExpressionClassifier

    clf = ExpressionClassifier.from_artifact("model.fp16.plan")       # or model.onnx / model.pt
    [pred] = clf.predict(frame)                     # frame: (H, W, 3) uint8 RGB
    pred.label, pred.probs                          # "Happiness", (7,) float32 summing to 1

    clf = ExpressionClassifier.from_artifact("model.onnx", faces=True, color_order="bgr")
    for pred in clf.predict(frame):                 # one Prediction per face, largest first
        pred.box, pred.landmarks, pred.label        # frame pixels; the crop was aligned to the template
    for pred in clf.stream(frames):                 # EMA-smoothed per face track, for video
        pred.image, pred.track, pred.probs

Class names, preprocessing and the face template come from the artifact (ONNX metadata, plan
sidecar, checkpoint).

Return shapes.  :meth:`~ExpressionClassifier.predict_faces` returns one list per input image with
one :class:`Prediction` per face, largest first; without face detection each list holds exactly
one Prediction for the whole image, and with it an image with no face gives an empty list (it is
not classified as a whole: the model was trained on faces, so a face-less frame has no answer).
:meth:`~ExpressionClassifier.predict` is the same, flattened: ``Prediction.image`` says which input
each one belongs to (so without faces it is one Prediction per image, in order).
:meth:`~ExpressionClassifier.stream_faces` / :meth:`~ExpressionClassifier.stream` are the video
counterparts, per frame and flattened.
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
#: stream(): a face joins the track whose last box overlaps it by at least this IoU.
TRACK_IOU = 0.3
#: stream(): a track is dropped after this many consecutive processed frames without its face.
TRACK_MAX_MISSED = 5


@dataclass(frozen=True)
class Prediction:
    """One image's result, or one face's with ``faces=True``.

    ``label``: the class name; ``index``: its index; ``probs``: ``(num_classes,)`` float32 softmax
    probabilities in class-index order (EMA-smoothed in :meth:`ExpressionClassifier.stream`).
    With ``faces=True``: ``box`` is the face ``(x, y, w, h)`` and ``landmarks`` its ``(5, 2)``
    float32 points (right eye, left eye, nose tip, right and left mouth corner; see
    :class:`~corese_edge.runtime.faces.Face`), both in the input image's pixels; ``face`` is the
    face's rank in its image (0 = largest) and ``score`` the detector's confidence.  Without face
    detection these are ``None``.  ``image``: the position of the input this belongs to (the image
    in the list given to ``predict``, or the frame in the ``stream``); ``track``: the face track's
    id in ``stream`` (``None`` in ``predict``).
    """

    label: str
    index: int
    probs: np.ndarray
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    image: int = 0
    face: int | None = None
    score: float | None = None
    track: int | None = None

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
            "box": [round(float(v), 2) for v in self.box] if self.box is not None else None,
            "landmarks": ([[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.landmarks)]
                          if self.landmarks is not None else None),
            "face": self.face,
            "face_score": round(float(self.score), 4) if self.score is not None else None,
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

    ``faces``: detect every face with YuNet (:class:`~corese_edge.runtime.faces.FaceDetector`) and
    classify each one; ``align`` (default) warps each face so its eyes and mouth centre sit on the
    artifact's face template (``preprocessing.face_template``) at the model's input size, as the
    training crops had them; ``align=False`` takes the plain square box crop instead.
    ``face_model``: the YuNet ``.onnx`` file (default: :func:`~corese_edge.runtime.faces.resolve_face_model`,
    which may download it once); ``face_detector``: a ready detector (anything with
    ``detect(frame, color_order) -> list[Face]``), which overrides ``face_model``.
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
        align: bool = True,
        face_model: str | os.PathLike | None = None,
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
        self.align = bool(align)
        if self.faces and face_detector is None:
            from corese_edge.runtime.faces import FaceDetector

            face_detector = FaceDetector(face_model)
        self.face_detector = face_detector

    @classmethod
    def from_artifact(
        cls,
        path: str | os.PathLike,
        *,
        faces: bool = False,
        color_order: str = "rgb",
        batch_size: int | None = None,
        align: bool = True,
        face_model: str | os.PathLike | None = None,
        face_detector: Any | None = None,
        **runner_options: Any,
    ) -> "ExpressionClassifier":
        """Open ``path`` with the runner its suffix calls for: ``.plan``/``.engine`` TensorRT,
        ``.onnx`` ONNX Runtime, ``.xml`` OpenVINO IR, ``.pt`` PyTorch.  ``runner_options`` go to
        that runner (``providers``, ``threads``, ``cuda_backend``, ``cuda_graph``, ``device``;
        OpenVINO: ``device="CPU"``, ``threads``, ``streams``, ``hint``, ``inference_precision``)."""
        runner = open_runner(path, **runner_options)
        try:
            return cls(runner, faces=faces, color_order=color_order, batch_size=batch_size,
                       face_detector=face_detector, align=align, face_model=face_model)
        except BaseException:
            runner.close()
            raise

    # -- prediction ------------------------------------------------------------------------------
    def predict_faces(self, images: Any, color_order: str | None = None) -> list[list[Prediction]]:
        """One list per input image, in order.

        ``images``: an ``(H, W, 3)`` uint8 frame, an ``(N, H, W, 3)`` batch, a path, or a list of
        these.  Without ``faces``, each list holds one :class:`Prediction` for the whole image.
        With ``faces``, each list holds one Prediction per detected face, largest first, and is
        empty for an image with no face.  All crops go through the runner in batches that fit
        its maximum batch.
        """
        order = color_order or self.color_order
        frames = as_frames(images, order)
        crops, found = self._crops(frames, order)
        probs = self._probs(crops, order) if crops else np.empty((0, len(self.class_names)), np.float32)
        out: list[list[Prediction]] = [[] for _ in frames]
        for p, (image, rank, face) in zip(probs, found):
            out[image].append(self._prediction(p, image, rank, face))
        return out

    def predict(self, images: Any, color_order: str | None = None) -> list[Prediction]:
        """:meth:`predict_faces` flattened: without ``faces`` one :class:`Prediction` per image,
        in order; with ``faces`` one per detected face (``Prediction.image`` names its input,
        largest face first within an image; images with no face contribute none)."""
        return [p for per_image in self.predict_faces(images, color_order) for p in per_image]

    def logits(self, images: Any, color_order: str | None = None) -> np.ndarray:
        """Raw model outputs ``(N, num_classes)`` float32 for ``images`` (no face cropping)."""
        order = color_order or self.color_order
        return self._logits(as_frames(images, order), order)

    def stream_faces(
        self, frames: Iterable[Any], momentum: float = 0.6, color_order: str | None = None,
        iou_threshold: float = TRACK_IOU, max_missed: int = TRACK_MAX_MISSED,
    ) -> Iterator[list[Prediction]]:
        """One list of :class:`Prediction` per video frame, smoothed over time per face track.

        Each track's probabilities are an exponential moving average: ``p_t = momentum * p_{t-1}
        + (1 - momentum) * q_t`` where ``q_t`` is the face's softmax in frame ``t`` (a new track
        starts at ``p = q``); the label is the argmax of ``p_t``.  ``momentum=0`` disables
        smoothing.  Without ``faces`` the whole frame is one track (id 0) and every list holds one
        Prediction.

        Tracking (``faces=True``): each face joins the track whose last box overlaps it most, by
        greedy matching of the highest box IoU first, if that IoU is at least ``iou_threshold``;
        a face that matches no track starts a new one (a new ``Prediction.track`` id); a track not
        matched for more than ``max_missed`` consecutive frames is dropped.  Limits: there is no
        re-identification (a face that leaves and comes back, or is missed for longer than
        ``max_missed`` frames or moves more than its IoU allows, starts a fresh track and loses its
        smoothing); faces that cross or overlap can swap tracks and so swap their smoothed
        histories; motion of more than about half a face width between processed frames (fast
        motion, or a large ``every`` step) breaks tracks.
        """
        tracks = self._tracks(momentum, iou_threshold, max_missed)
        order = color_order or self.color_order
        for position, frame in enumerate(frames):
            yield tracks.update(position, frame, order)

    def annotate(
        self, frames: Iterable[Any], *, every: int = 1, momentum: float = 0.6, landmarks: bool = False,
        color_order: str | None = None, iou_threshold: float = TRACK_IOU, max_missed: int = TRACK_MAX_MISSED,
    ) -> Iterator["AnnotatedFrame"]:
        """One :class:`AnnotatedFrame` per frame of ``frames``: the frame, its predictions (as
        :meth:`stream_faces` gives them) and a copy with them drawn
        (:func:`~corese_edge.runtime.annotate.draw_predictions`).  ``every``: classify every N-th
        frame; the frames between are drawn with the latest predictions (``processed`` False), so
        a saved video keeps the source's frame rate.  ``landmarks`` draws the 5 face points."""
        from corese_edge.runtime.annotate import draw_predictions

        if every < 1:
            raise UserError(f"every must be >= 1, got {every}")
        tracks = self._tracks(momentum, iou_threshold, max_missed)
        order = color_order or self.color_order
        latest: list[Prediction] = []
        for index, frame in enumerate(frames):
            processed = index % every == 0
            if processed:
                latest = tracks.update(index, frame, order)
            [f] = as_frames(frame, order)
            yield AnnotatedFrame(index, f, latest, draw_predictions(f, latest, landmarks=landmarks, color_order=order),
                                 processed)

    def _tracks(self, momentum: float, iou_threshold: float, max_missed: int) -> "_FaceTracks":
        if not 0.0 <= momentum < 1.0:
            raise UserError(f"momentum must be in [0, 1), got {momentum}")
        if not 0.0 < iou_threshold <= 1.0:
            raise UserError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_missed < 0:
            raise UserError(f"max_missed must be >= 0, got {max_missed}")
        return _FaceTracks(self, momentum, iou_threshold, max_missed)

    def stream(
        self, frames: Iterable[Any], momentum: float = 0.6, color_order: str | None = None,
        iou_threshold: float = TRACK_IOU, max_missed: int = TRACK_MAX_MISSED,
    ) -> Iterator[Prediction]:
        """:meth:`stream_faces` flattened: without ``faces`` one smoothed :class:`Prediction` per
        frame; with ``faces`` one per face per frame (``Prediction.image`` is the frame's position
        in ``frames``, ``Prediction.track`` its track), none for a frame with no face."""
        for preds in self.stream_faces(frames, momentum, color_order, iou_threshold, max_missed):
            yield from preds

    # -- internals -------------------------------------------------------------------------------
    def _crops(self, frames: list[np.ndarray], order: str) -> tuple[list[np.ndarray], list[tuple[int, int | None, Any]]]:
        """The images to classify and, for each, ``(input index, face rank, Face)`` (rank and
        face ``None`` without face detection)."""
        if not self.faces:
            return frames, [(i, None, None) for i in range(len(frames))]
        from corese_edge.runtime.faces import align_face, crop_box

        size = self.preprocessing.size
        crops: list[np.ndarray] = []
        found: list[tuple[int, int | None, Any]] = []
        for i, frame in enumerate(frames):
            for rank, face in enumerate(self.face_detector.detect(frame, order)):
                if self.align:
                    crop, _ = align_face(frame, face, self.preprocessing.face_template, size)
                else:
                    crop = crop_box(frame, face, size)
                crops.append(crop)
                found.append((i, rank, face))
        return crops, found

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

    def _prediction(self, probs: np.ndarray, image: int, rank: int | None, face: Any, track: int | None = None) -> Prediction:
        index = int(np.argmax(probs))
        if face is None:
            return Prediction(self.class_names[index], index, probs, image=image, track=track)
        return Prediction(self.class_names[index], index, probs, box=tuple(float(v) for v in face.box),  # type: ignore[arg-type]
                          landmarks=np.asarray(face.landmarks, dtype=np.float32), image=image, face=rank,
                          score=float(face.score), track=track)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> "ExpressionClassifier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        faces = f", faces={self.face_detector!r}, align={self.align}" if self.faces else ""
        return f"ExpressionClassifier({self.runner!r}, classes={len(self.class_names)}{faces})"


@dataclass(frozen=True)
class AnnotatedFrame:
    """One frame of :meth:`ExpressionClassifier.annotate`: ``index`` its position in the frames
    given, ``frame`` the (H, W, 3) uint8 input, ``predictions`` the smoothed per-face predictions
    shown on it, ``image`` a copy with them drawn, ``processed`` whether this frame was classified
    (False for the frames ``every`` skips, which carry the latest predictions)."""

    index: int
    frame: np.ndarray
    predictions: list[Prediction]
    image: np.ndarray
    processed: bool = True


class _FaceTracks:
    """The per-face EMA tracks of one stream (see :meth:`ExpressionClassifier.stream_faces`)."""

    def __init__(self, clf: ExpressionClassifier, momentum: float, iou_threshold: float, max_missed: int) -> None:
        self.clf, self.momentum, self.iou_threshold, self.max_missed = clf, momentum, iou_threshold, max_missed
        self.tracks: list[_Track] = []
        self.next_id = 0

    def update(self, position: int, frame: Any, order: str) -> list[Prediction]:
        """Classify one frame, match its faces to the tracks, and return its smoothed predictions."""
        clf, momentum = self.clf, self.momentum
        if isinstance(frame, (list, tuple)) or (isinstance(frame, np.ndarray) and frame.ndim == 4):
            raise UserError("stream() takes one frame per item, got a batch")
        [f] = as_frames(frame, order)
        crops, found = clf._crops([f], order)
        q = clf._probs(crops, order) if crops else np.empty((0, len(clf.class_names)), np.float32)
        boxes = [face.box if face is not None else None for _, _, face in found]
        tracks = self.tracks
        matches = _match_tracks(tracks, boxes, self.iou_threshold) if clf.faces else {0: 0} if tracks else {}
        preds: list[Prediction] = []
        matched_tracks = set(matches.values())
        for k, (_, rank, face) in enumerate(found):
            if k in matches:
                track = tracks[matches[k]]
                track.probs = momentum * track.probs + (1.0 - momentum) * q[k]
                track.box, track.missed = boxes[k], 0
            else:
                track = _Track(self.next_id, boxes[k], q[k].astype(np.float64))
                self.next_id += 1
                tracks.append(track)
                matched_tracks.add(len(tracks) - 1)
            preds.append(clf._prediction(track.probs.astype(np.float32), position, rank, face, track.id))
        kept = []
        for i, track in enumerate(tracks):
            if i not in matched_tracks:
                track.missed += 1
            if track.missed <= self.max_missed:
                kept.append(track)
        self.tracks = kept
        return preds


@dataclass
class _Track:
    """One face followed through a stream: its last box, smoothed probabilities (float64) and how
    many processed frames in a row it has not been seen."""

    id: int
    box: tuple[float, float, float, float] | None
    probs: np.ndarray
    missed: int = 0


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x, y, w, h)`` boxes (0 when they do not overlap)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _match_tracks(tracks: list[_Track], boxes: list[Any], threshold: float) -> dict[int, int]:
    """Greedy IoU association: ``{face index: track index}``, highest IoU pairs first, each face
    and track used at most once, pairs below ``threshold`` never matched."""
    pairs = []
    for t, track in enumerate(tracks):
        for k, box in enumerate(boxes):
            iou = box_iou(track.box, box) if track.box is not None and box is not None else 0.0
            if iou >= threshold:
                pairs.append((iou, k, t))
    matches: dict[int, int] = {}
    used: set[int] = set()
    for _, k, t in sorted(pairs, key=lambda p: -p[0]):
        if k not in matches and t not in used:
            matches[k] = t
            used.add(t)
    return matches
