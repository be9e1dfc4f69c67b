"""CONTRACT: the TensorRT runner and its fakes against the real ``tensorrt_lean_bindings`` 11.4.

The lean bindings import without a GPU, so their classes, enums and pybind11 docstring signatures
(``name(self: ..., arg: type, ...) -> ret``, one line per overload) are the reference for:

- every call the runner makes on the fakes: argument count, keyword names and, position by
  position, the argument type (which fixes the order of ``get_tensor_profile_shape(name,
  profile_index)``, ``set_input_shape(name, shape)``, ``set_tensor_address(name, memory)``, ...);
- the fakes' own method signatures (parameter names and order) and enums (members and values);
- every TensorRT attribute named in ``corese_edge/runtime/trt.py``.

Names that exist only on older version lines are listed in :data:`OLDER_LINES_ONLY` with the
source that documents them.
"""
from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from corese_edge.runtime.trt import TrtRunner
from tests.runtime import fakes
from tests.runtime.fakes import FakeCuda, FakeTrt, write_plan

pytestmark = pytest.mark.contract

#: attribute -> where it is documented; absent from 11.x (and so from tensorrt_lean_bindings 11.4)
OLDER_LINES_ONLY = {
    "create_execution_context_without_device_memory":
        "ICudaEngine, TensorRT 8.6 (python/src/infer/pyCore.cpp v8.6.1; deprecated 10.0, removed 11.0)",
    "device_memory_size":
        "ICudaEngine, TensorRT 8.6-10.x (pyCore.cpp v8.6.1, v10.0.0; superseded by device_memory_size_v2 in 10.1)",
}


@pytest.fixture(scope="module")
def tlb():
    return pytest.importorskip("tensorrt_lean_bindings")


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        if ch in "[(<":
            depth += 1
        elif ch in "])>":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts


def overloads(fn, name: str) -> list[list[tuple[str, str, bool]]]:
    """``[(param, annotation, has_default), ...]`` per overload, ``self`` dropped, from pybind11's docstring."""
    found = []
    for line in (fn.__doc__ or "").splitlines():
        m = re.match(rf"^\s*(?:\d+\.\s+)?{re.escape(name)}\((.*)\)\s*->", line)
        if not m:
            continue
        params = []
        for part in _split_top_level(m.group(1)):
            pname, _, rest = part.partition(":")
            annotation, _, default = rest.partition("=")
            params.append((pname.strip(), annotation.strip(), bool(default.strip())))
        found.append([p for p in params if p[0] != "self"])
    assert found, f"no signature for {name} in its docstring"
    return found


def accepts(annotation: str, value) -> bool:
    """Whether ``value`` (what the runner passed to a fake) fits the real binding's annotation."""
    last = annotation.rsplit(".", 1)[-1]
    if annotation == "str":
        return isinstance(value, str)
    if annotation in ("typing.SupportsInt", "int"):
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, fakes.enum.Enum))
    if annotation == "tuple":
        return isinstance(value, tuple)
    if annotation == "list":
        return isinstance(value, list)
    if annotation in ("typing_extensions.Buffer", "buffer"):
        return isinstance(value, (bytes, bytearray, memoryview))
    if annotation.endswith("ILogger.Severity"):
        return isinstance(value, fakes.FakeSeverity)
    if last == "ILogger":
        return isinstance(value, fakes.FakeLogger)
    if last == "ExecutionContextAllocationStrategy":
        return isinstance(value, fakes.FakeExecutionContextAllocationStrategy)
    if last == "DataType":
        return isinstance(value, fakes.FakeDataType)
    if last in ("Dims", "IRuntimeConfig", "IGpuAllocator", "IStreamReaderV2", "IStreamReader"):
        return False  # types the runner never builds
    raise AssertionError(f"unknown annotation {annotation!r}: teach accepts() what it means")


def call_fits(params: list[tuple[str, str, bool]], args: tuple, kwargs: dict) -> bool:
    if len(args) > len(params):
        return False
    names = [p[0] for p in params]
    if any(k not in names[len(args):] for k in kwargs):
        return False
    for (pname, annotation, has_default), value in zip(params, args):
        if not accepts(annotation, value):
            return False
    for pname, annotation, has_default in params[len(args):]:
        if pname in kwargs:
            if not accepts(annotation, kwargs[pname]):
                return False
        elif not has_default:
            return False
    return True


