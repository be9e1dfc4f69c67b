"""What machine a benchmark ran on: the base layer's host facts plus the GPUs the CUDA layer sees.

The host half (CPU, SIMD features, library versions, Jetson) is :mod:`corese_edge.machine`, which
needs no CUDA binding.  The GPU list asks the CUDA layer (cuda-python or pycuda, in
:mod:`corese_edge.runtime.cuda`) first, else ``nvidia-smi``; it lives here because the base layer
imports no subpackage (docs/ARCHITECTURE.md, "Layers") and bench may import the runtime.  No GPU,
no binding, no driver: each is a fact to record, never an error.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

from corese_edge.machine import host_info, jetson_info, library_versions


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
        "host": host_info(),
        "gpus": gpu_list,
        "versions": library_versions(),
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
