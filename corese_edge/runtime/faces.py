"""Face detection and cropping with OpenCV's Haar cascade (ships inside ``opencv-python-headless<5``).

CoRes-SE is trained on RAF-DB's *aligned* crops: square 100x100 images in which the face fills the
frame, the chin close to the bottom edge, the hairline close to the top and the ears at the sides.
OpenCV's frontal-face cascade returns a square box that runs from about the eyebrows' top to just
under the lower lip.  Widening that box by :data:`RAFDB_MARGIN` = 10 % of its side on every side
(a 1.2x square around the same centre) gives the RAF-DB framing; 0 % cuts the chin and forehead,
20 % or more adds shoulders and background the model never saw.  (Chosen by comparing crops of a
portrait against RAF-DB's aligned images; RAF-DB's own crops come from a landmark-based similarity
transform, which a box detector can only approximate.)  Where the widened box leaves the image the
border pixels are replicated, so the face stays centred.

The cascade is loaded lazily, on first use, from ``cv2.data.haarcascades``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from corese_edge.errors import MissingExtra

#: Extra border on each side of the Haar box, as a fraction of its side (see module doc).
RAFDB_MARGIN = 0.10
CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class Box:
    """A face box in pixels of the original image: top-left ``(x, y)``, width, height."""

    x: int
    y: int
    w: int
    h: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x, self.y, self.w, self.h)

    @property
    def area(self) -> int:
        return self.w * self.h


class FaceDetector:
    """Haar-cascade face detector; :meth:`largest` returns the biggest face or ``None``.

    ``min_size`` is the smallest face side in pixels.  Instances are safe to share between threads
    (detection is serialised by a lock, since ``CascadeClassifier`` is not thread-safe).
    """

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 30, margin: float = RAFDB_MARGIN) -> None:
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.margin = margin
        self._cascade = None
        self._lock = threading.Lock()

    @property
    def cascade(self) -> "cv2.CascadeClassifier":
        if self._cascade is None:
            data = getattr(cv2, "data", None)
            if data is None or not hasattr(cv2, "CascadeClassifier"):
                raise MissingExtra(
                    "this OpenCV build has no Haar cascades (opencv 5 dropped them): "
                    "pip install 'opencv-python-headless<5'"
                )
            cascade = cv2.CascadeClassifier(data.haarcascades + CASCADE)
            if cascade.empty():
                raise MissingExtra(f"OpenCV's {CASCADE} is missing: reinstall 'opencv-python-headless<5'")
            self._cascade = cascade
        return self._cascade

    def detect(self, frame: np.ndarray, color_order: str = "rgb") -> list[Box]:
        """All faces in an ``(H, W, 3)`` uint8 frame, largest first."""
        code = cv2.COLOR_RGB2GRAY if color_order == "rgb" else cv2.COLOR_BGR2GRAY
        gray = cv2.cvtColor(np.ascontiguousarray(frame), code)
        with self._lock:
            found = self.cascade.detectMultiScale(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(self.min_size, self.min_size),
            )
        boxes = [Box(int(x), int(y), int(w), int(h)) for (x, y, w, h) in np.asarray(found).reshape(-1, 4)]
        return sorted(boxes, key=lambda b: b.area, reverse=True)

    def largest(self, frame: np.ndarray, color_order: str = "rgb") -> Box | None:
        boxes = self.detect(frame, color_order)
        return boxes[0] if boxes else None

    def crop(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """The square RAF-DB-style crop around ``box`` (see module doc), border-replicated."""
        return crop_face(frame, box, self.margin)


def crop_face(frame: np.ndarray, box: Box, margin: float = RAFDB_MARGIN) -> np.ndarray:
    """Square crop of side ``max(w, h) * (1 + 2 * margin)`` centred on ``box``."""
    side = int(round(max(box.w, box.h) * (1.0 + 2.0 * margin)))
    cx, cy = box.x + box.w / 2.0, box.y + box.h / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    x1, y1 = x0 + side, y0 + side
    h, w = frame.shape[:2]
    pad_l, pad_t = max(0, -x0), max(0, -y0)
    pad_r, pad_b = max(0, x1 - w), max(0, y1 - h)
    if pad_l or pad_t or pad_r or pad_b:
        frame = cv2.copyMakeBorder(np.ascontiguousarray(frame), pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad_l, y0 + pad_t, x1 + pad_l, y1 + pad_t
    return np.ascontiguousarray(frame[y0:y1, x0:x1])
