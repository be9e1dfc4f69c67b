"""Stage 4: accuracy drift of every artifact against the PyTorch FP32 reference, and the drift gate.

All artifacts run on the same validation images (docs/ARCHITECTURE.md, "Drift before engines").  Per artifact the report gives
accuracy, its change from the reference in percentage points, top-1 agreement with the reference,
per-class recall change and |logit| differences.  Units: ``accuracy`` and ``agreement`` are
fractions in [0, 1]; every ``*_pp`` value is in percentage points, positive meaning a *drop*.

``drift_report.json``::

    {"schema": "corese-edge/drift/1",
     "reference": {"name": "pytorch-fp32", "accuracy": 0.87, "split": "test", "images": 3068, ...},
     "max_drift_pp": 1.0, "passed": true, "failed": [],
     "artifacts": {"onnx-int8": {"accuracy", "accuracy_drop_pp", "agreement", "max_abs_logit_diff",
                                 "mean_abs_logit_diff", "per_class_recall_drop_pp": {...},
                                 "passed": true, "census": {...}, ...}}}

Every entry the export adds also says what ran: ``backend`` (``onnx`` under ONNX Runtime, ``trt``,
``openvino``) and ``precision``, the precision the backend really computed in: the graph's for an
ONNX artifact, OpenVINO's inference precision after compiling for an IR (``bf16`` for the float IR
on a CPU with AMX, ``int8``), never assumed from the file name.

``census`` (ONNX artifacts) is :meth:`corese_edge.export.census.PrecisionCensus.to_dict`, the same
data export.json carries under ``"census"``; the Markdown report tabulates its FLOP shares.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corese_edge.atomic import atomic_path, write_json, write_text
from corese_edge.errors import UserError

SCHEMA = "corese-edge/drift/1"
REFERENCE_NAME = "pytorch-fp32"
#: tolerance when comparing a drop against the limit (float noise on 0.0 pp)
_EPS = 1e-9


class DriftGateFailed(UserError):
    """An artifact lost more accuracy than ``--max-drift`` allows; the files are kept and marked failed."""


def per_class_recall(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall per class (NaN for a class without images)."""
    recall = np.full(num_classes, np.nan)
    for c in range(num_classes):
        mask = labels == c
        if mask.any():
            recall[c] = float(np.mean(preds[mask] == c))
    return recall