def _real(tlb, kind: str):
    return {"module": tlb, "Runtime": tlb.Runtime, "ICudaEngine": tlb.ICudaEngine,
            "IExecutionContext": tlb.IExecutionContext, "Logger": tlb.Logger}[kind]


def _run_every_path(tmp_path) -> None:
    """Plain and graph queries, a failed capture, a version-compatible plan, close."""
    plan = write_plan(tmp_path / "a", max_batch=4, size=8)
    with TrtRunner(plan, cuda=FakeCuda(), trt=FakeTrt(), cuda_graph=False) as r:
        for b in (4, 1):
            r.infer({"input": np.zeros((b, 3, 8, 8), np.float32)})
        r.cuda_graph = True
        for b in (2, 2, 4):
            r.infer({"input": np.zeros((b, 3, 8, 8), np.float32)})
    plan = write_plan(tmp_path / "b", max_batch=4, size=8)
    with TrtRunner(plan, cuda=FakeCuda(), trt=FakeTrt(capture_breaks=True), cuda_graph=True) as r:
        r.infer({"input": np.zeros((3, 3, 8, 8), np.float32)})


def test_every_runner_call_fits_a_real_binding_signature(tmp_path, tlb):
    fakes.CALLS.clear()
    _run_every_path(tmp_path)
    seen = {(kind, name) for kind, name, _a, _k in fakes.CALLS}
    for needed in [("IExecutionContext", n) for n in ("set_input_shape", "set_tensor_address", "execute_async_v3", "set_device_memory")] + [
            ("ICudaEngine", n) for n in ("get_tensor_profile_shape", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype",
                                         "get_tensor_shape", "create_execution_context")] + [
            ("Runtime", "deserialize_cuda_engine"), ("Runtime", "__init__"), ("Logger", "__init__"), ("module", "nptype")]:
        assert needed in seen, needed
    checked = 0
    for kind, name, args, kwargs in fakes.CALLS:
        real = getattr(_real(tlb, kind), name)
        if kind == "module":  # a Python function in the bindings' package
            inspect.signature(real).bind(*args, **kwargs)
        else:
            sigs = overloads(real, name)
            assert any(call_fits(sig, args, kwargs) for sig in sigs), (
                f"{kind}.{name}{args!r} {kwargs or ''} fits none of the real signatures {sigs}")
        checked += 1
    assert checked > 40


def test_the_order_of_the_named_calls(tmp_path, tlb):
    """The four calls issue 8 names, spelled out: each argument where the binding expects it."""
    fakes.CALLS.clear()
    _run_every_path(tmp_path)
    first = {}
    for kind, name, args, kwargs in fakes.CALLS:
        first.setdefault(name, (args, kwargs))
    assert first["get_tensor_profile_shape"] == (("input", 0), {})
    (name, shape), _ = first["set_input_shape"]
    assert name == "input" and isinstance(shape, tuple) and shape[1:] == (3, 8, 8)
    (name, memory), _ = first["set_tensor_address"]
    assert name in ("input", "logits") and isinstance(memory, int) and memory > 0
    (stream,), _ = first["execute_async_v3"]
    assert isinstance(stream, int) and stream > 0
    (memory, size), _ = first["set_device_memory"]
    assert memory > 0 and size == fakes.FakeEngine.device_memory_size_v2.fget(None)


