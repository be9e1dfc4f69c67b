"""Video in, pictures out, on real encoded video: a clip of the astronaut portrait moving and
rotating, written with cv2.VideoWriter (MJPG), read back through the CLI and the library.

Checked: the annotated video's frame count, size and fps; that boxes are drawn where
``predict --json`` says the faces are; the timeline JSON's length and track ids; that a crash
mid-write leaves no file under the final name; that a network stream that drops is reopened a
bounded number of times (a real HTTP server on loopback, read by OpenCV's FFmpeg backend); and
that a corrupt video, a missing camera, an unreachable URL and --show without a display each give
one line.
"""
from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from corese_edge.cli import cli as main
from corese_edge.errors import UserError
from corese_edge.runtime import ExpressionClassifier
from corese_edge.runtime.annotate import class_colour, draw_predictions
from corese_edge.runtime.classifier import Prediction
from corese_edge.runtime.video import VideoSink, VideoSource, parse_source
from tests.runtime.test_faces_align import astronaut, detector  # noqa: F401  (session fixtures)

FPS = 12.0
SIZE = (400, 300)  # width, height
FRAMES = 24


def moving_portrait(astronaut: np.ndarray, n: int = FRAMES) -> list[np.ndarray]:  # noqa: F811
    """``n`` RGB frames: the head drifts left to right and rotates between -12 and +12 degrees."""
    head = cv2.resize(astronaut[10:290, 90:370], (200, 200), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        t = i / max(1, n - 1)
        angle = -12.0 + 24.0 * t
        canvas = np.full((SIZE[1], SIZE[0], 3), 80, np.uint8)
        x, y = int(20 + 160 * t), 50
        canvas[y:y + 200, x:x + 200] = head
        m = cv2.getRotationMatrix2D((x + 100.0, y + 100.0), angle, 1.0)
        frames.append(cv2.warpAffine(canvas, m, SIZE, borderMode=cv2.BORDER_REPLICATE))
    return frames


@pytest.fixture(scope="module")
def clip(astronaut, tmp_path_factory) -> Path:  # noqa: F811
    path = tmp_path_factory.mktemp("clip") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened()
    for frame in moving_portrait(astronaut):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _read_all(path: Path) -> tuple[list[np.ndarray], float, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    fps, size = cap.get(cv2.CAP_PROP_FPS), (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, fps, size


def _border_mask(box, shape, width: int = 2) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in box)
    mask = np.zeros(shape[:2], bool)
    mask[max(0, y - width):y + width + 1, x:x + w] = True  # the top edge
    mask[max(0, y + h - width):y + h + width + 1, x:x + w] = True  # the bottom edge
    mask[y:y + h, max(0, x - width):x + width + 1] = True
    mask[y:y + h, max(0, x + w - width):x + w + width + 1] = True
    return mask


def test_save_and_timeline_on_a_real_clip(tiny_onnx, clip, tmp_path):
    out, timeline = tmp_path / "out.mp4", tmp_path / "t.png"
    res = CliRunner().invoke(main, ["predict", str(clip), "--model", str(tiny_onnx), "--faces", "--json",
                                    "--save", str(out), "--timeline", str(timeline), "--landmarks"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    rows = doc["predictions"]
    source, _, _ = _read_all(clip)
    saved, fps, size = _read_all(out)
    assert len(saved) == len(source) == FRAMES and size == SIZE and fps == pytest.approx(FPS)
    assert {r["frame"] for r in rows} == set(range(FRAMES)), "YuNet should find the head in every frame"
    # every box in the JSON is drawn there, in its class colour: its border changed, the far corner did not
    for row in rows[::5]:
        frame, drawn = source[row["frame"]].astype(np.int16), saved[row["frame"]].astype(np.int16)
        border = _border_mask(row["box"], frame.shape)
        changed = np.abs(drawn - frame).sum(axis=2)
        assert changed[border].mean() > 60, row
        colour = np.asarray(class_colour(row["index"]), np.int16)
        assert np.abs(drawn[border] - colour).sum(axis=1).mean() < np.abs(frame[border] - colour).sum(axis=1).mean()
        assert changed[-30:, :30].mean() < 12  # far from the face: only codec noise
    # the timeline: its JSON has one entry per classified face, under the tracks the rows name
    data = json.loads(timeline.with_suffix(".json").read_text())
    assert data["schema"] == "corese-edge/timeline/1" and data["frames"] == FRAMES and data["fps"] == pytest.approx(FPS)
    assert sorted(t["track"] for t in data["tracks"]) == sorted({r["track"] for r in rows})
    assert sum(len(t["frames"]) for t in data["tracks"]) == len(rows)
    for t in data["tracks"]:
        assert len(t["frames"]) == len(t["time_s"]) == len(t["probs"]) == len(t["labels"])
        assert all(len(p) == len(doc["class_names"]) for p in t["probs"])
    png = cv2.imread(str(timeline))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 500
    assert f"wrote {out}" in res.stderr


def test_annotate_draws_every_frame_and_classifies_every_nth(tiny_onnx, astronaut, detector):  # noqa: F811
    frames = moving_portrait(astronaut, 7)
    with ExpressionClassifier.from_artifact(tiny_onnx, faces=True, face_detector=detector) as clf:
        shown = list(clf.annotate(frames, every=3))
        streamed = list(clf.stream_faces(frames[::3]))
    assert [a.index for a in shown] == list(range(7))
    assert [a.processed for a in shown] == [True, False, False, True, False, False, True]
    assert shown[1].predictions is shown[0].predictions  # skipped frames carry the latest predictions
    for a, preds in zip(shown[::3], streamed):  # the same EMA tracks as stream_faces on those frames
        np.testing.assert_allclose([p.probs for p in a.predictions], [p.probs for p in preds], atol=1e-6)
    assert all(not np.array_equal(a.image, a.frame) for a in shown)


def test_draw_predictions_puts_the_box_in_its_class_colour():
    frame = np.full((120, 160, 3), 40, np.uint8)
    pred = Prediction("Happiness", 3, np.eye(7, dtype=np.float32)[3], box=(30.0, 40.0, 60.0, 50.0),
                      landmarks=np.array([[50, 60], [70, 60], [60, 70], [52, 80], [68, 80]], np.float32))
    out = draw_predictions(frame, [pred], landmarks=True)
    assert np.array_equal(frame, np.full_like(frame, 40))  # the input is untouched
    assert tuple(out[65, 30]) == class_colour(3)  # on the left edge
    assert tuple(out[65, 60 + 30]) == class_colour(3)  # on the right edge
    assert tuple(out[60, 50]) != (40, 40, 40)  # a landmark
    assert tuple(out[110, 150]) == (40, 40, 40)
    bgr = draw_predictions(frame, [pred], color_order="bgr")
    assert tuple(bgr[65, 30]) == class_colour(3)[::-1]
    whole = draw_predictions(frame, [Prediction("Fear", 1, np.eye(7, dtype=np.float32)[1])])
    assert tuple(whole[6, 6]) == class_colour(1)  # no box: the label sits in the corner


def test_a_crash_mid_write_leaves_no_file_under_the_final_name(tiny_onnx, clip, tmp_path, monkeypatch):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"the previous file")
    calls = {"n": 0}
    real = VideoSink.write

    def write_then_fail(self, frame):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk gone")
        real(self, frame)

    monkeypatch.setattr(VideoSink, "write", write_then_fail)
    res = CliRunner().invoke(main, ["predict", str(clip), "--model", str(tiny_onnx), "--save", str(out)])
    assert isinstance(res.exception, RuntimeError)
    assert out.read_bytes() == b"the previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]  # no temporary left behind


class _FlakyServer(http.server.ThreadingHTTPServer):
    """Serves one file over HTTP on loopback; ``cut`` bytes: every response stops there (the
    stream 'drops'); None: the whole file.  ``requests`` counts GETs."""

    daemon_threads = True

    def __init__(self, payload: bytes, cut: int | None) -> None:
        self.payload, self.cut, self.requests = payload, cut, 0
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        srv: _FlakyServer = self.server  # type: ignore[assignment]
        srv.requests += 1
        body = srv.payload if srv.cut is None else srv.payload[:srv.cut]
        self.send_response(200)
        self.send_header("Content-Type", "video/x-msvideo")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    servers = []

    def start(payload: bytes, cut: int | None = None) -> tuple[_FlakyServer, str]:
        srv = _FlakyServer(payload, cut)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_address[1]}/clip.avi"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_a_stream_read_to_its_stated_end_is_not_reconnected(clip, serve):
    srv, url = serve(clip.read_bytes())
    source = VideoSource(url, reconnects=2, reconnect_delay_s=0.05, timeout_s=5)
    frames = list(source)
    assert len(frames) == FRAMES and source.ended is None and srv.requests == 1
    assert source.kind == "stream" and source.size == SIZE


def test_a_dropping_stream_is_reopened_a_bounded_number_of_times_then_ends_with_one_line(clip, serve, tiny_onnx):
    payload = clip.read_bytes()
    srv, url = serve(payload, cut=len(payload) // 5)  # every connection delivers about a fifth of the clip
    source = VideoSource(url, reconnects=2, reconnect_delay_s=0.05, timeout_s=5)
    frames = list(source)
    assert srv.requests == 3  # the first connection and two reconnects, then it gives up
    assert FRAMES // 5 < len(frames) < FRAMES and source.reconnected == 2
    assert source.ended is not None and "gave up after 2 reconnect" in source.ended
    res = _cli("predict", url, "--model", str(tiny_onnx), "--reconnects", "1")
    assert res.returncode == 0, res.stderr
    [line] = res.stderr.strip().splitlines()  # no FFmpeg chatter, one line of ours
    assert line.startswith(f"stream {url} dropped after") and "gave up after 1 reconnect" in line


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "corese_edge", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("source, message", [
    ("broken.avi", "broken.avi"),
    ("9", "camera 9 is not available"),
    ("rtsp://127.0.0.1:9/live", "cannot open stream rtsp://127.0.0.1:9/live"),
    ("http://127.0.0.1:9/clip.mp4", "cannot open stream http://127.0.0.1:9/clip.mp4"),
])
def test_bad_sources_give_one_line(tiny_onnx, tmp_path, source, message):
    if source == "broken.avi":
        (tmp_path / source).write_bytes(b"RIFF....not a video")
        source = str(tmp_path / source)
    res = _cli("predict", source, "--model", str(tiny_onnx))
    assert "Traceback" not in res.stderr and res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr


def test_show_without_a_display_says_why(tiny_onnx, clip, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    res = CliRunner().invoke(main, ["predict", str(clip), "--model", str(tiny_onnx), "--show"])
    assert res.exit_code != 0 and "--show needs a display" in res.output


def test_save_needs_exactly_one_video(tiny_onnx, clip, tmp_path):
    res = CliRunner().invoke(main, ["predict", str(clip), str(clip), "--model", str(tiny_onnx), "--save",
                                    str(tmp_path / "o.mp4")])
    assert res.exit_code != 0 and "exactly one video" in res.output
    assert not (tmp_path / "o.mp4").exists()


def test_parse_source():
    assert parse_source(0) == ("camera", 0)
    assert parse_source("2") == ("camera", 2)
    assert parse_source("RTSP://cam/x") == ("stream", "RTSP://cam/x")
    assert parse_source("https://cam/x.mjpg") == ("stream", "https://cam/x.mjpg")
    assert parse_source("clip.mp4") == ("file", "clip.mp4")
    with pytest.raises(UserError):
        parse_source(True)
