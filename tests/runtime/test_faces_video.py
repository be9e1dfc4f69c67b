"""Haar-cascade face cropping on a real portrait, and video input through cv2.VideoCapture."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from corese_edge.errors import UserError
from corese_edge.runtime import ExpressionClassifier
from corese_edge.runtime.faces import RAFDB_MARGIN, Box, FaceDetector, crop_face
from corese_edge.runtime.video import read_frames


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """Grace Hopper's portrait, which matplotlib ships as sample data (RGB uint8)."""
    mpl = pytest.importorskip("matplotlib")
    path = Path(mpl.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip("matplotlib sample data not installed")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_detects_the_face_and_crops_a_centred_square(portrait):
    det = FaceDetector()
    box = det.largest(portrait)
    assert box is not None
    h, w = portrait.shape[:2]
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    assert 0.3 * w < cx < 0.7 * w and 0.2 * h < cy < 0.6 * h  # her face is in the upper middle
    crop = det.crop(portrait, box)
    side = round(max(box.w, box.h) * (1 + 2 * RAFDB_MARGIN))
    assert crop.shape == (side, side, 3)
    assert det.largest(portrait[:, :, ::-1].copy(), color_order="bgr") == box


def test_no_face_in_noise():
    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    assert FaceDetector().largest(noise) is None


def test_crop_pads_with_replicated_border_at_the_edges():
    frame = np.arange(20 * 20 * 3, dtype=np.uint8).reshape(20, 20, 3)
    crop = crop_face(frame, Box(0, 0, 10, 10), margin=0.5)  # 20 px square centred on (5, 5)
    assert crop.shape == (20, 20, 3)
    np.testing.assert_array_equal(crop[5:, 5:], frame[:15, :15])
    np.testing.assert_array_equal(crop[0, 0], frame[0, 0])  # replicated corner


def test_classifier_with_faces_reports_the_box(tiny_onnx, portrait):
    noise = np.random.default_rng(1).integers(0, 256, (80, 80, 3), dtype=np.uint8)
    with ExpressionClassifier.from_artifact(tiny_onnx, faces=True) as clf:
        with_face, without = clf.predict([portrait, noise])
        det = clf.face_detector
        crop = det.crop(portrait, det.largest(portrait))
    with ExpressionClassifier.from_artifact(tiny_onnx) as plain:
        whole = plain.predict(noise)[0]
        expected = plain.predict(crop)[0]
    assert with_face.box is not None and len(with_face.box) == 4
    np.testing.assert_allclose(with_face.probs, expected.probs, atol=1e-6)  # classified the crop
    assert without.box is None
    np.testing.assert_allclose(without.probs, whole.probs, atol=1e-6)  # no face: the whole image


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def test_read_frames_every_nth(tmp_path):
    frames = [np.full((32, 32, 3), 20 * i, np.uint8) for i in range(7)]
    video = write_video(tmp_path / "clip.avi", frames)
    got = list(read_frames(video, every=3))
    assert [i for i, _ in got] == [0, 3, 6]
    for i, f in got:
        assert abs(float(f.mean()) - 20 * i) < 3  # MJPG is lossy, but a flat frame stays flat
    with pytest.raises(UserError, match="video not found"):
        list(read_frames(tmp_path / "none.avi"))
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF....not a video")
    with pytest.raises(UserError, match="broken.avi"):
        list(read_frames(broken))
