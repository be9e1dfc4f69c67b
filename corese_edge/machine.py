"""Facts about the host that need no CUDA binding: CPU and its SIMD features, library versions, Jetson.

Part of the base layer (docs/ARCHITECTURE.md, "Layers"): the export records the CPU it timed
cpu-best candidates on, ``env`` and the benchmarks describe the machine, and none of them should
pull in a subpackage to do it.  Library versions come from installed package metadata, so nothing
here imports torch, TensorRT or a CUDA binding.  The GPU list needs the CUDA layer, which lives in
the runtime, so :mod:`corese_edge.bench.machine` adds it to these facts.

Jetson detection (L4T/JetPack release, nvpmodel mode, jetson_clocks state) is here too; the
tegrastats power sampler that runs during a benchmark stays in :mod:`corese_edge.bench.jetson`.
Benchmark hygiene on a Jetson: record the nvpmodel power mode and whether ``jetson_clocks``
locked the clocks.  Everything that touches the device is a small function over text so it can
be tested with recorded output; nothing needs root (``jetson_clocks --show`` does, so the clock
state falls back to comparing the CPU/GPU minimum and maximum frequencies in sysfs).
"""
from __future__ import annotations

import importlib.metadata as md
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

#: distribution names to look up for each library, first found wins
DISTRIBUTIONS = {
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-lean", "tensorrt-lean-cu13-bindings", "tensorrt-lean-cu12-bindings"),
    "cuda-python": ("cuda-python", "cuda-bindings"),
    "pycuda": ("pycuda",),
    "torch": ("torch",),
    "timm": ("timm",),
    "onnx": ("onnx",),
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless"),
    "openvino": ("openvino",),
    "nncf": ("nncf",),
}


def dist_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return None


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        m = re.search(r"^model name\s*:\s*(.+)$", text, flags=re.M)
        if m:
            return m.group(1).strip()
        m = re.search(r"^(?:Hardware|Model)\s*:\s*(.+)$", text, flags=re.M)
        if m:
            return m.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: x86 features that decide which CPU kernels run (Linux /proc/cpuinfo names -> label):
#: VNNI speeds INT8 dot products, AMX tiles run INT8 and BF16 matrix products, AVX-512-BF16 and
#: AMX-BF16 are what OpenVINO's default BF16 inference precision needs.
CPU_ISA = {
    "avx2": "AVX2",
    "avx512f": "AVX-512F",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16",
    "amx_tile": "AMX tile",
    "amx_int8": "AMX INT8",
    "amx_bf16": "AMX BF16",
}


def _cpuinfo_flags(path: Path = Path("/proc/cpuinfo")) -> set[str] | None:
    """The first CPU's flag set from /proc/cpuinfo (``Features`` on ARM); None where it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError:  # not Linux, or no procfs
        return None
    m = re.search(r"^(?:flags|Features)\s*:\s*(.+)$", text, flags=re.M)
    return set(m.group(1).split()) if m else None


def cpu_flags(path: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The SIMD features that decide CPU inference speed (AVX2, AVX-512, VNNI, AMX, NEON...)."""
    have = _cpuinfo_flags(path)
    if not have:
        return []
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
              "amx_int8", "amx_bf16", "asimd", "asimddp", "sve")
    return [f for f in wanted if f in have]


def cpu_isa(path: Path = Path("/proc/cpuinfo")) -> dict[str, bool]:
    """``{flag: present}`` for every :data:`CPU_ISA` flag; ``{}`` when the flags cannot be read
    (unknown is not "absent").  On ARM every entry is False."""
    have = _cpuinfo_flags(path)
    if have is None:
        return {}
    return {flag: flag in have for flag in CPU_ISA}


def format_isa(isa: dict[str, bool]) -> str:
    """``AVX2 yes, AVX-512F yes, ..., AMX BF16 no`` (or ``unknown``)."""
    if not isa:
        return "unknown"
    return ", ".join(f"{CPU_ISA.get(k, k)} {'yes' if v else 'no'}" for k, v in isa.items())


def host_info() -> dict[str, Any]:
    """The ``host`` section of a machine description: CPU, its features, cores, OS, Python."""
    return {
        "cpu": cpu_name(),
        "cpu_features": cpu_flags(),
        "cpu_isa": cpu_isa(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": platform.python_version(),
    }


def library_versions() -> dict[str, str | None]:
    """``{library: installed version or None}`` for every :data:`DISTRIBUTIONS` entry."""
    return {k: dist_version(v) for k, v in DISTRIBUTIONS.items()}


# --------------------------------------------------------------------------- Jetson

TEGRA_RELEASE = Path("/etc/nv_tegra_release")

# L4T release -> JetPack (NVIDIA's JetPack archive); used when dpkg has no nvidia-jetpack package.
L4T_TO_JETPACK = {
    "35.1": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2",
    "36.4.4": "6.2.1", "38.2.0": "7.0",
}

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
