"""corese-edge checkpoints: weights + model spec + class names + preprocessing + resolved config.

Layout of the dict saved with ``torch.save`` (and read back with ``weights_only=True``)::

    {"schema": "corese-edge/checkpoint/1",
     "model": {"variant": "coresse", "num_classes": 7, "se_mode": "sample"},
     "class_names": [...], "preprocessing": {...Preprocessing.to_dict()},
     "config": {...resolved TrainConfig}, "dataset": {"root": str, "layout": str},
     "epoch": int, "kind": "last" | "best" | "swa" | "seed-import",
     "state_dict": {...}, "metrics": {...},
     # last.pt only, for --resume:
     "train_state": {"optimizer", "scheduler", "scaler", "swa_state_dict", "swa_n_averaged", ...}}
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from corese_edge.atomic import file_sha256, torch_save  # file_sha256 re-exported: importers use it from here
from corese_edge.errors import CheckpointError
from corese_edge.model.coresse import CoResSE
from corese_edge.model.variants import get_variant
from corese_edge.preprocessing import Preprocessing

SCHEMA = "corese-edge/checkpoint/1"


@dataclass
class Checkpoint:
    path: Path | None
    variant: str
    num_classes: int
    se_mode: str
    class_names: list[str]
    preprocessing: Preprocessing
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    kind: str = "last"
    metrics: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] | None = None

    def build_model(self, se_mode: str | None = None) -> CoResSE:
        """A CoResSE with these weights, in eval mode."""
        model = CoResSE(self.variant, self.num_classes, se_mode or self.se_mode)
        try:
            model.load_state_dict(self.state_dict, strict=True)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{self.path}: weights do not fit model {self.variant!r}: {first}") from None
        return model.eval()

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema": SCHEMA,
            "model": {"variant": self.variant, "num_classes": self.num_classes, "se_mode": self.se_mode},
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.to_dict(),
            "config": self.config,
            "dataset": self.dataset,
            "epoch": self.epoch,
            "kind": self.kind,
            "metrics": self.metrics,
            "state_dict": self.state_dict,
        }
        if self.train_state is not None:
            d["train_state"] = self.train_state
        return d

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        torch_save(self.to_dict(), path)
        self.path = path
        return path


#: what a corese-edge command expects, for the error message of a file it cannot read
CHECKPOINT_HINT = "pass a corese-edge .pt (train's swa_final.pt, or import-seed's output)"


def safe_torch_load(path: Path, hint: str = CHECKPOINT_HINT) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain containers only.

    A pickle that names any other global (a class, or a callable like ``exec`` that a crafted
    ``__reduce__`` would run) is refused before anything is called; that is the only way
    checkpoints are read, so no code runs from a checkpoint.  Every failure is one
    :class:`CheckpointError` line.
    """
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and unpickler errors
        text = str(exc)
        if not zipfile.is_zipfile(path):
            why = "not a torch.save file"
        elif "Weights only load failed" in text:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            what = f" ({found.group(1)})" if found else ""
            why = f"it carries pickled Python objects{what}, which could run code; refused"
        else:
            why = (text.strip().splitlines() or [type(exc).__name__])[0][:120]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({why}); {hint}") from None


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a corese-edge checkpoint (``weights_only=True``). Seed files get a pointer to import-seed."""
    path = Path(path)
    raw = safe_torch_load(path)
    if not isinstance(raw, Mapping) or raw.get("schema") != SCHEMA:
        if isinstance(raw, Mapping) and "model_state" in raw:
            raise CheckpointError(
                f"{path} is a seed-notebook checkpoint; convert it first: "
                f"corese-edge import-seed {path} --out model.pt --num-classes N"
            )
        raise CheckpointError(f"{path} is not a corese-edge checkpoint (no '{SCHEMA}' schema)")
    m = raw["model"]
    get_variant(m["variant"])
    return Checkpoint(
        path=path,
        variant=m["variant"],
        num_classes=int(m["num_classes"]),
        se_mode=m.get("se_mode", "sample"),
        class_names=list(raw["class_names"]),
        preprocessing=Preprocessing.from_dict(raw["preprocessing"]),
        state_dict=raw["state_dict"],
        config=dict(raw.get("config") or {}),
        dataset=dict(raw.get("dataset") or {}),
        epoch=int(raw.get("epoch", 0)),
        kind=str(raw.get("kind", "")),
        metrics=dict(raw.get("metrics") or {}),
        train_state=raw.get("train_state"),
    )


def load_model(path: str | os.PathLike, se_mode: str | None = None) -> CoResSE:
    """Public API: a corese-edge checkpoint -> ``torch.nn.Module`` in eval mode.

    The module takes normalised NCHW float32 input (see the checkpoint's preprocessing) and
    returns logits ``(N, num_classes)``.  Class names and preprocessing are attached as
    ``model.class_names`` and ``model.preprocessing``.
    """
    ckpt = load_checkpoint(path)
    model = ckpt.build_model(se_mode)
    model.class_names = list(ckpt.class_names)  # type: ignore[attr-defined]
    model.preprocessing = ckpt.preprocessing  # type: ignore[attr-defined]
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A plain state dict from a corese-edge checkpoint, a seed checkpoint or a bare state dict."""
    path = Path(path)
    raw = safe_torch_load(path)
    if isinstance(raw, Mapping) and raw.get("schema") == SCHEMA:
        return dict(raw["state_dict"])
    if isinstance(raw, Mapping) and "model_state" in raw:
        raw = raw["model_state"]
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: not a state dict")
    return {k.removeprefix("module."): v for k, v in raw.items() if k != "n_averaged"}


