"""Every artifact through the runners apps embed, on the same images (docs/ARCHITECTURE.md, "One execution path").

:meth:`Comparator.run` takes named runners (:class:`~corese_edge.runtime.ort.OrtRunner`, the
OpenVINO runner, :class:`~corese_edge.runtime.trt.TrtRunner`, the torch reference runner), decodes
the images once per batch and feeds that batch to every runner, so memory holds one batch of pixels
plus the logits.  It returns a typed :class:`RunResults`: the labels, each runner's logits and what
each runner really ran (backend, precision, execution), from which the drift report is computed
(:meth:`corese_edge.export.drift.DriftReport.from_run`)::

    runners = {"reference": TorchRunner(model), "onnx-fp32": drift_ort_runner("model.onnx")}
    results = Comparator.run(runners, samples, prep)
    results.logits["onnx-fp32"]        # (N, classes) float32

The parity check, the drops on the selection split, ``--auto-keep``'s ranking and the drift report
all run through here; cpu-best times the same runners (:mod:`corese_edge.export.cpu_best`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from corese_edge.preprocessing import Preprocessing

#: images per inference call when measuring drift at 224 px; smaller inputs get proportionally
#: larger batches (up to 64), keeping the pixels per call, and so the activation memory, constant
EVAL_BATCH = 8


def eval_batch_size(image_size: int) -> int:
    return int(max(EVAL_BATCH, min(64, EVAL_BATCH * 224 * 224 // max(1, image_size * image_size))))


def image_batches(paths: Sequence, prep: Preprocessing, batch_size: int = EVAL_BATCH):
    """NCHW float32 batches of ``paths`` as training's eval transform makes them, decoded lazily."""
    from corese_edge.data.calibration import calibration_batches

    return calibration_batches(paths, prep, batch_size)


def drift_ort_runner(model: Any, reference_arithmetic: bool = False):
    """The ONNX Runtime runner drift is measured with: the CPU provider and ONNX Runtime's own
    thread and spinning defaults (what the export's sessions have always used), quiet logging.
    ``model`` is a path, ``bytes`` or ModelProto."""
    from corese_edge.runtime.ort import OrtRunner

    runner = OrtRunner(model, providers=["cpu"], spinning=True, reference_arithmetic=reference_arithmetic)
    runner.log_severity_level = 3
    return runner


def runner_logits(runner, batch: np.ndarray, min_batch: int = 1, max_batch: int | None = None) -> np.ndarray:
    """``runner``'s first output (float32) for ``batch`` fed to its first input.

    The batch is cut into chunks of at most ``max_batch`` rows (default: the runner's own
    ``max_batch``, none when unbounded) and a chunk below ``min_batch`` is zero-padded, the padded
    rows dropped again: a TensorRT plan takes only batches inside its optimization profile.
    """
    in_name, out_name = runner.inputs[0].name, runner.outputs[0].name
    step = max_batch or runner.max_batch or len(batch)
    outs = []
    for start in range(0, len(batch), step):
        chunk = batch[start:start + step]
        n = len(chunk)
        if n < min_batch:
            chunk = np.concatenate([chunk, np.zeros((min_batch - n,) + chunk.shape[1:], dtype=chunk.dtype)])
        out = runner.infer({in_name: np.ascontiguousarray(chunk)})[out_name]
        outs.append(np.asarray(out)[:n])
    return np.concatenate(outs).astype(np.float32, copy=False)


def onnx_logits(model: Any, batch: np.ndarray, reference_arithmetic: bool = False) -> np.ndarray:
    """Logits of an ONNX model (path, ``bytes`` or ModelProto) on one preprocessed ``batch``, in one
    call of :func:`drift_ort_runner`'s runner."""
    with drift_ort_runner(model, reference_arithmetic) as runner:
        return runner_logits(runner, batch)


