"""User-facing errors.

A :class:`UserError` is something the user can fix (a wrong path, a corrupt image, a missing
extra).  The CLI prints its message as one line, without a traceback, and exits with status 2.
Everything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import importlib
from types import ModuleType


class UserError(Exception):
    """An error the user can fix; its message names the file or option and the fix."""


class DataError(UserError):
    """A dataset or image problem (bad layout, unreadable image, unknown class folder)."""


class CheckpointError(UserError):
    """A checkpoint that is missing, corrupt or not what the command expects."""


class MissingExtra(UserError):
    """An optional dependency is not installed."""


def require(module: str, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra` naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised in tests via a fake name
        what = f" ({purpose})" if purpose else ""
        raise MissingExtra(
            f"{module} is not installed{what}: pip install 'corese-edge[{extra}]'  [{exc}]"
        ) from None