def test_the_fakes_have_the_real_signatures(tlb):
    """Each fake method that mirrors a binding takes the binding's parameters, in its order."""
    pairs = [(fakes.FakeEngine, tlb.ICudaEngine), (fakes.FakeContext11, tlb.IExecutionContext),
             (fakes.FakeRuntime, tlb.Runtime), (fakes.FakeLogger, tlb.Logger)]
    compared = 0
    for fake_cls, real_cls in pairs:
        for name, member in vars(fake_cls).items():
            constructed_by_user = fake_cls in (fakes.FakeRuntime, fakes.FakeLogger)
            if not callable(member) or isinstance(member, type) or (
                    name.startswith("_") and not (name == "__init__" and constructed_by_user)):
                continue
            if name in vars(fakes._Recorded):
                continue
            real = getattr(real_cls, name, None)
            assert real is not None, f"{real_cls.__name__} has no {name}"
            fake_params = [p for p in inspect.signature(member).parameters if p != "self"]
            real_sigs = [[p[0] for p in sig] for sig in overloads(real, name)]
            assert fake_params in real_sigs, f"{fake_cls.__name__}.{name}{fake_params} vs {real_sigs}"
            compared += 1
    for cls in (fakes.FakeContext, fakes.FakeContext11):
        for name, member in vars(cls).items():
            if callable(member) and not name.startswith("_"):
                real_params = [[p[0] for p in sig] for sig in overloads(getattr(tlb.IExecutionContext, name), name)]
                assert [p for p in inspect.signature(member).parameters if p != "self"] in real_params, name
                compared += 1
    assert compared >= 12


@pytest.mark.parametrize("enum_name, real_path", [
    ("FakeDataType", "DataType"),
    ("FakeTensorIOMode", "TensorIOMode"),
    ("FakeExecutionContextAllocationStrategy", "ExecutionContextAllocationStrategy"),
    ("FakeSeverity", "ILogger.Severity"),
])
def test_fake_enums_equal_the_real_members(tlb, enum_name, real_path):
    real = tlb
    for part in real_path.split("."):
        real = getattr(real, part)
    fake = getattr(fakes, enum_name)
    assert {m.name: int(m) for m in fake} == {k: int(v) for k, v in real.__members__.items()}


def test_fake_nptype_matches_the_real_one(tlb):
    for name, member in tlb.DataType.__members__.items():
        try:
            want = tlb.nptype(member)
        except TypeError:
            with pytest.raises(TypeError):
                fakes.fake_nptype(fakes.FakeDataType[name])
            continue
        assert fakes.fake_nptype(fakes.FakeDataType[name]) is want, name
    assert tlb.Logger.WARNING == tlb.ILogger.Severity.WARNING and int(fakes.FakeLogger.WARNING) == int(tlb.Logger.WARNING)


def test_every_attribute_used_exists_on_the_real_classes(tmp_path, tlb):
    fakes.USED.clear()
    _run_every_path(tmp_path)
    assert {"Runtime", "ICudaEngine", "IExecutionContext", "module"} <= set(fakes.USED)
    for kind, names in fakes.USED.items():
        missing = sorted(n for n in names if not hasattr(_real(tlb, kind), n))
        assert not missing, f"{kind} lacks {missing}"


def test_every_tensorrt_name_in_trt_py_exists_or_is_documented_for_an_older_line(tlb):
    """Also the branches the fakes' 11.x run skips (8.6 / 10.0 memory APIs)."""
    import corese_edge.runtime.trt as trt_mod

    source = Path(trt_mod.__file__).read_text()
    targets = {
        r"(?:self\._engine|\bengine)\.(\w+)": tlb.ICudaEngine,
        r"(?:self\._context|\bctx)\.(\w+)": tlb.IExecutionContext,
        r"self\._runtime\.(\w+)": tlb.Runtime,
        r"\btrt\.(\w+)": tlb,
        r"\bstrategy\.(\w+)": tlb.ExecutionContextAllocationStrategy,
    }
    for pattern, cls in targets.items():
        names = set(re.findall(pattern, source))
        assert names, pattern
        missing = sorted(n for n in names if not hasattr(cls, n) and n not in OLDER_LINES_ONLY)
        assert not missing, f"{getattr(cls, '__name__', cls)} lacks {missing}"
    for quoted in re.findall(r'"(device_memory_size(?:_v2)?)"', source):
        assert hasattr(tlb.ICudaEngine, quoted) or quoted in OLDER_LINES_ONLY, quoted
    for name in OLDER_LINES_ONLY:
        assert not hasattr(tlb.ICudaEngine, name), f"{name} is in 11.4 after all: drop it from OLDER_LINES_ONLY"
