"""``corese-edge env``: what is installed here and which commands can run.

Each library is imported inside a ``try`` (ImportError and any other failure of a broken install are
reported, never raised), so the report works on a bare runtime install without torch, ONNX Runtime
or TensorRT.
"""
from __future__ import annotations

import importlib
import platform
import sys
from dataclasses import dataclass
from typing import Any

ENV_SCHEMA = "corese-edge/env/1"


def _probe(module: str) -> dict[str, Any]:
    """``{"status": "ok" | "missing" | "broken", "version", "error"}`` for one import."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        return {"status": "missing", "version": None, "error": str(exc).splitlines()[0] if str(exc) else "ImportError"}
    except Exception as exc:  # a broken install (missing .so, ABI mismatch) must not crash env
        return {"status": "broken", "version": None, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
    version = getattr(mod, "__version__", None) or getattr(mod, "VERSION_TEXT", None)
    if version is None:
        from corese_edge.machine import DISTRIBUTIONS, dist_version

        version = dist_version(DISTRIBUTIONS.get(module, (module,)))
    return {"status": "ok", "version": str(version) if version is not None else None, "module": mod}


def _installed(dist: str) -> dict[str, Any]:
    """Like :func:`_probe` from package metadata alone: importing nncf imports torch and takes
    seconds, which ``env`` need not pay to name its version."""
    from corese_edge.machine import dist_version

    version = dist_version((dist,))
    if version is None:
        return {"status": "missing", "version": None, "error": f"no distribution {dist!r} installed"}
    return {"status": "ok", "version": version}


def collect_env() -> dict[str, Any]:
    """The facts ``corese-edge env`` prints (JSON-safe)."""
    from corese_edge import __version__
    from corese_edge.bench.machine import gpus
    from corese_edge.machine import jetson_info

    libs: dict[str, dict[str, Any]] = {}
    for name in ("numpy", "cv2", "torch", "timm", "albumentations", "onnx", "onnxruntime", "matplotlib"):
        libs[name] = _probe(name)
    torch = libs["torch"].pop("module", None)
    if torch is not None:
        try:
            libs["torch"]["cuda"] = torch.version.cuda
            libs["torch"]["cuda_available"] = bool(torch.cuda.is_available())
        except Exception as exc:
            libs["torch"]["cuda_error"] = str(exc)
    ort = libs["onnxruntime"].pop("module", None)
    if ort is not None:
        try:
            libs["onnxruntime"]["providers"] = list(ort.get_available_providers())
        except Exception as exc:
            libs["onnxruntime"]["providers_error"] = str(exc)
    libs["openvino"] = _probe("openvino")
    ov = libs["openvino"].pop("module", None)
    if ov is not None:
        try:
            from corese_edge.runtime.openvino import shared_core

            libs["openvino"]["version"] = ov.get_version()  # the full build string, as OpenVINO reports it
            libs["openvino"]["devices"] = list(shared_core().available_devices)
        except Exception as exc:  # a plugin that fails to load must not crash env
            libs["openvino"]["devices_error"] = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    libs["nncf"] = _installed("nncf")
    cv2 = libs["cv2"].pop("module", None)
    if cv2 is not None:
        libs["cv2"]["haar_cascades"] = bool(getattr(cv2, "data", None)) and hasattr(cv2, "CascadeClassifier")
    for name in list(libs):
        libs[name].pop("module", None)

    trt: dict[str, Any] = {"status": "missing", "version": None, "module": None, "builder": False}
    for module in ("tensorrt", "tensorrt_lean", "tensorrt_lean_bindings"):
        probe = _probe(module)
        mod = probe.pop("module", None)
        if probe["status"] == "ok":
            trt = {**probe, "module": module, "builder": hasattr(mod, "Builder")}
            break
        if probe["status"] == "broken":
            trt = {**probe, "module": module, "builder": False}
    cuda_layers = {}
    for label, module in (("cuda-python", "cuda.bindings.runtime"), ("cuda-python (legacy)", "cuda.cudart"), ("pycuda", "pycuda.driver")):
        probe = _probe(module)
        probe.pop("module", None)
        if probe["status"] == "ok" and probe["version"] is None:
            from corese_edge.machine import DISTRIBUTIONS, dist_version

            probe["version"] = dist_version(DISTRIBUTIONS["pycuda" if label == "pycuda" else "cuda-python"])
        cuda_layers[label] = probe
    gpu_list, no_gpu = gpus()
    driver = cuda_driver_report()
    report: dict[str, Any] = {
        "schema": ENV_SCHEMA,
        "corese_edge": __version__,
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "libraries": libs,
        "tensorrt": trt,
        "cuda_layers": cuda_layers,
        "cuda_driver": driver,
        "gpus": gpu_list,
    }
    if not gpu_list:
        report["no_gpu_reason"] = no_gpu
    jet = jetson_info()
    if jet is not None:
        report["jetson"] = jet
    report["commands"] = [c.__dict__ for c in command_support(report)]
    return report


def cuda_driver_report() -> dict[str, Any]:
    """The driver's CUDA version and the ``trt-cu*`` extra whose cuda-python fits it.

    ``cuda_version``: what ``cudaDriverGetVersion`` reports ("12.2"; None without a driver or
    without any CUDA layer to ask); ``extra``: ``trt-cu12`` (CUDA 12 drivers, < 580, JetPack 6.x)
    or ``trt-cu13`` (580+, JetPack 7); ``cuda_python_cuda``: the CUDA version the installed
    cuda-python is built for; ``fits``: whether that cuda-python runs on this driver (same or older
    CUDA major), None when unknown.
    """
    from corese_edge.runtime.cuda import cuda_version_str, driver_cuda_version, extra_for_driver

    out: dict[str, Any] = {"cuda_version": None, "extra": None, "cuda_python_cuda": None, "fits": None}
    try:
        driver = driver_cuda_version()
    except Exception:  # a broken CUDA layer must not crash env
        driver = None
    if driver:
        out["cuda_version"] = cuda_version_str(driver)
        out["extra"] = extra_for_driver(driver)
    try:
        from corese_edge.runtime.cuda import CudaPythonApi

        runtime = CudaPythonApi().runtime_cuda()
        out["cuda_python_cuda"] = cuda_version_str(runtime)
        if driver:
            out["fits"] = driver // 1000 >= runtime // 1000
    except Exception:  # no cuda-python, or a broken one
        pass
    return out


@dataclass
class CommandSupport:
    command: str
    ok: bool
    missing: str  # what to install or fix, "" when ok


def command_support(report: dict[str, Any]) -> list[CommandSupport]:
    """Which commands can run with what ``report`` found, and what each one lacks."""
    libs = report["libraries"]

    def have(*names: str) -> list[str]:
        return [n for n in names if libs.get(n, {}).get("status") != "ok"]

    def need(missing: list[str], extra: str) -> str:
        return f"{', '.join(missing)}: pip install 'corese-edge[{extra}]'" if missing else ""

    gpu = bool(report.get("gpus"))
    trt = report["tensorrt"]
    cuda_ok = any(v["status"] == "ok" for v in report["cuda_layers"].values())
    driver = report.get("cuda_driver") or {}
    install = (f"pip install 'corese-edge[{driver['extra']}]'" if driver.get("extra") else
               "pip install 'corese-edge[trt-cu12]' (drivers older than 580, JetPack 6.x) or "
               "'corese-edge[trt-cu13]' (580+, JetPack 7)")
    rows = []
    m = have("torch", "timm", "albumentations")
    rows.append(CommandSupport("train", not m, need(m, "train")))
    m = have("torch", "timm", "onnx", "onnxruntime")
    rows.append(CommandSupport("export (ONNX, FP16, INT8, drift)", not m, need(m, "train,export")))
    why = []
    if not (trt["status"] == "ok" and trt.get("builder")):
        why.append("TensorRT with its builder (JetPack's python3-libnvinfer or NVIDIA's tensorrt)")
    if not gpu:
        why.append("an NVIDIA GPU")
    rows.append(CommandSupport("build-engine", not why, "; ".join(why)))
    m = have("onnxruntime")
    rows.append(CommandSupport("predict / bench with .onnx", not m, need(m, "export")))
    why = []
    if trt["status"] != "ok":
        why.append("a TensorRT runtime (tensorrt, or tensorrt-lean-cu13-bindings + tensorrt-lean-cu13-libs)")
    if not cuda_ok:
        why.append(f"cuda-python or pycuda: {install}")
    elif driver.get("fits") is False and report["cuda_layers"].get("pycuda", {}).get("status") != "ok":
        why.append(
            f"a cuda-python for this driver's CUDA {driver.get('cuda_version')} (the installed one is built for "
            f"CUDA {driver.get('cuda_python_cuda')}): {install}"
        )
    if not gpu and driver.get("fits") is not False:
        why.append("an NVIDIA GPU")
    rows.append(CommandSupport("predict / bench with .plan", not why, "; ".join(why)))
    m = have("torch", "timm")
    rows.append(CommandSupport("predict / bench with .pt", not m, need(m, "train")))
    m = have("openvino")
    rows.append(CommandSupport("predict / bench with .xml (OpenVINO)", not m, need(m, "openvino")))
    m = have("torch", "timm", "onnx", "openvino", "nncf")
    rows.append(CommandSupport("export --target openvino", not m, need(m, "train,export,openvino")))
    return rows


def format_env(report: dict[str, Any]) -> str:
    def ver(d: dict[str, Any]) -> str:
        if d["status"] == "ok":
            return d.get("version") or "installed"
        return d["status"] + (f" ({d['error']})" if d.get("status") == "broken" else "")

    libs = report["libraries"]
    lines = [
        f"corese-edge   {report['corese_edge']}",
        f"python        {report['python']} ({report['platform']})",
    ]
    for name, label in (("numpy", "numpy"), ("cv2", "opencv"), ("torch", "torch"), ("timm", "timm"),
                        ("albumentations", "albumentations"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
        text = ver(libs[name])
        if name == "torch" and libs[name]["status"] == "ok":
            text += f" (CUDA {libs[name].get('cuda') or 'none'}, GPU available: {libs[name].get('cuda_available')})"
        if name == "onnxruntime" and libs[name]["status"] == "ok":
            text += f" (providers: {', '.join(libs[name].get('providers', []))})"
        lines.append(f"{label:13} {text}")
    for name in ("openvino", "nncf"):
        if name not in libs:  # a report from before OpenVINO was probed
            continue
        text = ver(libs[name])
        if name == "openvino" and libs[name]["status"] == "ok":
            text += (f" (devices: {', '.join(libs[name]['devices']) or 'none'})" if "devices" in libs[name]
                     else f" (devices: unknown, {libs[name].get('devices_error')})")
        lines.append(f"{name:13} {text}")
    trt = report["tensorrt"]
    trt_text = ver(trt)
    if trt["status"] == "ok":
        trt_text += f" ({trt['module']}{', builder' if trt.get('builder') else ', runtime only'})"
    lines.append(f"{'tensorrt':13} {trt_text}")
    for label, probe in report["cuda_layers"].items():
        if probe["status"] != "missing" or label != "cuda-python (legacy)":
            lines.append(f"{label:13} {ver(probe)}")
    driver = report.get("cuda_driver") or {}
    if driver.get("cuda_version"):
        text = f"CUDA {driver['cuda_version']} (fits corese-edge[{driver['extra']}])" if driver.get("extra") else (
            f"CUDA {driver['cuda_version']} (too old: corese-edge needs a CUDA 12 or newer driver)")
        if driver.get("fits") is False:
            text += f"; the installed cuda-python is built for CUDA {driver['cuda_python_cuda']} and cannot use it"
    else:
        text = "none found"
    lines.append(f"{'cuda driver':13} {text}")
    if report["gpus"]:
        for g in report["gpus"]:
            lines.append(
                f"{'gpu ' + str(g['index']):13} {g['name']} (compute capability {g.get('compute_capability')}, "
                f"driver {g.get('driver_version') or g.get('driver')}, {g.get('total_memory_mb')} MB)"
            )
    else:
        lines.append(f"{'gpu':13} none ({report.get('no_gpu_reason', '')})")
    if report.get("jetson"):
        j = report["jetson"]
        mode = j.get("nvpmodel") or {}
        lines.append(f"{'jetson':13} {j.get('model')}: L4T {j.get('l4t')}, JetPack {j.get('jetpack')}, "
                     f"nvpmodel {mode.get('name')} ({mode.get('id')}), jetson_clocks {j.get('jetson_clocks')}")
    lines.append("")
    lines.append("commands:")
    for c in report["commands"]:
        mark = "yes" if c["ok"] else "no "
        lines.append(f"  {mark}  {c['command']}" + (f"  -- needs {c['missing']}" if c["missing"] else ""))
    return "\n".join(lines)
