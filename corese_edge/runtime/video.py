"""Video input: frames from a file or camera through ``cv2.VideoCapture`` (torch-free)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from corese_edge.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_video_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES


def read_frames(source: str | os.PathLike | int, every: int = 1, color_order: str = "rgb") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame index, (H, W, 3) uint8 frame)`` for every ``every``-th frame.

    ``source`` is a video file or a camera index.  Frames come in ``color_order`` (OpenCV decodes
    BGR; ``"rgb"`` converts).  A file OpenCV cannot open is a :class:`UserError` naming it.
    """
    if every < 1:
        raise UserError(f"every must be >= 1, got {every}")
    if not isinstance(source, int):
        p = Path(source)
        if not p.is_file():
            raise UserError(f"video not found: {p}")
        source_arg: str | int = str(p)
    else:
        source_arg = source
    cap = cv2.VideoCapture(source_arg)
    try:
        if not cap.isOpened():
            raise UserError(f"cannot open video {source}: OpenCV has no decoder for it, or it is not a video")
        index = 0
        yielded = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % every == 0:
                yield index, (cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if color_order == "rgb" else frame)
                yielded += 1
            index += 1
        if yielded == 0:
            raise UserError(f"{source}: no frames could be decoded (empty or corrupt video)")
    finally:
        cap.release()
