"""Jetson facts and telemetry: L4T/JetPack release, nvpmodel mode, jetson_clocks state, tegrastats power.

Benchmark hygiene on a Jetson (shared/TENSORRT.md): record the nvpmodel power mode, whether
``jetson_clocks`` locked the clocks, and the power drawn during the timed window.  Power comes from
``tegrastats --interval MS``; its rail fields look like ``VDD_IN 5012mW/4976mW`` (JetPack 5/6/7:
instantaneous / running average) or ``VDD_IN 5012/4976`` (JetPack 4), and only the instantaneous
value is used.  The board total is ``VDD_IN`` (Orin Nano/NX, Xavier NX) or ``POM_5V_IN`` (Nano,
TX2); where neither exists (AGX Orin) it is the sum of the reported rails, which misses the carrier
board, and the result says so.

Everything that touches the device is a small function over text so it can be tested with recorded
output; nothing here needs root (``jetson_clocks --show`` does, so the clock state falls back to
comparing the CPU/GPU minimum and maximum frequencies in sysfs).
"""
from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

TEGRA_RELEASE = Path("/etc/nv_tegra_release")
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")

# L4T release -> JetPack (NVIDIA's JetPack archive); used when dpkg has no nvidia-jetpack package.
L4T_TO_JETPACK = {
    "35.1": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2",
    "36.4.4": "6.2.1", "38.2.0": "7.0",
}

_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*)\s+(\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def is_jetson(release_file: Path = TEGRA_RELEASE) -> bool:
    return release_file.is_file()


def parse_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``"36.4.3"``."""
    m = _RELEASE.search(text)
    if not m:
        return None
    rev = m.group(2).strip(".")
    return f"{m.group(1)}.{rev}" if rev.count(".") >= 1 else f"{m.group(1)}.{rev}.0"


def jetpack_for_l4t(l4t: str | None) -> str | None:
    if not l4t:
        return None
    if l4t in L4T_TO_JETPACK:
        return L4T_TO_JETPACK[l4t]
    short = ".".join(l4t.split(".")[:2])
    return L4T_TO_JETPACK.get(short)


def parse_nvpmodel(text: str) -> dict[str, Any] | None:
    """``nvpmodel -q`` output (``NV Power Mode: MAXN`` then the mode id) -> ``{"name", "id"}``."""
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if not m:
        return None
    ids = re.findall(r"^\s*(\d+)\s*$", text, flags=re.M)
    return {"name": m.group(1), "id": int(ids[-1]) if ids else None}


def parse_tegrastats(line: str) -> dict[str, int]:
    """Instantaneous power of every rail in one tegrastats line, in mW (``{}`` if none)."""
    return {name: int(now) for name, now, _avg in _RAIL.findall(line)}


def total_power(rails: dict[str, int]) -> tuple[float, str]:
    """``(total mW, which rail or "sum of rails")``."""
    for name in TOTAL_RAILS:
        if name in rails:
            return float(rails[name]), name
    return float(sum(rails.values())), "sum of rails"


def clocks_locked(cpu_root: Path = Path("/sys/devices/system/cpu"), gpu_glob: str = "/sys/devices/*gpu*/devfreq/*") -> str:
    """``"on"`` when every CPU's and the GPU's min frequency equals its max (what jetson_clocks
    does), ``"off"`` when some differ, ``"unknown"`` when sysfs says nothing."""
    pairs = []
    for cpu in sorted(cpu_root.glob("cpu[0-9]*/cpufreq")):
        pairs.append((cpu / "scaling_min_freq", cpu / "scaling_max_freq"))
    for dev in Path("/").glob(gpu_glob.lstrip("/")):
        pairs.append((dev / "min_freq", dev / "max_freq"))
    seen = False
    for lo, hi in pairs:
        try:
            a, b = lo.read_text().strip(), hi.read_text().strip()
        except OSError:
            continue
        seen = True
        if a != b:
            return "off"
    return "on" if seen else "unknown"


def _run(cmd: list[str], timeout: float = 5.0) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def jetson_info(release_file: Path = TEGRA_RELEASE) -> dict[str, Any] | None:
    """L4T, JetPack, nvpmodel mode and clock state, or ``None`` off a Jetson."""
    if not is_jetson(release_file):
        return None
    l4t = parse_tegra_release(release_file.read_text(errors="replace"))
    jetpack = None
    out = _run(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    if out:
        jetpack = out.strip().split("-")[0] or None
    model = None
    try:
        model = Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
    except OSError:
        pass
    mode = parse_nvpmodel(_run(["nvpmodel", "-q"]) or "")
    return {
        "model": model,
        "l4t": l4t,
        "jetpack": jetpack or jetpack_for_l4t(l4t),
        "nvpmodel": mode,
        "jetson_clocks": clocks_locked(),
    }


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
