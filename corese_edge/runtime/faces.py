"""Face detection (YuNet through ``cv2.FaceDetectorYN``) and alignment to the model's face template.

CoRes-SE learns from aligned crops: RAF-DB placed each face by a similarity transform from its two
eyes and mouth centre.  At run time :class:`FaceDetector` finds faces with YuNet (a box, a score and
5 landmarks per face), and :func:`align_face` warps each one so that its eyes and mouth centre land
where the training crops had them: the :class:`~corese_edge.preprocessing.FaceTemplate` stored in
the artifact's preprocessing.  The fit is a least-squares similarity (rotation, uniform scale,
translation; :func:`similarity_transform`) and the crop is one ``cv2.warpAffine`` at the model's
input size with border replication, so a face at the frame's edge keeps its place in the crop.
:func:`crop_box` is the plain square box crop (``align=False``), no rotation or landmark scaling.

Coordinates: pixels of the frame, ``(x, y)``, in OpenCV's convention (pixel ``i``'s centre at
``i``).  A template fraction ``f`` means pixel ``f * size`` in a ``size`` x ``size`` crop, so a
template learned from landmarks detected on training images resized to ``size`` is
``landmarks / size``.

The model file, ``face_detection_yunet_2023mar.onnx`` (232,589 bytes, MIT, from the OpenCV model
zoo), is not part of the package: :func:`resolve_face_model` finds it (explicit path,
``$CORESE_EDGE_FACE_MODEL``, the user's cache) or downloads it once, checked against
:data:`FACE_MODEL_SHA256`.  Torch-free; only OpenCV and numpy.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from corese_edge.errors import UserError
from corese_edge.preprocessing import FaceTemplate

log = logging.getLogger(__name__)

FACE_MODEL_NAME = "face_detection_yunet_2023mar.onnx"
FACE_MODEL_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"
FACE_MODEL_URL = "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
#: Environment variable naming the model file (used before the cache; tests point it at a local copy).
FACE_MODEL_ENV = "CORESE_EDGE_FACE_MODEL"
#: Seconds before a download attempt gives up: offline machines should fail at once, not hang.
DOWNLOAD_TIMEOUT_S = 10.0

#: Landmark refinement (see :meth:`FaceDetector.detect`): each face is re-detected in an upright
#: crop of this side in which its eyes are :data:`REFINE_EYE_DISTANCE` px apart.  YuNet's landmarks
#: on a face it sees once, tilted or small, are off by up to ~10 % of the eye distance, and it
#: under-reads rotation; on an upright face of this size, averaged with its mirror image, they are
#: about 3x closer (measured on skimage's astronaut rotated by +-20 deg and scaled x0.5-x2).
REFINE_SIZE = 224
REFINE_EYE_DISTANCE = 72.0
#: Refinement rounds, each framing the crop on the previous round's landmarks.  One round inherits
#: the first pass's framing error, worst where the frame was downscaled for detection.  On the nine
#: rotated/scaled astronaut cases (tests/runtime/test_faces_align.py, AMD EPYC AVX-512) the aligned
#: crop's eyes and mouth landed, worst case / mean, 3.0 % / 1.5 % of the crop off the template after
#: one round, 2.1 % / 1.1 % after two, 1.4 % / 1.1 % after three; two keep the cost at four small
#: YuNet passes per face.
REFINE_ROUNDS = 2

#: Extra border on each side of the detector's box for the plain box crop (``align=False``), as a
#: fraction of the box's longer side.  YuNet's box runs from the forehead to the chin; widened by
#: 10 % it frames the face about as the default template does (the eyes ~1/3 of the side apart).
BOX_MARGIN = 0.10


class MissingFaceModel(UserError):
    """The YuNet model file is not available (offline with no cached copy, or a wrong file)."""


# -- the model file --------------------------------------------------------------------------------
def face_model_cache_path() -> Path:
    """Where the downloaded model is kept: ``$XDG_CACHE_HOME`` (or ``~/.cache``)/corese-edge/<name>."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "corese-edge" / FACE_MODEL_NAME


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _checked(path: Path, where: str) -> Path:
    """``path`` if it is the expected file, else a one-line :class:`MissingFaceModel`."""
    if not path.is_file():
        raise MissingFaceModel(f"face model not found: {path} ({where})")
    digest = _sha256(path)
    if digest != FACE_MODEL_SHA256:
        raise MissingFaceModel(
            f"face model {path} ({where}) is not {FACE_MODEL_NAME}: sha256 {digest[:16]}..., "
            f"expected {FACE_MODEL_SHA256[:16]}... (a damaged or different file)"
        )
    return path


