"""Video in and out (torch-free): files, cameras and network streams through ``cv2.VideoCapture``,
and an atomic annotated-video writer.

Sources (:func:`parse_source` tells them apart):

* a video file (``clip.mp4``);
* a camera index (``0``, or the int ``0``);
* a network stream, ``rtsp://``, ``rtsps://``, ``http://`` or ``https://``, read through OpenCV's
  FFmpeg backend with open and read timeouts.

A network stream that stops delivering frames is reopened up to ``reconnects`` times (one second
apart by default); after that the iteration ends and :attr:`VideoSource.ended` says why in one
line.  A stream whose container states a frame count (a file served over HTTP) ends normally once
that many frames have arrived.  A file that cannot be decoded, a camera that is not there and a
URL that does not answer are each one :class:`~corese_edge.errors.UserError` line.

OpenCV and FFmpeg print their own warnings straight to the process's stderr when a camera or URL
fails to open ("can't open camera by index", "Connection refused"); :class:`VideoSource` silences
file descriptor 2 around those calls (``quiet=True``) so that the user sees only our line.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import cv2
import numpy as np

from corese_edge.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
#: FourCC per output container: mp4v plays in browsers' and OS players' MPEG-4 Part 2 decoders
#: and needs no external codec in OpenCV's wheels; MJPG for AVI.
WRITER_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}
#: fps written when a source does not state one (most webcams and many RTSP servers)
FALLBACK_FPS = 25.0


def is_video_file(path: str | os.PathLike) -> bool:
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in VIDEO_SUFFIXES


def is_stream_url(text: str | os.PathLike | int) -> bool:
    return isinstance(text, str) and text.lower().startswith(STREAM_SCHEMES)


def parse_source(source: str | os.PathLike | int) -> tuple[str, str | int]:
    """``(kind, value)``: ``("camera", 0)``, ``("stream", "rtsp://...")`` or ``("file", "clip.mp4")``.

    A string of digits is a camera index unless a file of that name exists.
    """
    if isinstance(source, bool):
        raise UserError(f"not a video source: {source!r}")
    if isinstance(source, int):
        return "camera", source
    text = os.fspath(source)
    if is_stream_url(text):
        return "stream", text
    if text.isdigit() and not Path(text).exists():
        return "camera", int(text)
    return "file", text


@contextlib.contextmanager
def _quiet_stderr(enabled: bool = True) -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration (native libraries' own warnings)."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (an embedding host): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class VideoSource:
    """Frames from a file, a camera or a network stream, as ``(frame index, (H, W, 3) uint8)``.

    ``color_order``: ``"rgb"`` (default; OpenCV decodes BGR and this converts) or ``"bgr"``.
    ``reconnects``: how many times a network stream that drops is reopened before the iteration
    ends (``reconnect_delay_s`` apart).  ``timeout_s``: FFmpeg's open and read timeout for network
    streams.  ``capture``: the ``cv2.VideoCapture``-compatible factory (tests pass a loopback URL;
    an app may pass its own).  After :meth:`open`, ``fps`` (None when the source states none),
    ``size`` ``(width, height)`` and ``frame_count`` (None for cameras and live streams) are set.
    Iterating opens the source when needed and releases it at the end; ``ended`` is None after
    a normal end, or one line saying why frames stopped early.
    """

    def __init__(
        self, source: str | os.PathLike | int, *, color_order: str = "rgb", reconnects: int = 3,
        reconnect_delay_s: float = 1.0, timeout_s: float = 10.0, quiet: bool = True,
        capture: Callable[..., Any] | None = None,
    ) -> None:
        if color_order not in ("rgb", "bgr"):
            raise UserError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        if reconnects < 0:
            raise UserError(f"reconnects must be >= 0, got {reconnects}")
        self.kind, self.value = parse_source(source)
        self.name = str(self.value) if self.kind != "camera" else f"camera {self.value}"
        self.color_order = color_order
        self.reconnects = int(reconnects)
        self.reconnect_delay_s = float(reconnect_delay_s)
        self.timeout_s = float(timeout_s)
        self.quiet = quiet
        self._capture = capture or cv2.VideoCapture
        self._cap: Any = None
        self.fps: float | None = None
        self.size: tuple[int, int] | None = None
        self.frame_count: int | None = None
        self.reconnected = 0
        self.ended: str | None = None

    @property
    def is_live(self) -> bool:
        """A camera or a network stream without a stated length: no progress total, live fps."""
        return self.kind == "camera" or (self.kind == "stream" and not self.frame_count)

    def _open_capture(self) -> Any:
        if self.kind == "stream":
            ms = int(self.timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            with _quiet_stderr(self.quiet):
                return self._capture(self.value, cv2.CAP_FFMPEG, params)
        if self.kind == "camera":
            with _quiet_stderr(self.quiet):
                return self._capture(self.value)
        return self._capture(self.value)

    def open(self) -> "VideoSource":
        """Open the source (idempotent); one :class:`UserError` line when it cannot be opened."""
        if self._cap is not None:
            return self
        if self.kind == "file" and not Path(self.value).is_file():
            raise UserError(f"video not found: {self.value}")
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise UserError({
                "file": f"cannot open video {self.value}: OpenCV has no decoder for it, or it is not a video",
                "camera": f"camera {self.value} is not available (no such device, or another program holds it)",
                "stream": f"cannot open stream {self.value}: unreachable, refused or not a video stream "
                          f"(waited up to {self.timeout_s:g} s)",
            }[self.kind])
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        self.size = (width, height) if width > 0 and height > 0 else None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 and self.kind != "camera" else None
        return self

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

    def __enter__(self) -> "VideoSource":
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reopen(self) -> bool:
        """Reopen a dropped stream; False when it does not come back."""
        self.close()
        time.sleep(self.reconnect_delay_s)
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            return False
        self._cap = cap
        return True

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        self.open()
        index = 0
        self.ended = None
        try:
            while True:
                ok, frame = self._cap.read()
                if ok and frame is not None:
                    if self.size is None:
                        self.size = (int(frame.shape[1]), int(frame.shape[0]))
                    yield index, (cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if self.color_order == "rgb" else frame)
                    index += 1
                    continue
                if self.kind == "file":
                    if index == 0:
                        raise UserError(f"{self.value}: no frames could be decoded (empty or corrupt video)")
                    return
                if self.kind == "camera":
                    self.ended = f"{self.name} stopped delivering frames after {index} frame(s)"
                    return
                if self.frame_count and index >= self.frame_count:
                    return  # a stream with a stated length that has been read to its end
                while self.reconnected < self.reconnects:
                    self.reconnected += 1
                    if self._reopen():
                        break
                else:
                    self.ended = (f"stream {self.value} dropped after {index} frame(s); gave up after "
                                  f"{self.reconnects} reconnect attempt(s)")
                    return
        finally:
            self.close()


def read_frames(source: str | os.PathLike | int, every: int = 1, color_order: str = "rgb") -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame index, (H, W, 3) uint8 frame)`` for every ``every``-th frame of ``source``
    (a file, a camera index or a stream URL; see :class:`VideoSource`)."""
    if every < 1:
        raise UserError(f"every must be >= 1, got {every}")
    for index, frame in VideoSource(source, color_order=color_order):
        if index % every == 0:
            yield index, frame


