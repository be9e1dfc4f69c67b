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

Timing (what :func:`corese_edge.timing.benchmark_runner` asks, so that the harness never looks at
the backend): :meth:`Runner.prepare_timing` fixes the query's inputs once, :meth:`Runner.timed_query`
runs one query and returns its timing breakdown in milliseconds, and :meth:`Runner.execution_facts`
says how the runner executed (for the report).  The defaults here time the host wall time of one
:meth:`Runner.infer` call; a backend with device timers (TensorRT) overrides them.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

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
        self._timing_feed: dict[str, np.ndarray] = {}

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

    # -- timing ----------------------------------------------------------------------------------
    def prepare_timing(self, feed: Mapping[str, np.ndarray], *, cuda_graph: bool = False,
                       include_transfers: bool = True) -> None:
        """Fix the inputs every following :meth:`timed_query` runs on (checked as :meth:`infer` checks).

        ``cuda_graph`` (replay each batch's enqueue as a CUDA graph) and ``include_transfers``
        (time the host/device copies, trtexec's default) concern backends that copy to a device and
        enqueue there; a backend whose query is one host call ignores them, so one set of bench
        settings applies to every runner of a comparison.
        """
        self.check_feed(feed)
        self._timing_feed = dict(feed)

    def timed_query(self, inputs: Mapping[str, np.ndarray] | None = None) -> dict[str, float]:
        """Run one query on the prepared inputs and return its timing breakdown, in milliseconds.

        ``inputs`` replaces some of the prepared arrays first (same shapes and dtypes; end-to-end
        timing feeds each query freshly preprocessed frames); writing them is not part of any
        returned time.  ``latency_ms`` is always there: here the host wall time of one
        :meth:`infer` call.  A backend with device timers adds what it measures (TensorRT:
        ``gpu_compute_ms``, ``enqueue_ms``, and ``h2d_ms`` / ``d2h_ms`` when transfers are timed);
        a time that does not exist for a backend is absent, never zero.
        """
        if inputs:
            self._timing_feed.update(inputs)
        self.infer(self._timing_feed)
        return {"latency_ms": self._last_inference_time * 1e3}

    def execution_facts(self, batch: int | None = None) -> dict[str, dict[str, Any]]:
        """How this (active) runner executes, by where a bench report records it.

        ``"result"``: keys added to each timed result of ``batch`` (ONNX Runtime: ``providers``;
        OpenVINO: ``execution``; TensorRT: ``cuda_graph``, ``include_transfers`` and, with CUDA
        graphs and a ``batch``, ``cuda_graph_captured``).  ``"device"``: keys added to the report's
        device (TensorRT: ``tensorrt_runtime``).  ``"settings"``: keys added to the report's
        settings (``threads``, for the backends that take a thread count).  Sections without
        facts are absent; the default has none.
        """
        return {}

    def frame_preprocessor(self) -> Callable[[Sequence[np.ndarray]], np.ndarray] | None:
        """``frames -> input batch`` for an artifact with one image input and corese-edge metadata:
        HxWx3 uint8 RGB frames of any size, resized and normalised as the artifact records
        (:class:`~corese_edge.runtime.preprocess.Preprocessor`).  ``None`` for any other model."""
        if self.metadata is None or len(self.inputs) != 1:
            return None
        # cv2 is imported only by whoever asks for preprocessing
        from corese_edge.runtime.preprocess import Preprocessor

        return Preprocessor(self.metadata.preprocessing, np.dtype(self.inputs[0].dtype)).from_frames

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
