"""The OpenVINO signal-stack crash (corese_edge/sigstack.py): reproduced with real OpenVINO cores in a
child process, and repaired."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from corese_edge.sigstack import current_stack, repair_signal_stack, signal_stack_is_valid

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sigaltstack handling is Linux-only")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: two cores whose CPU plugins are freed in the order they were made, then a Python signal handler
OUT_OF_ORDER = """
import gc, os, signal
import openvino as ov
ran = []
signal.signal(signal.SIGUSR1, lambda *a: ran.append(1))
a = ov.Core(); a.get_property("CPU", "FULL_DEVICE_NAME")
b = ov.Core(); b.get_property("CPU", "FULL_DEVICE_NAME")
del a; gc.collect()
del b; gc.collect()
from corese_edge.sigstack import repair_signal_stack, signal_stack_is_valid
print("valid", signal_stack_is_valid())
if REPAIR:
    print("repaired", repair_signal_stack())
os.kill(os.getpid(), signal.SIGUSR1)
print("handler ran", ran == [1])
"""


def _child(repair: bool) -> subprocess.CompletedProcess:
    code = f"REPAIR = {repair}\n" + textwrap.dedent(OUT_OF_ORDER)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cores_freed_out_of_order_crash_the_next_signal_and_the_repair_prevents_it():
    pytest.importorskip("openvino")
    broken = _child(repair=False)
    if broken.returncode == 0:
        pytest.skip(f"this OpenVINO restores the signal stack itself: {broken.stdout.strip()}")
    assert broken.returncode == -11, broken.stderr[-2000:]  # SIGSEGV from the kernel at signal delivery
    assert "valid False" in broken.stdout
    fixed = _child(repair=True)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert fixed.stdout.split() == ["valid", "False", "repaired", "True", "handler", "ran", "True"]


def test_repair_leaves_a_valid_stack_alone():
    before = current_stack()
    assert signal_stack_is_valid()
    assert repair_signal_stack() is False
    assert current_stack() == before


def test_the_runner_and_the_exporter_share_one_core_that_outlives_them(tmp_path):
    pytest.importorskip("openvino")
    from corese_edge.export.openvino import device_float_precision
    from corese_edge.runtime.openvino import OpenVinoRunner, shared_core
    from tests.runtime.test_openvino_runner import ir_from, write_tiny_onnx

    xml = ir_from(write_tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.xml")
    core = shared_core()
    assert shared_core() is core
    device_float_precision("CPU")
    with OpenVinoRunner(xml) as runner:
        assert runner.core is core
    assert signal_stack_is_valid()
