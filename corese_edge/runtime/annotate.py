"""Drawing predictions onto frames (torch-free, OpenCV only), for ``predict --save/--show`` and apps.

::

    from corese_edge.runtime.annotate import draw_predictions

    preds = clf.predict(frame)                       # faces=True: one per face, with boxes
    out = draw_predictions(frame, preds)             # a copy: boxes, "Happiness 93%", optional landmarks

A prediction with a box gets its box and a label above it (below, when the box touches the top
edge); one without a box (``faces=False``) gets its label in the frame's top-left corner.  Colours
are fixed per class index, so a face keeps its colour while its label does not change.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

#: one RGB colour per class index (cycled past 10 classes): distinct at a glance, readable on faces
PALETTE = (
    (255, 196, 0), (0, 170, 255), (140, 200, 60), (255, 90, 90), (170, 120, 255),
    (255, 140, 0), (0, 200, 170), (230, 80, 200), (120, 120, 255), (200, 200, 200),
)
#: landmark colours: right eye, left eye, nose, right and left mouth corner
LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 255), (0, 255, 255))


def class_colour(index: int, color_order: str = "rgb") -> tuple[int, int, int]:
    r, g, b = PALETTE[index % len(PALETTE)]
    return (r, g, b) if color_order == "rgb" else (b, g, r)


def draw_predictions(
    frame: np.ndarray, predictions: Sequence, *, landmarks: bool = False, color_order: str = "rgb",
    copy: bool = True,
) -> np.ndarray:
    """``frame`` ((H, W, 3) uint8 in ``color_order``) with every prediction drawn on it.

    ``predictions``: :class:`~corese_edge.runtime.classifier.Prediction` objects (anything with
    ``label``, ``confidence``, ``index``, ``box`` (x, y, w, h in the frame's pixels, or None) and
    ``landmarks`` ((5, 2) or None)).  ``landmarks`` draws the 5 points.  Returns a new array unless
    ``copy=False``, which draws in place.
    """
    if not (isinstance(frame, np.ndarray) and frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8):
        raise ValueError(f"draw_predictions takes an (H, W, 3) uint8 frame, got {getattr(frame, 'shape', type(frame))}")
    out = np.ascontiguousarray(frame.copy() if copy else frame)
    height, width = out.shape[:2]
    scale = max(0.4, min(1.2, width / 900.0))
    thick = max(1, int(round(2 * scale)))
    corner_row = 0
    for pred in predictions:
        colour = class_colour(int(pred.index), color_order)
        text = f"{pred.label} {pred.confidence:.0%}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        if pred.box is None:
            x, y = 4, 4 + corner_row * (th + base + 6)
            corner_row += 1
            _label(out, text, (x, y), colour, scale, thick, (tw, th, base))
            continue
        bx, by, bw, bh = (int(round(v)) for v in pred.box)
        cv2.rectangle(out, (bx, by), (bx + bw, by + bh), colour, thick, cv2.LINE_8)  # crisp: AA blends a thin box into the face
        ty = by - th - base - 4 if by - th - base - 4 >= 0 else by + bh + 2
        _label(out, text, (max(0, min(bx, width - tw - 4)), max(0, min(ty, height - th - base - 4))), colour, scale,
               thick, (tw, th, base))
        if landmarks and pred.landmarks is not None:
            for k, (px, py) in enumerate(np.asarray(pred.landmarks, dtype=np.float32)):
                r, g, b = LANDMARK_COLOURS[k % len(LANDMARK_COLOURS)]
                cv2.circle(out, (int(round(px)), int(round(py))), max(2, thick + 1),
                           (r, g, b) if color_order == "rgb" else (b, g, r), -1, cv2.LINE_AA)
    return out


def _label(img: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int], scale: float,
           thick: int, size: tuple[int, int, int]) -> None:
    """``text`` in black on a filled ``colour`` box whose top-left corner is ``origin``."""
    tw, th, base = size
    x, y = origin
    cv2.rectangle(img, (x, y), (x + tw + 4, y + th + base + 4), colour, -1)
    cv2.putText(img, text, (x + 2, y + th + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
