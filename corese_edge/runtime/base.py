"""The Runner protocol shared by the TensorRT, ONNX Runtime and torch backends (Polygraphy's shape).

A runner is created cheaply, :meth:`Runner.activate` loads the model and allocates everything once,
:meth:`Runner.infer` maps ``{input name: array}`` to ``{output name: array}``, and
:meth:`Runner.close` frees it.  It is also a context manager::

    with OrtRunner("model.onnx") as runner:
        logits = runner.infer({"input": batch})["logits"]
        print(runner.last_inference_time)   # seconds, host wall time of that call

Inputs are checked before they reach the backend: the names, the dtype, the rank, every fixed
dimension and the batch against the model's maximum; each mismatch is a one-line
:class:`~corese_edge.errors.UserError`.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from corese_edge.errors import UserError
from corese_edge.metadata import ArtifactMetadata


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: ``shape`` holds ``None`` for a dynamic dimension (the batch)."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = "x".join("N" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {np.dtype(self.dtype).name}[{dims}]"


class Runner(abc.ABC):
    """Base class of every backend.  Subclasses implement ``_activate``, ``_infer``, ``_close``.

    After :meth:`activate`, ``inputs``/``outputs`` list the tensors, ``metadata`` holds the class
    names and preprocessing read from the artifact, and ``max_batch`` is the largest batch the
    backend accepts (``None`` when unbounded).
    """

    backend: str = "?"

    def __init__(self, path: str) -> None:
        self.path = str(path)
        self.is_active = False
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()
        self.metadata: ArtifactMetadata | None = None
        self.metadata_problem: str | None = None
        self.max_batch: int | None = None
        self.precision: str = "fp32"
        self._last_inference_time: float | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def activate(self) -> "Runner":
        """Load the model and allocate buffers (idempotent).  Returns ``self``."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one query.  ``feed`` maps every input name to an array of the input's dtype.

        Returns a new dict of output name -> array, owned by the caller.  The host wall time of the
        call (validation excluded) is kept in :attr:`last_inference_time`.
        """
        if not self.is_active:
            raise UserError(f"{type(self).__name__} for {self.path} is not active: call activate() or use 'with'")
        self.check_feed(feed)
        start = time.perf_counter()
        out = self._infer(feed)
        self._last_inference_time = time.perf_counter() - start
        return out

    def close(self) -> None:
        """Free the model and every buffer (idempotent)."""
        if self.is_active:
            try:
                self._close()
            finally:
                self.is_active = False

    deactivate = close  # Polygraphy's name

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten close() must not leak device memory
        try:
            self.close()
        except Exception:
            pass

    # -- introspection ---------------------------------------------------------------------------
    @property
    def last_inference_time(self) -> float | None:
        """Seconds spent in the last :meth:`infer` call (``None`` before the first)."""
        return self._last_inference_time

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def input_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {t.name: t.shape for t in self.inputs}

    @property
    def output_shapes(self) -> dict[str, tuple[int | None, ...]]:
        return {t.name: t.shape for t in self.outputs}

    @property
    def input_dtypes(self) -> dict[str, np.dtype]:
        return {t.name: t.dtype for t in self.inputs}

    @property
    def output_dtypes(self) -> dict[str, np.dtype]:
        return {t.name: t.dtype for t in self.outputs}

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> int:
        """Validate ``feed`` against :attr:`inputs`; return its batch size."""
        if not isinstance(feed, Mapping):
            raise UserError(f"infer() takes a dict of input name -> array, got {type(feed).__name__}")
        expected = self.input_names
        if set(feed) != set(expected):
            raise UserError(f"{self.path}: expected inputs {expected}, got {sorted(feed)}")
        batch = -1
        for spec in self.inputs:
            value = feed[spec.name]
            if not isinstance(value, np.ndarray):
                raise UserError(f"input {spec.name!r} must be a numpy array, got {type(value).__name__}")
            if value.dtype != spec.dtype:
                raise UserError(f"input {spec.name!r} must be {np.dtype(spec.dtype).name}, got {value.dtype} ({spec.describe()})")
            if value.ndim != len(spec.shape) or any(
                want is not None and want != got for want, got in zip(spec.shape, value.shape)
            ):
                raise UserError(f"input {spec.name!r} has shape {value.shape}; the model takes {spec.describe()}")
            if value.ndim and batch < 0:
                batch = int(value.shape[0])
        if batch == 0:
            raise UserError("empty batch: the inputs have 0 rows")
        if self.max_batch is not None and batch > self.max_batch:
            raise UserError(
                f"batch {batch} exceeds the maximum batch {self.max_batch} of {self.path}; "
                "split it (ExpressionClassifier does this for you) or rebuild with a larger --max-batch"
            )
        return batch

    # -- backend hooks ---------------------------------------------------------------------------
    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    @abc.abstractmethod
    def _close(self) -> None: ...

    def __repr__(self) -> str:
        state = "active" if self.is_active else "inactive"
        return f"{type(self).__name__}({self.path!r}, {state})"
