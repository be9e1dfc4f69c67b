"""What machine a benchmark ran on: host CPU, GPU, driver, library versions, Jetson facts.

Library versions come from installed package metadata, so describing the machine imports neither
torch nor TensorRT.  GPU facts come from the CUDA layer (cuda-python or pycuda) when present, else
``nvidia-smi``; none of them is an error.
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

from corese_edge.bench.jetson import jetson_info

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


def gpus() -> tuple[list[dict[str, Any]], str]:
    """``([gpu dicts], why none)`` from the CUDA layer, else nvidia-smi."""
    reason = ""
    try:
        from corese_edge.runtime.cuda import cuda_api

        api = cuda_api("auto")
        count = api.device_count()
        if count:
            out = []
            for i in range(count):
                d = api.device_info(i).to_dict()
                if hasattr(api, "runtime_version"):
                    d["cuda_runtime"] = api.runtime_version()
                d["cuda_layer"] = api.name
                out.append(d)
            return out, ""
        reason = api.no_device_reason
    except Exception as exc:  # a missing or broken CUDA layer is a fact to report, not a failure
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            text = subprocess.run(
                [smi, "--query-gpu=name,compute_cap,driver_version,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=10, check=False,
            ).stdout
            out = []
            for i, line in enumerate(l for l in text.splitlines() if l.strip()):
                name, cc, driver, mem = [p.strip() for p in line.split(",")][:4]
                out.append({"index": i, "name": name, "compute_capability": cc, "driver": driver,
                            "total_memory_mb": int(float(mem)), "cuda_layer": "nvidia-smi"})
            if out:
                return out, ""
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return [], reason or "no NVIDIA GPU found"


def cuda_runtime_version() -> str | None:
    """The CUDA runtime cuda-python links against (known even without a GPU), else None."""
    try:
        from corese_edge.runtime.cuda import CudaPythonApi

        return CudaPythonApi().runtime_version()
    except Exception:  # no cuda-python, or a broken one: not an error for a machine description
        return None


def machine_info() -> dict[str, Any]:
    """Everything a benchmark result must carry about where it ran."""
    gpu_list, no_gpu = gpus()
    info: dict[str, Any] = {
        "host": {
            "cpu": cpu_name(),
            "cpu_features": cpu_flags(),
            "cpu_isa": cpu_isa(),
            "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}",
            "arch": platform.machine(),
            "python": platform.python_version(),
        },
        "gpus": gpu_list,
        "versions": {k: dist_version(v) for k, v in DISTRIBUTIONS.items()},
    }
    info["versions"]["cuda_runtime"] = cuda_runtime_version()
    if not gpu_list:
        info["no_gpu_reason"] = no_gpu
    jet = jetson_info()
    if jet is not None:
        info["jetson"] = jet
    return info


def describe(info: dict[str, Any]) -> str:
    """One line naming the machine, e.g. ``AMD EPYC (2 cores, avx2 avx512_vnni), no GPU``."""
    host = info["host"]
    feats = " ".join(host.get("cpu_features") or [])
    cores = f"{host['logical_cores']} cores"
    if host.get("usable_cores") and host["usable_cores"] != host["logical_cores"]:
        cores += f", {host['usable_cores']} usable by this process"
    text = f"{host['cpu']} ({cores}{', ' + feats if feats else ''})"
    if info.get("gpus"):
        g = info["gpus"][0]
        text += f", GPU {g['name']} (sm {g.get('compute_capability')}, driver {g.get('driver_version') or g.get('driver')})"
    else:
        text += ", no GPU"
    if info.get("jetson"):
        j = info["jetson"]
        mode = (j.get("nvpmodel") or {}).get("name")
        text += f", Jetson {j.get('model')} JetPack {j.get('jetpack')} nvpmodel {mode} jetson_clocks {j.get('jetson_clocks')}"
    return text


def machine_slug(info: dict[str, Any]) -> str:
    """A file-name-safe key for a machine (CPU, cores, GPU)."""
    host = info["host"]
    parts = [host["cpu"], f"{host['logical_cores']}c"]
    parts.append(info["gpus"][0]["name"] if info.get("gpus") else "nogpu")
    slug = "-".join(parts).lower()
    return re.sub(r"[^a-z0-9]+", "-", slug).strip("-")
