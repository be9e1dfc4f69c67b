"""Jetson telemetry during a benchmark: the power drawn in the timed window, from tegrastats.

The static Jetson facts (L4T/JetPack release, nvpmodel mode, jetson_clocks state) are host facts
and live in the base layer, :mod:`corese_edge.machine`.  Power comes from
``tegrastats --interval MS``; its rail fields look like ``VDD_IN 5012mW/4976mW`` (JetPack 5/6/7:
instantaneous / running average) or ``VDD_IN 5012/4976`` (JetPack 4), and only the instantaneous
value is used.  The board total is ``VDD_IN`` (Orin Nano/NX, Xavier NX) or ``POM_5V_IN`` (Nano,
TX2); where neither exists (AGX Orin) it is the sum of the reported rails, which misses the carrier
board, and the result says so.

Parsing is a small function over text so it can be tested with recorded output.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")

_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")


def parse_tegrastats(line: str) -> dict[str, int]:
    """Instantaneous power of every rail in one tegrastats line, in mW (``{}`` if none)."""
    return {name: int(now) for name, now, _avg in _RAIL.findall(line)}


def total_power(rails: dict[str, int]) -> tuple[float, str]:
    """``(total mW, which rail or "sum of rails")``."""
    for name in TOTAL_RAILS:
        if name in rails:
            return float(rails[name]), name
    return float(sum(rails.values())), "sum of rails"


@dataclass
class TegrastatsSampler:
    """Collects ``(time, rails)`` samples from tegrastats lines while a benchmark runs.

    ``start()`` launches ``tegrastats --interval interval_ms`` and a reader thread; ``stop()`` ends
    that process.  ``feed(line, t)`` is the same path for recorded lines (tests).  ``summary(t0, t1,
    images)`` averages the total power over the samples inside ``[t0, t1]`` and turns it into
    energy per image (mW x s = mJ).
    """

    interval_ms: int = 100
    clock: Callable[[], float] = time.perf_counter
    samples: list[tuple[float, dict[str, int]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def feed(self, line: str, t: float | None = None) -> None:
        rails = parse_tegrastats(line)
        if rails:
            with self._lock:
                self.samples.append((self.clock() if t is None else t, rails))

    def feed_lines(self, lines: Iterable[str], times: Iterable[float]) -> None:
        for line, t in zip(lines, times):
            self.feed(line, t)

    def start(self) -> bool:
        """Start tegrastats; False (and no samples) when it is not available."""
        exe = shutil.which("tegrastats")
        if exe is None:
            return False
        try:
            self._proc = subprocess.Popen(
                [exe, "--interval", str(int(self.interval_ms))],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
        except OSError:
            return False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return True

    def _read(self) -> None:
        proc = self._proc
        if proc is None or proc.stdout is None:
            return
        for line in proc.stdout:
            self.feed(line)

    def stop(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            proc.terminate()  # only the tegrastats process this sampler started
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def summary(self, t0: float, t1: float, images: int) -> dict[str, Any] | None:
        """Mean power over ``[t0, t1]`` and mJ per image; ``None`` without samples in the window."""
        with self._lock:
            window = [rails for t, rails in self.samples if t0 <= t <= t1]
        if not window:
            return None
        totals = [total_power(r) for r in window]
        mean_mw = sum(t for t, _ in totals) / len(totals)
        names = sorted({n for r in window for n in r})
        rails_mean = {n: round(sum(r.get(n, 0) for r in window) / len(window), 1) for n in names}
        duration = t1 - t0
        return {
            "samples": len(window),
            "total_source": totals[0][1],
            "power_mw": round(mean_mw, 1),
            "rails_mw": rails_mean,
            "energy_mj_per_image": round(mean_mw * duration / images, 4) if images else None,
        }
