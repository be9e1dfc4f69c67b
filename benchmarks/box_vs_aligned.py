"""What nvinfer's box crop costs against corese-edge's aligned crop (issue 14, DeepStream).

DeepStream's nvinfer classifies the detector's box, scaled to the network's size, and does not
align faces.  corese-edge's runtime warps each face onto the model's face template (``align=True``,
the default) or, with ``--no-align``, takes the same square box crop.  This script measures the
accuracy of both on the face-test images: every test image of a corese-edge dataset (the demo's
synthetic set by default), placed into a larger grey photo at a random position, scale and in-plane
rotation (``--max-rotation``, degrees), then found by YuNet, cropped both ways, and classified by the
same artifact.  A face YuNet misses counts as wrong in both rows.

    python benchmarks/box_vs_aligned.py --model corese-demo/export/model.int8.onnx --data corese-demo/data

Prints the machine, the accuracy of each crop at rotation 0 and at the random rotations, and the
difference in percentage points.  A trained model is needed (the demo's is enough).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from corese_edge.bench.machine import describe, machine_info
from corese_edge.runtime import ExpressionClassifier
from corese_edge.runtime.faces import FaceDetector


def test_images(data: Path, class_names: tuple[str, ...]) -> list[tuple[Path, int]]:
    """The test split as ``(path, index into the model's class names)``."""
    from corese_edge.data.layouts import load_index

    index = load_index(data)
    order = {name: i for i, name in enumerate(class_names)}
    return [(s.path, order[index.class_names[s.label]]) for s in index.split("test")]


def place(face: np.ndarray, rng: np.random.Generator, max_rotation: float, canvas: int = 480) -> np.ndarray:
    """``face`` (RGB) scaled to 120-220 px, rotated, at a random spot of a grey ``canvas`` square."""
    side = int(rng.uniform(120, 220))
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR)
    angle = float(rng.uniform(-max_rotation, max_rotation))
    cx, cy = rng.uniform(side, canvas - side, size=2)
    m = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    m[:, 2] += np.array([cx - side / 2, cy - side / 2])
    return cv2.warpAffine(face, m, (canvas, canvas), flags=cv2.INTER_LINEAR, borderValue=(128, 128, 128))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("corese-demo/export/model.int8.onnx"))
    ap.add_argument("--data", type=Path, default=Path("corese-demo/data"))
    ap.add_argument("--max-rotation", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(f"machine: {describe(machine_info())}")
    detector = FaceDetector()
    aligned = ExpressionClassifier.from_artifact(a.model, faces=True, align=True, face_detector=detector)
    boxed = ExpressionClassifier.from_artifact(a.model, faces=True, align=False, face_detector=detector)
    items = test_images(a.data, aligned.class_names)
    print(f"{len(items)} test images of {a.data}, model {a.model}")
    print(f"{'rotation':>10} {'found':>7} {'aligned':>9} {'box crop':>9} {'box - aligned':>14}")
    for rotation in (0.0, a.max_rotation):
        rng = np.random.default_rng(a.seed)
        found = right_aligned = right_box = 0
        for path, label in items:
            rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
            photo = place(np.ascontiguousarray(rgb), rng, rotation)
            pa, pb = aligned.predict(photo), boxed.predict(photo)
            if pa:
                found += 1
                right_aligned += pa[0].index == label
                right_box += pb[0].index == label
        n = len(items)
        acc_a, acc_b = 100 * right_aligned / n, 100 * right_box / n
        what = "0 deg" if rotation == 0 else f"+-{rotation:g} deg"
        print(f"{what:>10} {found:>4}/{n:<3} {acc_a:>8.2f}% {acc_b:>8.2f}% {acc_b - acc_a:>+13.2f} pp")


if __name__ == "__main__":
    main()