class VideoSink:
    """An annotated video written atomically: frames go to a temporary file beside ``path`` (same
    suffix, so OpenCV picks the container), which replaces ``path`` only when :meth:`close` is
    reached without an error; a crash or an exception leaves no file under the final name.

    ``fps`` and ``size`` ``(width, height)`` are those of the source; frames are ``(H, W, 3)``
    uint8 in ``color_order``.  The codec follows the suffix (:data:`WRITER_FOURCC`).
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], color_order: str = "rgb") -> None:
        from corese_edge.atomic import atomic_path

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in WRITER_FOURCC:
            raise UserError(f"--save {self.path}: write a {', '.join(sorted(WRITER_FOURCC))} file")
        if self.path.is_dir():
            raise UserError(f"--save {self.path}: is a folder; name a video file")
        self.fps, self.size, self.color_order = float(fps), (int(size[0]), int(size[1])), color_order
        self.frames = 0
        self._stack = contextlib.ExitStack()
        try:
            tmp = self._stack.enter_context(atomic_path(self.path))
        except OSError as exc:
            raise UserError(f"--save {self.path}: cannot write there ({exc.strerror or exc})") from None
        self._writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*WRITER_FOURCC[suffix]), self.fps, self.size)
        if not self._writer.isOpened():
            self._stack.close()
            raise UserError(f"--save {self.path}: OpenCV cannot encode {WRITER_FOURCC[suffix]} into {suffix} here")

    def write(self, frame: np.ndarray) -> None:
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if self.color_order == "rgb" else frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file and move it into place (atomically)."""
        self._writer.release()
        self._stack.close()

    def abort(self) -> None:
        """Drop the temporary file; the final name is left as it was."""
        self._writer.release()
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


@dataclass(frozen=True)
class Display:
    """``--show``: a window, when there is a display and the OpenCV build has window support."""

    title: str = "corese-edge"

    @staticmethod
    def unavailable() -> str | None:
        """Why no window can open here (one line), or None."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "--show needs a display: neither $DISPLAY nor $WAYLAND_DISPLAY is set (use --save out.mp4 instead)"
        gui = next((line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
                    if line.strip().startswith("GUI:")), "")
        if gui.upper() == "NONE":
            return ("--show: this OpenCV build has no window support (opencv-python-headless); use --save out.mp4, "
                    "or replace it with opencv-python")
        return None

    def show(self, frame: np.ndarray, color_order: str = "rgb") -> bool:
        """Show one frame; False once the user pressed q or Esc."""
        cv2.imshow(self.title, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if color_order == "rgb" else frame)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)
