"""What ``corese-edge predict`` accepts: image files, folders of images, and video files.

:func:`collect_inputs` resolves the paths (anything else is a :class:`UserError` naming it) and
:func:`predict_inputs` runs an :class:`~corese_edge.runtime.classifier.ExpressionClassifier` over
them, yielding one plain dict per image or video frame.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from corese_edge.images import is_image_file
from corese_edge.errors import UserError
from corese_edge.runtime.video import is_video_file, read_frames

#: images per predict() call when walking folders (bounds memory, not the runner batch)
CHUNK = 64


@dataclass(frozen=True)
class InputItem:
    kind: str  # "image" | "video"
    path: Path


def collect_inputs(paths: Sequence[str | os.PathLike]) -> list[InputItem]:
    """Images, folders (their images, recursively, sorted) and videos, in the order given."""
    if not paths:
        raise UserError("no inputs: give image files, folders or a video file")
    items: list[InputItem] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
            if not found:
                raise UserError(f"{p}: folder holds no images ({', '.join(('.jpg', '.png', '...'))})")
            items += [InputItem("image", q) for q in found]
        elif p.is_file():
            if is_image_file(p):
                items.append(InputItem("image", p))
            elif is_video_file(p):
                items.append(InputItem("video", p))
            else:
                raise UserError(f"{p}: not an image or video file (suffix {p.suffix or 'none'!r})")
        elif p.exists():
            raise UserError(f"{p}: not a regular file or folder")
        else:
            raise UserError(f"input not found: {p}")
    return items


def predict_inputs(
    classifier: Any, items: Sequence[InputItem], every: int = 1, momentum: float = 0.6,
    no_face: list[dict[str, Any]] | None = None,
) -> Iterator[dict[str, Any]]:
    """One dict per image (``frame`` None) or per sampled video frame (EMA-smoothed); with face
    detection one per face instead (``face`` its rank, largest first).  Images and frames in
    which no face was found yield nothing and are appended to ``no_face`` as ``{"input", "frame"}``."""
    names = classifier.class_names
    images = [it.path for it in items if it.kind == "image"]
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        for path, preds in zip(chunk, classifier.predict_faces(chunk)):
            if not preds and no_face is not None:
                no_face.append({"input": str(path), "frame": None})
            for pred in preds:
                yield {"input": str(path), "frame": None, **pred.to_dict(names)}
    for it in items:
        if it.kind != "video":
            continue
        indexed = read_frames(it.path, every=every, color_order="rgb")
        indices: list[int] = []

        def frames() -> Iterator[Any]:
            for index, frame in indexed:
                indices.append(index)
                yield frame

        for preds in classifier.stream_faces(frames(), momentum=momentum, color_order="rgb"):
            if not preds and no_face is not None:
                no_face.append({"input": str(it.path), "frame": indices[-1]})
            for pred in preds:
                yield {"input": str(it.path), "frame": indices[-1], "track": pred.track, **pred.to_dict(names)}