@dataclass(frozen=True)
class RunnerFacts:
    """What one runner really ran: ``backend`` (``ort``, ``openvino``, ``trt``, ``torch``), the
    ``precision`` it computed in (OpenVINO's after compiling, e.g. ``bf16`` on AMX), its
    ``execution`` facts (OpenVINO: device, inference precision, runtime precisions) and, for
    ONNX Runtime, its graph ``optimization`` level (``disabled`` under reference arithmetic)."""

    backend: str
    precision: str
    execution: Mapping[str, Any] = field(default_factory=dict)
    optimization: str | None = None

    @classmethod
    def of(cls, runner) -> "RunnerFacts":
        return cls(runner.backend, runner.precision, dict(getattr(runner, "execution", None) or {}),
                   getattr(runner, "optimization", None))


@dataclass(frozen=True)
class RunResults:
    """Labels of the samples and, per runner name, the logits ``(N, classes)`` float32 and facts."""

    labels: np.ndarray
    logits: Mapping[str, np.ndarray]
    facts: Mapping[str, RunnerFacts]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.logits)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.logits[name]

    def extended(self, more: "RunResults") -> "RunResults":
        """These results followed by ``more``'s rows (same runner names)."""
        return RunResults(np.concatenate([self.labels, more.labels]),
                          {n: np.concatenate([v, more.logits[n]]) for n, v in self.logits.items()}, dict(self.facts))


class Comparator:
    """Runs several runners on one stream of images (Polygraphy's ``Comparator.run`` shape)."""

    @staticmethod
    def run(
        runners: Mapping[str, Any],
        samples: Sequence,
        prep: Preprocessing,
        *,
        batch_limits: Mapping[str, tuple[int, int]] | None = None,
        batch_size: int | None = None,
        progress: bool = False,
        desc: str = "validating",
    ) -> RunResults:
        """Run every runner on every sample's image; ``samples`` have ``.path`` and ``.label``.

        The images are decoded once, ``batch_size`` at a time (default :func:`eval_batch_size` of
        the input size), and each batch goes to every runner in the order given.
        ``batch_limits[name] = (min_batch, max_batch)`` fits that runner's calls into a plan's
        profile (:func:`runner_logits`).  Runners that are not active are activated here and
        closed again at the end; active ones are left as they are.
        """
        batch_size = batch_size or eval_batch_size(prep.size)
        limits = dict(batch_limits or {})
        paths = [s.path for s in samples]
        labels = np.asarray([int(s.label) for s in samples], dtype=np.int64)
        opened = []
        try:
            for runner in runners.values():
                if not runner.is_active:
                    runner.activate()
                    opened.append(runner)
            results: dict[str, list[np.ndarray]] = {name: [] for name in runners}
            batches: Iterable[np.ndarray] = image_batches(paths, prep, batch_size)
            if progress:
                from tqdm.auto import tqdm

                batches = tqdm(batches, total=-(-len(paths) // batch_size), desc=desc, unit="batch", leave=False)
            for batch in batches:
                for name, runner in runners.items():
                    low, high = limits.get(name, (1, None))
                    results[name].append(runner_logits(runner, batch, low, high))
            facts = {name: RunnerFacts.of(runner) for name, runner in runners.items()}
        finally:
            for runner in opened:
                runner.close()
        empty = np.zeros((0, 0), dtype=np.float32)
        return RunResults(labels, {n: (np.concatenate(v) if v else empty) for n, v in results.items()}, facts)


def open_drift_runner(path: os.PathLike | str, reference_arithmetic: bool = False, **openvino_options: Any):
    """The runner the drift report runs ``path`` with: :func:`drift_ort_runner` for ``.onnx``, the
    OpenVINO runner in its default configuration (the deployment) for ``.xml``, the TensorRT
    runner for ``.plan``."""
    suffix = os.fspath(path).lower().rsplit(".", 1)[-1]
    if suffix == "onnx":
        return drift_ort_runner(path, reference_arithmetic)
    if suffix == "xml":
        from corese_edge.runtime.openvino import OpenVinoRunner

        return OpenVinoRunner(os.fspath(path), **openvino_options)
    from corese_edge.runtime.trt import TrtRunner

    return TrtRunner(os.fspath(path))
