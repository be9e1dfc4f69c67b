"""Video: per-face EMA tracks in ExpressionClassifier.stream(), and frames through cv2.VideoCapture."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from corese_edge.errors import UserError
from corese_edge.runtime import ExpressionClassifier
from corese_edge.runtime.faces import align_face
from corese_edge.runtime.video import read_frames
from tests.runtime.test_faces_align import astronaut, detector  # noqa: F401  (session fixtures)


def two_heads(astronaut: np.ndarray, tint: float, right: bool = True) -> np.ndarray:  # noqa: F811
    """A 640x360 frame: the astronaut's head on the left, unchanged, and (if ``right``) a copy on
    the right whose colours are pulled towards blue by ``tint`` (so its class scores change)."""
    head = astronaut[20:260, 110:350]
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[60:300, 20:260] = head
    if right:
        blue = np.zeros_like(head)
        blue[..., 2] = 255
        frame[60:300, 380:620] = cv2.addWeighted(head, 1.0 - tint, blue, tint, 0.0)
    return frame


def _expected_ema(qs: list[np.ndarray], momentum: float) -> np.ndarray:
    p = qs[0].astype(np.float64)
    for q in qs[1:]:
        p = momentum * p + (1.0 - momentum) * q
    return p


def test_stream_keeps_a_separate_ema_per_face(tiny_onnx, astronaut, detector):  # noqa: F811
    tints = [0.0, 0.5, 0.1, 0.6, 0.2]
    frames = [two_heads(astronaut, t) for t in tints]
    momentum = 0.5
    with ExpressionClassifier.from_artifact(tiny_onnx, faces=True, face_detector=detector) as clf:
        per_frame = list(clf.stream_faces(frames, momentum=momentum))
        flat = list(clf.stream(frames[:2], momentum=momentum))
        # each face's own per-frame scores, from the plain classifier on the same aligned crops
        own: dict[str, list[np.ndarray]] = {"left": [], "right": []}
        for frame in frames:
            for face in detector.detect(frame):
                crop, _ = align_face(frame, face, clf.preprocessing.face_template, clf.preprocessing.size)
                side = "left" if face.box[0] < 320 else "right"
                own[side].append(_plain_probs(clf, crop))
    assert all(len(preds) == 2 for preds in per_frame)
    assert [p.image for p in flat] == [0, 0, 1, 1]  # stream() is stream_faces() flattened
    np.testing.assert_array_equal([p.probs for p in flat], [p.probs for preds in per_frame[:2] for p in preds])
    ids: dict[str, set] = {"left": set(), "right": set()}
    for preds in per_frame:
        for p in preds:
            ids["left" if p.box[0] < 320 else "right"].add(p.track)
    assert len(ids["left"]) == 1 and len(ids["right"]) == 1 and ids["left"] != ids["right"]
    # the right face's scores really change from frame to frame, so a shared EMA would show
    assert max(np.abs(q - own["right"][0]).max() for q in own["right"]) > 1e-3
    for t in range(len(frames)):
        for p in per_frame[t]:
            side = "left" if p.box[0] < 320 else "right"
            np.testing.assert_allclose(p.probs, _expected_ema(own[side][: t + 1], momentum), atol=1e-5)
            assert p.label == clf.class_names[int(np.argmax(p.probs))]


def _plain_probs(clf: ExpressionClassifier, crop: np.ndarray) -> np.ndarray:
    """Softmax of the model on one crop already at the input size (no face detection)."""
    from corese_edge.runtime.classifier import softmax

    return softmax(clf.logits(crop))[0]


@pytest.mark.parametrize("max_missed, same_track", [(0, False), (3, True)])
def test_a_face_missing_for_longer_than_max_missed_starts_a_new_track(tiny_onnx, astronaut, detector, max_missed, same_track):  # noqa: F811
    frames = [two_heads(astronaut, 0.0), two_heads(astronaut, 0.3), two_heads(astronaut, 0.0, right=False),
              two_heads(astronaut, 0.3)]
    with ExpressionClassifier.from_artifact(tiny_onnx, faces=True, face_detector=detector) as clf:
        per_frame = list(clf.stream_faces(frames, momentum=0.5, max_missed=max_missed))
    assert [len(p) for p in per_frame] == [2, 2, 1, 2]
    right = [p.track for preds in per_frame for p in preds if p.box[0] > 320]
    assert len(right) == 3 and right[0] == right[1]
    assert (right[2] == right[0]) is same_track
    left = {p.track for preds in per_frame for p in preds if p.box[0] < 320}
    assert len(left) == 1 and left.isdisjoint(right)


def test_stream_without_faces_is_one_track_per_frame(tiny_onnx, astronaut):  # noqa: F811
    with ExpressionClassifier.from_artifact(tiny_onnx) as clf:
        preds = list(clf.stream([astronaut, astronaut[::-1].copy()], momentum=0.5))
        with pytest.raises(UserError, match="max_missed"):
            list(clf.stream([astronaut], max_missed=-1))
    assert [p.image for p in preds] == [0, 1] and {p.track for p in preds} == {0} and preds[0].box is None


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
