"""The calling thread's alternate signal stack, kept pointing at memory that exists.

Why this module exists (docs/ARCHITECTURE.md, "The OpenVINO signal-stack crash"): OpenVINO's CPU plugin
installs its own ``sigaltstack`` on the thread that creates it (an ``ov.Core`` creates one plugin the
first time it touches the CPU device), remembers the previous stack, and in its destructor restores
that previous stack only if its own is still current, then unmaps its own.  Two cores whose plugins
are not destroyed in reverse order of creation (A, B created; A freed, then B) leave the thread's
alternate stack pointing at A's unmapped memory.  Nothing fails then.  The next signal whose handler
runs on the alternate stack (CPython installs every Python-level handler with ``SA_ONSTACK``: SIGINT's
KeyboardInterrupt, the SIGCHLD handler torch's DataLoader sets once it has worker processes) cannot
get a signal frame, and the kernel kills the process with SIGSEGV, in whatever code it was running.

corese-edge avoids the order problem for its own cores (one process-wide core,
``runtime.openvino.shared_core``) and calls :func:`repair_signal_stack` after work that makes cores
it does not own (NNCF makes its own).  Linux only; elsewhere both functions do nothing.
"""
from __future__ import annotations

import contextlib
import ctypes
import mmap
import sys
import threading
from typing import Iterator

#: size of the replacement stack: above the kernel's signal frame with AVX-512 or AMX state (AMX's
#: XSAVE area alone is about 11 KiB) and above CPython faulthandler's own 16 KiB-plus
STACK_BYTES = 64 * 1024
SS_ONSTACK, SS_DISABLE = 1, 2


class _StackT(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


_lock = threading.Lock()
#: thread id -> (mmap, ctypes view) of the replacement stack it got; kept for the life of the process,
#: because a stack may be in use by a handler at any moment after it is installed
_stacks: dict[int, tuple[mmap.mmap, ctypes.c_char]] = {}
_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.sigaltstack.argtypes = [ctypes.POINTER(_StackT), ctypes.POINTER(_StackT)]
        _libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    return _libc


def current_stack() -> tuple[int, int, int] | None:
    """(address, size, flags) of the calling thread's alternate signal stack; None off Linux."""
    if not sys.platform.startswith("linux"):
        return None
    old = _StackT()
    if _c().sigaltstack(None, ctypes.byref(old)) != 0:
        return None
    return int(old.ss_sp or 0), int(old.ss_size), int(old.ss_flags)


def _mapped(address: int, size: int) -> bool:
    """True when every page of [address, address + size) is mapped (``mincore`` answers ENOMEM otherwise)."""
    page = mmap.PAGESIZE
    start = address - address % page
    length = address + size - start
    vec = (ctypes.c_ubyte * (-(-length // page)))()
    return _c().mincore(ctypes.c_void_p(start), ctypes.c_size_t(length), vec) == 0


def _valid(state: tuple[int, int, int] | None) -> bool:
    if state is None:
        return True
    address, size, flags = state
    return bool(flags & SS_DISABLE) or address == 0 or _mapped(address, size)


def signal_stack_is_valid() -> bool:
    """The calling thread's alternate stack is disabled or lies in mapped memory."""
    return _valid(current_stack())


def repair_signal_stack() -> bool:
    """Give the calling thread a valid alternate stack if its current one points at unmapped memory.

    Returns True when it installed one.  A thread that is running on its alternate stack right now
    (inside a signal handler) is left alone."""
    state = current_stack()
    if _valid(state) or state[2] & SS_ONSTACK:
        return False
    with _lock:
        tid = threading.get_ident()
        if tid not in _stacks:
            buf = mmap.mmap(-1, STACK_BYTES)
            _stacks[tid] = (buf, ctypes.c_char.from_buffer(buf))
        view = _stacks[tid][1]
        new = _StackT(ctypes.c_void_p(ctypes.addressof(view)), 0, STACK_BYTES)
        return _c().sigaltstack(ctypes.byref(new), None) == 0


@contextlib.contextmanager
def signal_stack_guard() -> Iterator[None]:
    """Run a block that may create and free OpenVINO cores; repair this thread's alternate stack after."""
    try:
        yield
    finally:
        repair_signal_stack()
