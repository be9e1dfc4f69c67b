"""What ``corese-edge predict`` accepts: image files, folders of images, video files, camera
indices and network streams.

:func:`collect_inputs` resolves them (anything else is a :class:`UserError` naming it) and
:func:`predict_inputs` runs an :class:`~corese_edge.runtime.classifier.ExpressionClassifier` over
them, yielding one plain dict per image or video frame.  For videos, :class:`VideoOutputs` says
what else to make of the frames: an annotated video (``--save``), a window (``--show``) and an
expression timeline (``--timeline``).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from corese_edge.errors import UserError
from corese_edge.images import is_image_file
from corese_edge.runtime.video import FALLBACK_FPS, VideoSource, is_video_file, parse_source

#: images per predict() call when walking folders (bounds memory, not the runner batch)
CHUNK = 64


@dataclass(frozen=True)
class InputItem:
    """``kind``: ``image``, ``video`` (a file), ``camera`` (``source`` an int) or ``stream`` (a URL)."""

    kind: str
    path: Path | None
    source: str | int | None = None

    @property
    def name(self) -> str:
        if self.kind == "camera":
            return f"camera:{self.source}"
        return str(self.source) if self.kind == "stream" else str(self.path)

    @property
    def is_video(self) -> bool:
        return self.kind in ("video", "camera", "stream")


def collect_inputs(paths: Sequence[str | os.PathLike | int]) -> list[InputItem]:
    """Images, folders (their images, recursively, sorted), video files, camera indices (``0``)
    and ``rtsp://`` / ``http(s)://`` streams, in the order given."""
    if not paths:
        raise UserError("no inputs: give image files, folders, a video file, a camera index or a stream URL")
    items: list[InputItem] = []
    for raw in paths:
        kind, value = parse_source(raw)
        if kind == "camera":
            items.append(InputItem("camera", None, value))
            continue
        if kind == "stream":
            items.append(InputItem("stream", None, value))
            continue
        p = Path(value)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q))
            if not found:
                raise UserError(f"{p}: folder holds no images ({', '.join(('.jpg', '.png', '...'))})")
            items += [InputItem("image", q) for q in found]
        elif p.is_file():
            if is_image_file(p):
                items.append(InputItem("image", p))
            elif is_video_file(p):
                items.append(InputItem("video", p, str(p)))
            else:
                raise UserError(f"{p}: not an image or video file (suffix {p.suffix or 'none'!r})")
        elif p.exists():
            raise UserError(f"{p}: not a regular file or folder")
        else:
            raise UserError(f"input not found: {p}")
    return items


@dataclass
class VideoOutputs:
    """What ``predict`` makes of a video besides its rows.

    ``save``: an annotated video at the source's size and frame rate (atomic); ``show``: a
    window; ``timeline``: a PNG (and its JSON) of each face track's probabilities; ``landmarks``:
    draw the 5 points; ``reconnects``: a dropped stream's reopen attempts; ``progress``: a
    progress bar (frames/s) on stderr, with a total for files and live fps for streams.  At most
    one video input can be saved or timed, since each output is one file.  ``ended`` collects one
    line per stream or camera that stopped early.
    """

    save: str | os.PathLike | None = None
    show: bool = False
    timeline: str | os.PathLike | None = None
    landmarks: bool = False
    reconnects: int = 3
    progress: bool = True
    ended: list[str] = field(default_factory=list)

    @property
    def draws(self) -> bool:
        return bool(self.save or self.show)

    def check(self, items: Sequence[InputItem]) -> None:
        """Refuse, before any work, what cannot be done (one line each)."""
        videos = [it for it in items if it.is_video]
        if (self.save or self.timeline) and len(videos) != 1:
            flag = "--save" if self.save else "--timeline"
            raise UserError(f"{flag} writes one file: give exactly one video, camera or stream "
                            f"(got {len(videos)} among the inputs)")
        if self.save and Path(self.save).suffix.lower() not in (".mp4", ".m4v", ".mov", ".avi", ".mkv"):
            raise UserError(f"--save {self.save}: name an .mp4 or .avi file")
        if self.timeline and Path(self.timeline).suffix.lower() != ".png":
            raise UserError(f"--timeline {self.timeline}: name a .png file (the numbers go beside it as .json)")
        if self.show:
            from corese_edge.runtime.video import Display

            why = Display.unavailable()
            if why:
                raise UserError(why)


def predict_inputs(
    classifier: Any, items: Sequence[InputItem], every: int = 1, momentum: float = 0.6,
    no_face: list[dict[str, Any]] | None = None, outputs: VideoOutputs | None = None,
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
    outputs = outputs or VideoOutputs(progress=False)
    for it in items:
        if it.is_video:
            yield from _predict_video(classifier, it, every, momentum, no_face, outputs)


def _predict_video(classifier: Any, item: InputItem, every: int, momentum: float,
                   no_face: list[dict[str, Any]] | None, outputs: VideoOutputs) -> Iterator[dict[str, Any]]:
    from corese_edge.runtime.timeline import Timeline
    from corese_edge.runtime.video import Display, VideoSink

    names = classifier.class_names
    source = VideoSource(item.source, color_order="rgb", reconnects=outputs.reconnects).open()
    fps = source.fps or FALLBACK_FPS
    timeline = Timeline(names, source.fps, item.name) if outputs.timeline else None
    sink: VideoSink | None = None
    display = Display() if outputs.show else None
    bar = _progress(outputs.progress, source, item.name)
    indices: list[int] = []

    def frames() -> Iterator[Any]:
        for index, frame in source:
            indices.append(index)
            yield frame

    try:
        for shown in classifier.annotate(frames(), every=every, momentum=momentum, landmarks=outputs.landmarks,
                                         color_order="rgb"):
            index = indices[-1]
            if outputs.save:
                if sink is None:
                    height, width = shown.frame.shape[:2]
                    sink = VideoSink(outputs.save, fps, source.size or (width, height))
                sink.write(shown.image)
            if display is not None and not display.show(shown.image):
                break
            bar(1)
            if not shown.processed:
                continue
            if timeline is not None:
                timeline.add(index, shown.predictions)
            if not shown.predictions and no_face is not None:
                no_face.append({"input": item.name, "frame": index})
            for pred in shown.predictions:
                yield {"input": item.name, "frame": index, "track": pred.track, **pred.to_dict(names)}
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        source.close()
        bar(None)
        if display is not None:
            display.close()
    if sink is not None:
        sink.close()
    if timeline is not None:
        timeline.write(outputs.timeline)
    if source.ended:
        outputs.ended.append(source.ended)


def _progress(enabled: bool, source: VideoSource, name: str) -> Callable[[int | None], None]:
    """``step(n)`` advances a progress bar by n frames (frames/s shown); ``step(None)`` closes it.
    A file gets a total; a camera or live stream shows its live fps."""
    if not enabled:
        return lambda n: None
    from tqdm.auto import tqdm

    bar = tqdm(total=None if source.is_live else source.frame_count, desc=Path(name).name or name, unit="frame",
               leave=False, disable=None, dynamic_ncols=True)
    last = [time.perf_counter()]

    def step(n: int | None) -> None:
        if n is None:
            bar.close()
            return
        bar.update(n)
        now = time.perf_counter()
        if now - last[0] > 0.5:
            last[0] = now
            bar.set_postfix_str(f"{bar.format_dict.get('rate') or 0:.1f} fps", refresh=False)

    return step
