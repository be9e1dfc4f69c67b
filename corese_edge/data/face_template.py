"""Learn the face template of a training set: where its images put the eyes and the mouth.

The runtime aligns each detected face to a :class:`~corese_edge.preprocessing.FaceTemplate` before
classifying it, so the crop it feeds the model should look like the training images did.  This
module measures that framing on the training data itself: YuNet's landmarks on a seeded sample
of training images, the per-coordinate median of the right eye, the left eye and the mouth centre
(the midpoint of the two mouth corners), as fractions of the model's input.

Geometry.  The training loader resizes the *whole* image to the input size (no crop; see
:mod:`corese_edge.data.transforms`), so a landmark's position as a fraction of the image's width
and height is its position in the model's input.  Detection runs on the image at its own aspect
ratio (YuNet was trained on undistorted photos); images whose longer side is below
:data:`DETECT_MIN_SIDE` are first upscaled to it, uniformly.  The landmarks are mapped back with
OpenCV's pixel-centre convention and expressed in the convention of
:func:`corese_edge.runtime.faces.align_face`: template fraction ``f`` is pixel ``f * size`` of a
``size`` x ``size`` input.

Torch-free: numpy and OpenCV only; the detector is passed in (any object with
``detect(rgb_frame, color_order="rgb") -> [face]``, each face having ``box = (x, y, w, h)`` and
``eyes_mouth() -> (3, 2)`` pixel coordinates, as :class:`corese_edge.runtime.faces.FaceDetector`).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from corese_edge.errors import DataError
from corese_edge.preprocessing import DEFAULT_FACE_TEMPLATE, FaceTemplate

#: Images whose longer side is shorter are upscaled (bilinear) to this side before detection, so
#: that YuNet finds the face at all; larger ones are detected at their own size (the detector
#: downscales beyond its ``max_side``).  Measured with the runtime's detector (landmarks refined on
#: an upright, fixed-scale crop) on 30 similarity-transformed crops of ``skimage.data.astronaut()``
#: per size, each face filling its crop: at 32 px it found 13 of 30 faces, upscaled to 64 px all
#: 30; at 48 and 64 px all 30 natively.  Where the face is found the scale hardly matters: the
#: median landmark offset from the truth (the full-resolution photo's landmarks mapped through
#: each known transform) stays at 0.4-0.7 px at the crop's own size whether it is detected
#: natively or upscaled to 100 or 160 px, and at 100 px (RAF-DB's size) native detection was the
#: closest (0.55 px, against 1.2-1.5 px upscaled to 128-224 px), so nothing larger is upscaled.
DETECT_MIN_SIDE = 64

#: The three template points, in :meth:`FaceTemplate.points` order.
POINTS = ("right_eye", "left_eye", "mouth")


def _sample_paths(image_paths: Iterable[str | os.PathLike], sample: int, seed: int) -> tuple[list[Path], int]:
    """A seeded sample of the unique paths (sorted first, so the order the caller lists them in
    does not matter), and how many unique paths there were."""
    paths = sorted({Path(p) for p in image_paths}, key=str)
    if len(paths) <= sample:
        return paths, len(paths)
    pick = np.random.default_rng(seed).choice(len(paths), size=sample, replace=False)
    return [paths[i] for i in sorted(pick.tolist())], len(paths)


def detection_frame(rgb: np.ndarray, min_side: int = DETECT_MIN_SIDE) -> np.ndarray:
    """``rgb`` uniformly upscaled so that its longer side is at least ``min_side`` (bilinear);
    unchanged when it already is."""
    h, w = rgb.shape[:2]
    if max(h, w) >= min_side:
        return rgb
    k = min_side / max(h, w)
    return cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_LINEAR)


def landmark_fractions(points: np.ndarray, width: int, height: int, size: int | None) -> np.ndarray:
    """``(N, 2)`` pixel coordinates of an image ``width`` x ``height`` -> template fractions.

    OpenCV puts pixel ``i``'s centre at ``i``, so a point ``x`` lies at ``(x + 0.5) / width`` of
    the image's extent, whatever it is resized to.  In the ``size`` x ``size`` input the loader
    makes, that is pixel ``(x + 0.5) / width * size - 0.5``, i.e. fraction
    ``(x + 0.5) / width - 0.5 / size`` in :func:`~corese_edge.runtime.faces.align_face`'s
    convention (pixel = fraction * size).  ``size=None`` returns the extent fractions.
    """
    p = np.asarray(points, dtype=np.float64)
    u = (p + 0.5) / np.array([width, height], dtype=np.float64)
    return u - 0.5 / size if size else u


def learn_face_template(
    image_paths: Iterable[str | os.PathLike],
    detector: Any,
    *,
    sample: int = 300,
    seed: int = 0,
    min_found: float = 0.5,
    progress: bool = True,
    size: int | None = None,
    min_side: int = DETECT_MIN_SIDE,
) -> tuple[FaceTemplate, dict[str, Any]]:
    """The face template of a set of training images, and how it was obtained.

    Runs ``detector`` on a seeded sample of ``sample`` images (all of them when there are fewer;
    the same paths, ``sample`` and ``seed`` always give the same sample), keeps the largest face
    of each image, and returns the per-coordinate median of the right eye, left eye and mouth
    centre as a ``FaceTemplate(source="learned", images=<faces used>)``.  ``size``: the model's
    input side, so the fractions are exact in the loader's resized input (see
    :func:`landmark_fractions`).

    Falls back to :data:`~corese_edge.preprocessing.DEFAULT_FACE_TEMPLATE` when faces are found on
    fewer than ``min_found`` of the images tried (or the medians are not a plausible template);
    ``stats["reason"]`` then says why.  Unreadable images count as tried without a face.

    ``stats`` (JSON-safe; plain Python numbers, so a checkpoint can carry it): ``source``,
    ``reason`` (``None`` when learned), ``images`` (tried), ``found``, ``unreadable``,
    ``available`` (unique paths given), ``sample``, ``seed``, ``min_found``, ``size``,
    ``detect_min_side``, ``median`` and ``spread`` (the interquartile range of each point's
    ``[x, y]`` over the faces found, as fractions; ``None`` without faces), ``template``
    (:meth:`FaceTemplate.to_dict` of the result) and ``seconds``.
    """
    if sample < 1:
        raise ValueError(f"face template sample must be >= 1 image, got {sample}")
    if not 0.0 <= min_found <= 1.0:
        raise ValueError(f"face template min_found must be a fraction in [0, 1], got {min_found}")
    from corese_edge.images import read_rgb

    t0 = time.perf_counter()
    paths, available = _sample_paths(image_paths, sample, seed)
    found: list[np.ndarray] = []
    unreadable = 0
    it: Iterable[Path] = paths
    if progress and paths:
        from tqdm.auto import tqdm

        it = tqdm(paths, desc="face template", unit="img", leave=False)
    for path in it:
        try:
            rgb = read_rgb(path)
        except DataError:
            unreadable += 1
            continue
        frame = detection_frame(rgb, min_side)
        faces = detector.detect(frame, color_order="rgb")
        if not faces:
            continue
        face = max(faces, key=lambda f: float(f.box[2]) * float(f.box[3]))
        found.append(landmark_fractions(face.eyes_mouth(), frame.shape[1], frame.shape[0], size))

    tried = len(paths)
    stats: dict[str, Any] = {
        "source": "default", "reason": None, "images": tried, "found": len(found), "unreadable": unreadable,
        "available": available, "sample": int(sample), "seed": int(seed), "min_found": float(min_found),
        "size": int(size) if size else None, "detect_min_side": int(min_side), "median": None, "spread": None,
    }
    template = DEFAULT_FACE_TEMPLATE
    if found:
        pts = np.stack(found)  # (faces, 3, 2)
        median = np.median(pts, axis=0)
        q1, q3 = np.percentile(pts, [25, 75], axis=0)
        stats["median"] = {n: [round(float(v), 4) for v in median[i]] for i, n in enumerate(POINTS)}
        stats["spread"] = {n: [round(float(v), 4) for v in (q3 - q1)[i]] for i, n in enumerate(POINTS)}
    if tried == 0:
        stats["reason"] = "no training images to detect faces on"
    elif len(found) < min_found * tried:
        stats["reason"] = (f"faces found on {len(found)} of {tried} images ({len(found) / tried:.0%}), "
                           f"fewer than the {min_found:.0%} required")
    else:
        try:
            template = FaceTemplate(
                right_eye=tuple(round(float(v), 4) for v in median[0]),  # type: ignore[arg-type]
                left_eye=tuple(round(float(v), 4) for v in median[1]),  # type: ignore[arg-type]
                mouth=tuple(round(float(v), 4) for v in median[2]),  # type: ignore[arg-type]
                source="learned", images=len(found),
            )
            stats["source"] = "learned"
        except ValueError as exc:  # e.g. mostly mirrored or upside-down detections
            stats["reason"] = f"the median landmarks are not a usable template ({exc})"
    stats["template"] = template.to_dict()
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return template, stats


def describe_template(template: FaceTemplate, stats: dict[str, Any] | None = None) -> str:
    """One line: the template's points and where it came from (for logs and the CLI)."""
    pts = ", ".join(f"{n.replace('_', ' ')} ({x:.3f}, {y:.3f})"
                    for n, (x, y) in zip(POINTS, (template.right_eye, template.left_eye, template.mouth)))
    if template.source == "learned":
        tried = f" of {stats['images']}" if stats and stats.get("images") is not None else ""
        return f"face template learned from {template.images}{tried} images: {pts}"
    why = f" because {stats['reason']}" if stats and stats.get("reason") else ""
    return f"face template: the default{why}: {pts}"