def _download(dest: Path) -> Path:
    """Fetch :data:`FACE_MODEL_URL` into ``dest`` atomically; the sha256 is checked before the
    file is put in place, so a bad download never lands in the cache."""
    import urllib.request

    from corese_edge.atomic import atomic_path

    log.info("downloading %s to %s", FACE_MODEL_URL, dest)
    with urllib.request.urlopen(FACE_MODEL_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FACE_MODEL_SHA256:
        raise MissingFaceModel(
            f"downloaded {FACE_MODEL_URL} has sha256 {digest[:16]}..., expected {FACE_MODEL_SHA256[:16]}...; "
            f"put the right file at {dest} or pass --face-model PATH / face_model="
        )
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)
    return dest


def resolve_face_model(path: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The YuNet model file to load, checked against :data:`FACE_MODEL_SHA256`.

    Order: ``path`` if given (it must exist), ``$CORESE_EDGE_FACE_MODEL`` if set, the cache file
    (:func:`face_model_cache_path`), then (``download=True``) a download into the cache.  A wrong
    file is a :class:`MissingFaceModel` naming it; no file and no download (offline, or
    ``download=False``) is a :class:`MissingFaceModel` saying where to put the file.
    """
    if path is not None:
        return _checked(Path(path), "given as face_model / --face-model")
    env = os.environ.get(FACE_MODEL_ENV)
    if env:
        return _checked(Path(env), f"from ${FACE_MODEL_ENV}")
    cached = face_model_cache_path()
    damaged = False
    if cached.is_file():
        if _sha256(cached) == FACE_MODEL_SHA256:
            return cached
        damaged = True  # a truncated earlier copy: download over it
    where = (f"download {FACE_MODEL_URL} (232,589 bytes, MIT) to {cached}, "
             "or pass --face-model PATH / face_model=")
    if not download:
        raise MissingFaceModel(f"no face model{' (the cached copy is damaged)' if damaged else ''}: {where}")
    import http.client

    try:
        return _download(cached)
    except MissingFaceModel:
        raise
    # URLError, timeouts, DNS failures and a read-only cache are OSErrors; a cut-off body is an HTTPException
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        state = "the cached copy is damaged" if damaged else "no face model"
        raise MissingFaceModel(f"{state} and the download failed ({reason}): {where}") from None


# -- detection -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in the original frame's pixels.

    ``box``: ``(x, y, w, h)`` float, top-left corner and size (may reach past the frame's edge);
    ``score``: the detector's confidence in [0, 1]; ``landmarks``: ``(5, 2)`` float32 ``(x, y)``
    of the right eye, left eye, nose tip, right mouth corner, left mouth corner (YuNet's order;
    "right" is the subject's right, which appears on the image's left).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    def eyes_mouth(self) -> np.ndarray:
        """``(3, 2)`` float32: right eye, left eye, mouth centre (midpoint of the mouth corners)."""
        lm = np.asarray(self.landmarks, dtype=np.float32)
        return np.stack([lm[0], lm[1], (lm[3] + lm[4]) / 2.0]).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.landmarks)],
        }


class FaceDetector:
    """YuNet face detector; :meth:`detect` returns every face, largest first.

    ``model``: the ``.onnx`` path, or ``None`` for :func:`resolve_face_model` (which may download
    it).  ``score_threshold``: the lowest face confidence kept; ``nms_threshold``: the IoU above
    which overlapping boxes are merged.  ``max_side``: frames whose longer side exceeds it are
    downscaled (``INTER_AREA``) to that side for detection, since YuNet finds faces of about
    10-300 px; boxes and landmarks are mapped back to the frame's pixels.  ``refine`` (default):
    re-estimate each face's landmarks on an upright :data:`REFINE_SIZE` px crop of the full-
    resolution frame and its mirror image, averaged, :data:`REFINE_ROUNDS` times (two more YuNet
    passes on a small image per face and round, each about a third of a 640x480 detection's cost);
    ``refine=False`` keeps the first
    pass's landmarks.  Instances are safe to share between threads (``cv2.FaceDetectorYN`` keeps
    the input size as state, so each call sets it and detects under a lock).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 640,
        top_k: int = 5000,
        download: bool = True,
        refine: bool = True,
    ) -> None:
        if not 0.0 <= score_threshold <= 1.0:
            raise UserError(f"face score_threshold must be in [0, 1], got {score_threshold}")
        if max_side < 32:
            raise UserError(f"face detector max_side must be >= 32 px, got {max_side}")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise UserError(f"OpenCV {cv2.__version__} has no FaceDetectorYN: install opencv-python-headless>=4.8")
        self.model_path = resolve_face_model(model, download=download)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.max_side = int(max_side)
        self.refine = bool(refine)
        self._lock = threading.Lock()
        # OpenCV 5's DNN engine logs "setPreferableTarget Targets are not supported by the new graph
        # engine" on every load; it is harmless, and it would break the CLI's one-line messages
        logging_api = getattr(getattr(cv2, "utils", None), "logging", None)
        previous = logging_api.getLogLevel() if logging_api is not None else None
        try:
            if logging_api is not None:
                logging_api.setLogLevel(logging_api.LOG_LEVEL_ERROR)
            self._yunet = cv2.FaceDetectorYN.create(
                str(self.model_path), "", (max_side, max_side), self.score_threshold, self.nms_threshold, top_k,
            )
        except cv2.error as exc:
            raise MissingFaceModel(f"OpenCV cannot load the face model {self.model_path}: {str(exc).strip().splitlines()[-1]}") from None
        finally:
            if logging_api is not None:
                logging_api.setLogLevel(previous)

    def detect(self, frame: np.ndarray, color_order: str = "rgb") -> list[Face]:
        """All faces in an ``(H, W, 3)`` uint8 frame (``color_order`` "rgb" or "bgr"), largest
        box area first; ``[]`` when there is none."""
        if color_order not in ("rgb", "bgr"):
            raise UserError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise UserError(f"face detection takes an (H, W, 3) uint8 frame, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        # YuNet was trained on BGR input (OpenCV's samples feed it cv2.imread frames unchanged).
        bgr = frame[:, :, ::-1] if color_order == "rgb" else frame
        if scale < 1.0:
            dw, dh = max(1, round(w * scale)), max(1, round(h * scale))
            bgr = cv2.resize(np.ascontiguousarray(bgr), (dw, dh), interpolation=cv2.INTER_AREA)
            sx, sy = w / dw, h / dh  # exact per-axis factors after rounding the size
        else:
            bgr = np.ascontiguousarray(bgr)
            sx = sy = 1.0
        found = self._run(bgr)
        faces = []
        for row in found:
            # resize maps pixel centres by x_src = (x_dst + 0.5) * s - 0.5, so map back the same way
            box = ((row[0] + 0.5) * sx - 0.5, (row[1] + 0.5) * sy - 0.5, row[2] * sx, row[3] * sy)
            lm = row[4:14].reshape(5, 2).copy()
            lm[:, 0] = (lm[:, 0] + 0.5) * sx - 0.5
            lm[:, 1] = (lm[:, 1] + 0.5) * sy - 0.5
            face = Face(tuple(float(v) for v in box), float(row[14]), lm.astype(np.float32))  # type: ignore[arg-type]
            for _ in range(REFINE_ROUNDS if self.refine else 0):
                face = self._refined(frame, face, color_order)
            faces.append(face)
        return sorted(faces, key=lambda f: f.area, reverse=True)

    def _run(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet on a contiguous BGR image: ``(N, 15)`` float32 rows (box, 5 landmarks, score)."""
        with self._lock:
            self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
            _, found = self._yunet.detect(bgr)
        return np.empty((0, 15), np.float32) if found is None else np.asarray(found, np.float32).reshape(-1, 15)

    def _refined(self, frame: np.ndarray, face: Face, color_order: str) -> Face:
        """``face`` with its landmarks re-detected on an upright, fixed-scale crop and on that crop's
        mirror image, averaged and mapped back to the frame (box and score unchanged).  Keeps the
        first pass's landmarks when the crop shows no face near the expected place."""
        r, d = float(REFINE_SIZE), REFINE_EYE_DISTANCE
        canon = np.array([[r / 2 - d / 2, r / 2 - 0.35 * d], [r / 2 + d / 2, r / 2 - 0.35 * d], [r / 2, r / 2 + 0.65 * d]],
                         dtype=np.float32)
        try:
            m = similarity_transform(face.eyes_mouth(), canon)
        except ValueError:  # degenerate landmarks: nothing to refine from
            return face
        crop = cv2.warpAffine(np.ascontiguousarray(frame), m, (REFINE_SIZE, REFINE_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        if color_order == "rgb":
            crop = np.ascontiguousarray(crop[:, :, ::-1])
        estimates = []
        for mirrored in (False, True):
            image = np.ascontiguousarray(crop[:, ::-1]) if mirrored else crop
            rows = self._run(image)
            if not len(rows):
                continue
            lms = rows[:, 4:14].reshape(-1, 5, 2).copy()
            if mirrored:  # back to the unmirrored crop: x -> R-1-x, and the subject's sides swap
                lms[:, :, 0] = r - 1.0 - lms[:, :, 0]
                lms = lms[:, [1, 0, 2, 4, 3]]
            centres = np.stack([lms[:, 0], lms[:, 1], (lms[:, 3] + lms[:, 4]) / 2], axis=1).mean(axis=1)
            offset = np.linalg.norm(centres - canon.mean(axis=0), axis=1)
            best = int(np.argmin(offset))
            if offset[best] < 0.5 * d:  # the face we came for, not a neighbour in the crop
                estimates.append(lms[best])
        if not estimates:
            return face
        landmarks = map_points(cv2.invertAffineTransform(m), np.mean(estimates, axis=0)).astype(np.float32)
        return Face(face.box, face.score, landmarks)

    def largest(self, frame: np.ndarray, color_order: str = "rgb") -> Face | None:
        faces = self.detect(frame, color_order)
        return faces[0] if faces else None

    def __repr__(self) -> str:
        return f"FaceDetector({self.model_path.name}, score>={self.score_threshold}, max_side={self.max_side})"


# -- alignment -------------------------------------------------------------------------------------
def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``(2, 3)`` float64 matrix of the similarity (rotation, uniform scale, translation; no
    reflection, no shear) that maps the ``(N, 2)`` points ``src`` onto ``dst`` with the least
    squared error (N >= 2; exact for N == 2).

    Written with points as complex numbers ``z = x + iy``: a similarity is ``z -> a z + t`` with
    complex ``a``, and the least-squares ``a`` over centred points is ``sum(conj(s) d) / sum(|s|^2)``
    (the 2-D case of Umeyama's solution, where a reflection cannot arise).
    """
    s = np.asarray(src, dtype=np.float64)
    d = np.asarray(dst, dtype=np.float64)
    if s.shape != d.shape or s.ndim != 2 or s.shape[1] != 2 or s.shape[0] < 2:
        raise ValueError(f"similarity_transform needs two (N>=2, 2) point arrays, got {s.shape} and {d.shape}")
    zs = s[:, 0] + 1j * s[:, 1]
    zd = d[:, 0] + 1j * d[:, 1]
    ms, md = zs.mean(), zd.mean()
    zs, zd = zs - ms, zd - md
    norm = float(np.sum(np.abs(zs) ** 2))
    if norm <= 1e-12:
        raise ValueError("similarity_transform: the source points coincide")
    a = np.sum(np.conj(zs) * zd) / norm
    t = md - a * ms
    return np.array([[a.real, -a.imag, t.real], [a.imag, a.real, t.imag]], dtype=np.float64)


def template_points(template: FaceTemplate, size: int) -> np.ndarray:
    """``(3, 2)`` float32 pixel positions of the template's right eye, left eye and mouth centre
    in a ``size`` x ``size`` crop."""
    return template.points() * np.float32(size)


def align_face(
    frame: np.ndarray, face: Face, template: FaceTemplate, size: int, interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, np.ndarray]:
    """``(size, size, 3)`` crop in which ``face``'s eyes and mouth centre sit on ``template``, and
    the ``(2, 3)`` float64 frame-to-crop matrix.

    One ``cv2.warpAffine`` (border replicated) does the rotation, scaling and cropping, so the
    frame is resampled once.  The crop keeps ``frame``'s channel order.
    """
    matrix = similarity_transform(face.eyes_mouth(), template_points(template, size))
    crop = cv2.warpAffine(np.ascontiguousarray(frame), matrix, (size, size), flags=interpolation,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, matrix


def box_matrix(face: Face, size: int | None = None, margin: float = BOX_MARGIN) -> tuple[np.ndarray, int]:
    """The frame-to-crop matrix (translation and uniform scale) of :func:`crop_box`, and its side."""
    x, y, w, h = face.box
    side = max(w, h) * (1.0 + 2.0 * margin)
    out = int(size) if size is not None else max(1, int(round(side)))
    k = out / side
    cx, cy = x + w / 2.0, y + h / 2.0
    # pixel centres: crop pixel j covers frame [x0 + j/k, x0 + (j+1)/k), so its centre is at
    # x0 + (j + 0.5)/k - 0.5 in the frame's pixel-centre coordinates
    x0, y0 = cx - side / 2.0, cy - side / 2.0
    matrix = np.array([[k, 0.0, -k * (x0 - 0.5) - 0.5], [0.0, k, -k * (y0 - 0.5) - 0.5]], dtype=np.float64)
    return matrix, out


def crop_box(
    frame: np.ndarray, face: Face, size: int | None = None, margin: float = BOX_MARGIN,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """The plain square crop around ``face.box`` (``align=False``): side ``max(w, h) * (1 + 2 *
    margin)`` centred on the box, border replicated, resized to ``size`` x ``size`` (or kept at
    its own side when ``size`` is None).  No rotation: a tilted face stays tilted."""
    matrix, out = box_matrix(face, size, margin)
    return cv2.warpAffine(np.ascontiguousarray(frame), matrix, (out, out), flags=interpolation,
                          borderMode=cv2.BORDER_REPLICATE)


def map_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points through a ``(2, 3)`` affine matrix (e.g. frame landmarks into a crop)."""
    p = np.asarray(points, dtype=np.float64)
    return p @ np.asarray(matrix, dtype=np.float64)[:, :2].T + np.asarray(matrix, dtype=np.float64)[:, 2]
