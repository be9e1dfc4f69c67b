"""An expression timeline: each face track's class probabilities over a clip (``predict --timeline``).

:class:`Timeline` collects the smoothed per-track probabilities that
:meth:`~corese_edge.runtime.classifier.ExpressionClassifier.stream_faces` yields, frame by frame, and
writes them as JSON (``corese-edge/timeline/1``) and as a PNG with one panel per track: time in
seconds across, probability up, one line per class.  The PNG needs matplotlib (imported only
when the plot is drawn); the JSON does not.

JSON layout::

    {"schema": "corese-edge/timeline/1", "source": "clip.mp4", "fps": 25.0, "class_names": [...],
     "frames": 120,                      # frames read from the source
     "tracks": [{"track": 0, "frames": [0, 1, ...], "time_s": [0.0, 0.04, ...],
                 "labels": ["Happiness", ...], "probs": [[p_0, ..., p_C-1], ...]}, ...]}
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corese_edge.errors import UserError

SCHEMA = "corese-edge/timeline/1"
#: panels drawn at most; the longest tracks are kept (the JSON keeps every track)
MAX_PANELS = 8


class Timeline:
    """Per-track probability series.  ``fps`` converts frame indices to seconds (None: seconds
    are frame indices / 25, and the JSON says ``fps: null``)."""

    def __init__(self, class_names: Sequence[str], fps: float | None, source: str = "") -> None:
        self.class_names = tuple(class_names)
        self.fps = float(fps) if fps else None
        self.source = source
        self.frames = 0
        self._tracks: dict[int, dict[str, list]] = {}

    def add(self, frame_index: int, predictions: Sequence) -> None:
        """Record the predictions of one processed frame (each with ``track``, ``label``, ``probs``);
        a prediction without a track id (no face detection) belongs to track 0."""
        self.frames = max(self.frames, int(frame_index) + 1)
        t = frame_index / (self.fps or 25.0)
        for pred in predictions:
            track = self._tracks.setdefault(int(pred.track or 0), {"frames": [], "time_s": [], "labels": [], "probs": []})
            track["frames"].append(int(frame_index))
            track["time_s"].append(round(t, 4))
            track["labels"].append(str(pred.label))
            track["probs"].append([round(float(p), 6) for p in np.asarray(pred.probs)])

    @property
    def track_ids(self) -> list[int]:
        return sorted(self._tracks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA, "source": self.source, "fps": self.fps, "class_names": list(self.class_names),
            "frames": self.frames,
            "tracks": [{"track": tid, **self._tracks[tid]} for tid in self.track_ids],
        }

    def write(self, png: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``png`` and the JSON beside it (same name, ``.json``), each atomically; returns both."""
        from corese_edge.atomic import atomic_path, write_json

        png = Path(png)
        if png.suffix.lower() != ".png":
            raise UserError(f"--timeline {png}: name a .png file (the numbers go beside it as .json)")
        try:
            import matplotlib

            matplotlib.use("Agg", force=False)
            import matplotlib.pyplot as plt
        except ImportError:
            raise UserError("--timeline draws with matplotlib, which is not installed: pip install matplotlib "
                            "(or corese-edge[export])") from None
        json_path = png.with_suffix(".json")
        write_json(json_path, self.to_dict())
        ids = sorted(self._tracks, key=lambda k: -len(self._tracks[k]["frames"]))[:MAX_PANELS]
        ids.sort()
        rows = max(1, len(ids))
        fig, axes = plt.subplots(rows, 1, figsize=(10, 1.0 + 2.1 * rows), sharex=True, squeeze=False)
        from corese_edge.runtime.annotate import PALETTE

        for ax, tid in zip(axes[:, 0], ids):
            series = self._tracks[tid]
            probs = np.asarray(series["probs"], dtype=np.float32)
            for c, name in enumerate(self.class_names):
                colour = tuple(v / 255.0 for v in PALETTE[c % len(PALETTE)])
                ax.plot(series["time_s"], probs[:, c], color=colour, linewidth=1.6, label=name)
            ax.set_ylim(0.0, 1.0)
            ax.set_ylabel("probability")
            ax.set_title(f"track {tid}  ({len(series['frames'])} frames)", fontsize=10, loc="left")
            ax.grid(alpha=0.3)
        if not ids:
            axes[0, 0].text(0.5, 0.5, "no face was found in any frame", ha="center", va="center")
            axes[0, 0].set_axis_off()
        else:
            axes[0, 0].legend(loc="upper right", ncol=min(4, len(self.class_names)), fontsize=8, framealpha=0.8)
        axes[-1, 0].set_xlabel("time (s)" + ("" if self.fps else ", assuming 25 fps"))
        fig.suptitle(f"expression timeline: {Path(self.source).name or self.source}", fontsize=11)
        fig.tight_layout()
        try:
            with atomic_path(png) as tmp:
                fig.savefig(tmp, dpi=110)
        finally:
            plt.close(fig)
        return png, json_path
