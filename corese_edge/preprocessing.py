"""Preprocessing as data.

The checkpoint, the ONNX metadata and the TensorRT sidecar all carry one :class:`Preprocessing`
record; training's eval transform and the runtime's numpy preprocessing are both built from it and
never re-declare any of its numbers.  Torch-free.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

#: The seed's normalisation: mean = std = 0.5, so inputs lie in [-1, 1] (not ImageNet statistics).
SEED_MEAN = (0.5, 0.5, 0.5)
SEED_STD = (0.5, 0.5, 0.5)

INTERPOLATIONS = ("linear", "area", "cubic", "nearest")

FACE_TEMPLATE_SOURCES = ("default", "learned")


@dataclass(frozen=True)
class FaceTemplate:
    """Where a face's right eye, left eye and mouth centre sit in the model's input crop.

    Coordinates are fractions of the crop side, ``(x, y)`` with ``(0, 0)`` the top-left corner, in
    the loader's resize geometry (the whole training image resized to the input size).  "Right eye"
    is the subject's right eye, YuNet's first landmark, which appears on the image's left.  The
    mouth centre is the midpoint of the two mouth corners.  A fraction ``f`` is pixel ``f * size``
    of a ``size`` x ``size`` input, pixel ``i``'s centre at ``i`` (OpenCV's convention).
    ``source``: ``"learned"`` (per-coordinate medians of YuNet's landmarks over ``images``
    training images, :func:`corese_edge.data.face_template.learn_face_template`) or ``"default"``
    (:data:`DEFAULT_FACE_TEMPLATE`, for runs where detection failed or was turned off,
    ``import-seed`` and checkpoints older than templates).

    How the default was measured.  RAF-DB aligned its crops with a similarity transform from the
    two eyes and the mouth centre, then resized them to 100 x 100, and published no template.
    Until templates existed, the runtime framed faces like RAF-DB's crops with OpenCV's Haar box
    widened by 10 % of its side on every side (chosen by comparing crops with RAF-DB's), so the
    default reproduces that framing: ``skimage.data.astronaut()`` at 0.5, 0.75, 1, 1.25, 1.5 and
    2 times its size, each Haar box widened by 10 % and cropped, each crop resized to 100, 160
    and 224 px, and YuNet's landmarks on the 18 crops.  Medians: right eye (0.317, 0.405), left
    eye (0.696, 0.418), mouth centre (0.487, 0.750); interquartile ranges 0.02-0.04.  The
    astronaut's head is turned slightly and training flips images horizontally (p = 0.5), so the
    default is made left-right symmetric: the eyes at the measured mean height 0.411, 0.380
    apart, centred on 0.5, and the mouth at x = 0.5.  Rounded to 0.01: eyes (0.31, 0.41) and
    (0.69, 0.41), mouth (0.50, 0.75).
    """

    right_eye: tuple[float, float]
    left_eye: tuple[float, float]
    mouth: tuple[float, float]
    source: str = "default"
    images: int = 0

    def __post_init__(self) -> None:
        for name in ("right_eye", "left_eye", "mouth"):
            point = tuple(float(v) for v in getattr(self, name))
            if len(point) != 2 or not all(-1.0 <= v <= 2.0 for v in point):
                raise ValueError(f"face template {name} must be two fractions of the crop side, got {point}")
            object.__setattr__(self, name, point)
        if self.source not in FACE_TEMPLATE_SOURCES:
            raise ValueError(f"face template source must be one of {FACE_TEMPLATE_SOURCES}, got {self.source!r}")
        if self.right_eye[0] >= self.left_eye[0]:
            raise ValueError("face template: the right eye (the subject's right) must lie left of the left eye in the image")

    def points(self) -> "Any":
        """``(3, 2)`` float32 array: right eye, left eye, mouth centre, as fractions of the crop side."""
        import numpy as np

        return np.asarray([self.right_eye, self.left_eye, self.mouth], dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"right_eye": list(self.right_eye), "left_eye": list(self.left_eye), "mouth": list(self.mouth),
                "source": self.source, "images": int(self.images)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FaceTemplate":
        return cls(
            right_eye=tuple(d["right_eye"]),  # type: ignore[arg-type]
            left_eye=tuple(d["left_eye"]),  # type: ignore[arg-type]
            mouth=tuple(d["mouth"]),  # type: ignore[arg-type]
            source=str(d.get("source", "learned")),
            images=int(d.get("images", 0)),
        )


#: The documented default face template (how it was measured: :class:`FaceTemplate`): a RAF-DB-style
#: aligned crop, used wherever no template was learned from the training images.
DEFAULT_FACE_TEMPLATE = FaceTemplate(right_eye=(0.31, 0.41), left_eye=(0.69, 0.41), mouth=(0.50, 0.75), source="default")


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 image becomes the model's input.

    resize the whole image (no crop) to ``size`` x ``size`` with ``interpolation`` (OpenCV
    semantics), scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel, lay out as
    NCHW float32 in ``channel_order``.  ``face_template``: where aligned faces put their eyes and
    mouth in that input (:class:`FaceTemplate`), used by the runtime's face alignment.
    """

    size: int = 224
    mean: tuple[float, float, float] = SEED_MEAN
    std: tuple[float, float, float] = SEED_STD
    interpolation: str = "linear"
    channel_order: str = "rgb"
    layout: str = "nchw"
    face_template: FaceTemplate = DEFAULT_FACE_TEMPLATE

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        d["face_template"] = self.face_template.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocessing":
        return cls(
            size=int(d["size"]),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
            interpolation=str(d.get("interpolation", "linear")),
            channel_order=str(d.get("channel_order", "rgb")),
            layout=str(d.get("layout", "nchw")),
            face_template=FaceTemplate.from_dict(d["face_template"]) if d.get("face_template") else DEFAULT_FACE_TEMPLATE,
        )

    @classmethod
    def from_json(cls, text: str) -> "Preprocessing":
        return cls.from_dict(json.loads(text))

    @property
    def cv2_interpolation(self) -> int:
        import cv2

        return {
            "linear": cv2.INTER_LINEAR,
            "area": cv2.INTER_AREA,
            "cubic": cv2.INTER_CUBIC,
            "nearest": cv2.INTER_NEAREST,
        }[self.interpolation]