@dataclass
class DriftReport:
    """Drift of each artifact against reference logits on one labelled image set."""

    class_names: tuple[str, ...]
    labels: np.ndarray
    reference_logits: np.ndarray
    max_drift_pp: float
    split: str = "test"
    reference_name: str = REFERENCE_NAME
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.reference_logits = np.asarray(self.reference_logits, dtype=np.float32)
        if len(self.labels) == 0:
            raise UserError(f"no {self.split} images to measure drift on")
        if self.reference_logits.shape != (len(self.labels), len(self.class_names)):
            raise ValueError(f"reference logits {self.reference_logits.shape} do not fit "
                             f"{len(self.labels)} labels x {len(self.class_names)} classes")
        self._ref_pred = self.reference_logits.argmax(1)
        self._ref_recall = per_class_recall(self.labels, self._ref_pred, len(self.class_names))

    @classmethod
    def from_run(cls, results, reference: str, class_names: Sequence[str], max_drift_pp: float,
                 split: str = "test") -> "DriftReport":
        """A report judged against ``results.logits[reference]`` (a
        :class:`~corese_edge.export.comparator.RunResults`) on its labels; add the artifacts with
        :meth:`add`."""
        return cls(tuple(class_names), results.labels, results.logits[reference], max_drift_pp, split=split)

    # ------------------------------------------------------------------------------ metrics
    @property
    def reference_accuracy(self) -> float:
        return float(np.mean(self._ref_pred == self.labels))

    def add(self, name: str, logits: np.ndarray, **extra: Any) -> dict[str, Any]:
        """Measure ``logits`` (same images, same order) against the reference; store and return it."""
        logits = np.asarray(logits, dtype=np.float32)
        if logits.shape != self.reference_logits.shape:
            raise ValueError(f"{name}: logits {logits.shape} vs reference {self.reference_logits.shape}")
        pred = logits.argmax(1)
        accuracy = float(np.mean(pred == self.labels))
        recall = per_class_recall(self.labels, pred, len(self.class_names))
        diff = np.abs(logits - self.reference_logits)
        drop = 100.0 * (self.reference_accuracy - accuracy)
        entry = {
            "accuracy": accuracy,
            "accuracy_drop_pp": drop,
            "agreement": float(np.mean(pred == self._ref_pred)),
            "max_abs_logit_diff": float(diff.max()),
            "mean_abs_logit_diff": float(diff.mean()),
            "per_class_recall_drop_pp": {
                c: (None if np.isnan(r0) else 100.0 * float(r0 - r))
                for c, r0, r in zip(self.class_names, self._ref_recall, recall)
            },
            "passed": bool(drop <= self.max_drift_pp + _EPS),
        }
        entry.update(extra)
        self.artifacts[name] = entry
        return entry

    @property
    def failed(self) -> list[str]:
        return [name for name, a in self.artifacts.items() if not a["passed"]]

    @property
    def passed(self) -> bool:
        return not self.failed

    def check(self) -> None:
        """Raise :class:`DriftGateFailed` naming each artifact over the limit."""
        if self.passed:
            return
        worst = ", ".join(f"{n} dropped {self.artifacts[n]['accuracy_drop_pp']:.2f} pp" for n in self.failed)
        raise DriftGateFailed(
            f"drift gate failed: {worst} on {self.split} (limit --max-drift {self.max_drift_pp:g} pp); "
            "the files are kept and drift_report.json marks them failed"
        )

    # ------------------------------------------------------------------------------ output
    def to_dict(self) -> dict[str, Any]:
        ref_recall = {c: (None if np.isnan(r) else float(r)) for c, r in zip(self.class_names, self._ref_recall)}
        return {
            "schema": SCHEMA,
            "reference": {
                "name": self.reference_name,
                "accuracy": self.reference_accuracy,
                "split": self.split,
                "images": int(len(self.labels)),
                "per_class_recall": ref_recall,
            },
            "max_drift_pp": float(self.max_drift_pp),
            "passed": self.passed,
            "failed": self.failed,
            "artifacts": self.artifacts,
            "notes": list(self.notes),
        }

    def to_markdown(self) -> str:
        lines = [
            "# Accuracy drift",
            "",
            f"Reference: {self.reference_name}, accuracy {self.reference_accuracy:.2%} on {len(self.labels)} "
            f"{self.split} images.  Limit: {self.max_drift_pp:g} pp.  Result: **{'passed' if self.passed else 'FAILED'}**.",
            "",
            "| artifact | accuracy | drop (pp) | agreement | max abs logit diff | mean abs logit diff | gate | ran as |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- |",
        ]
        for name, a in self.artifacts.items():
            ran = " ".join(str(a[k]) for k in ("backend", "precision") if a.get(k)) or "-"
            lines.append(
                f"| {name} | {a['accuracy']:.2%} | {a['accuracy_drop_pp']:+.2f} | {a['agreement']:.2%} | "
                f"{a['max_abs_logit_diff']:.4g} | {a['mean_abs_logit_diff']:.4g} | {'pass' if a['passed'] else 'FAIL'} | {ran} |"
            )
        lines += ["", "Recall drop per class (pp, positive = worse than the reference):", ""]
        names = list(self.artifacts)
        lines.append("| class | " + " | ".join(names) + " |")
        lines.append("| --- |" + " ---: |" * len(names))
        for c in self.class_names:
            cells = []
            for n in names:
                v = self.artifacts[n]["per_class_recall_drop_pp"].get(c)
                cells.append("n/a" if v is None else f"{v:+.2f}")
            lines.append(f"| {c} | " + " | ".join(cells) + " |")
        censused = {name: a["census"] for name, a in self.artifacts.items() if a.get("census")}
        if censused:
            lines += ["", "Precision census (where each layer runs under TensorRT's strong typing; share of FLOPs):", "",
                      "| artifact | INT8 | FP16 | FP32 | FP32 compute nodes |", "| --- | ---: | ---: | ---: | --- |"]
            for name, c in censused.items():
                share = {p: 100 * c["precisions"].get(p, {}).get("flop_share", 0.0) for p in ("int8", "fp16", "fp32")}
                fp32 = c.get("fp32_nodes", [])
                listed = ", ".join(f"`{n['name']}`" for n in fp32[:5]) + (f" (+{len(fp32) - 5} more)" if len(fp32) > 5 else "")
                lines.append(f"| {name} | {share['int8']:.2f}% | {share['fp16']:.2f}% | {share['fp32']:.2f}% | "
                             f"{len(fp32)}{': ' + listed if fp32 else ''} |")
        for name, a in self.artifacts.items():
            if a.get("kept_fp"):
                lines += ["", f"{name}: {len(a['kept_fp'])} layer(s) kept in higher precision: "
                          + ", ".join(f"`{k}`" for k in a["kept_fp"])]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def recall_change_pp(self, name: str) -> dict[str, float | None]:
        """Per-class recall change of artifact ``name`` against the reference, in pp, with better
        upward: the negative of the stored ``per_class_recall_drop_pp`` (None where the class has
        no image)."""
        drops = self.artifacts[name]["per_class_recall_drop_pp"]
        return {c: (None if drops.get(c) is None else -drops[c]) for c in self.class_names}

    def plot(self, path: str | os.PathLike) -> Path:
        """drift.png: accuracy per artifact next to the reference, and the recall change per class
        (up = better than the reference; the tables keep "drop", positive = worse)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = list(self.artifacts)
        fig = Figure(figsize=(12, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax1, ax2 = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
        accs = [100 * self.artifacts[n]["accuracy"] for n in names]
        colors = ["tab:green" if self.artifacts[n]["passed"] else "tab:red" for n in names]
        ax1.bar(range(len(names)), accs, color=colors)
        ax1.axhline(100 * self.reference_accuracy, color="black", linestyle="--", label=self.reference_name)
        ax1.axhline(100 * self.reference_accuracy - self.max_drift_pp, color="grey", linestyle=":",
                    label=f"limit (-{self.max_drift_pp:g} pp)")
        ax1.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax1.set_ylabel(f"accuracy on {self.split} (%)")
        lo = min(accs + [100 * self.reference_accuracy]) - max(2.0, abs(self.max_drift_pp) * 2)
        ax1.set_ylim(max(0.0, lo), 100.0)
        ax1.legend(fontsize=8)
        width = 0.8 / max(1, len(names))
        x = np.arange(len(self.class_names))
        for i, n in enumerate(names):
            change = self.recall_change_pp(n)
            vals = [change[c] for c in self.class_names]
            ax2.bar(x + i * width - 0.4 + width / 2, [0.0 if v is None else v for v in vals], width, label=n)
        ax2.axhline(0, color="black", linewidth=0.8)
        ax2.set_xticks(x, self.class_names, rotation=30, ha="right")
        ax2.set_ylabel(f"recall change vs {self.reference_name} (pp, up = better)")
        ax2.legend(fontsize=8)
        fig.suptitle(f"Accuracy drift vs {self.reference_name} ({len(self.labels)} {self.split} images)")
        fig.tight_layout()
        out = Path(path)
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format="png")
        return out

    def write(self, out_dir: str | os.PathLike) -> tuple[Path, Path, Path]:
        """Write drift_report.json, drift_report.md and drift.png into ``out_dir``."""
        out = Path(out_dir)
        write_json(out / "drift_report.json", self.to_dict())
        write_text(out / "drift_report.md", self.to_markdown())
        self.plot(out / "drift.png")
        return out / "drift_report.json", out / "drift_report.md", out / "drift.png"


def summary_table(rows: Sequence[Sequence[str]], header: Sequence[str] = ("artifact", "size", "accuracy", "drop")) -> str:
    """The closing table (already formatted cells, one per column of ``header``)."""
    header = tuple(header)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt.format(*header), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])
