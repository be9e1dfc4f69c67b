"""Where an export's images come from: the checkpoint, the dataset's splits, the calibration set.

Nothing is chosen on the test split: the drift report runs on ``--val-split`` (test by default),
every choice (FP16 ops kept in FP32, ``--auto-keep`` layers) on the validation split carved from
train, and calibration on the rest of train (or ``--calib-data``), never on test.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corese_edge.errors import CheckpointError, DataError
from corese_edge.export.config import ExportConfig


def newest_checkpoint(runs: str | os.PathLike = "runs") -> Path:
    """The newest ``swa_final.pt`` under ``runs`` (what ``corese-edge train`` writes last)."""
    root = Path(runs)
    found = sorted(root.glob("**/swa_final.pt"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    if not found:
        raise CheckpointError(
            f"no checkpoint given and no {root}/*/swa_final.pt found; train first "
            "(corese-edge train) or pass --checkpoint PATH"
        )
    return found[-1]


@dataclass(frozen=True)
class ExportData:
    """The images one export works on, by the job each split does (all as dataset samples)."""

    class_names: tuple[str, ...]
    calib_pool: tuple  # train split minus the selection split
    selection: tuple  # validation split carved from train (choices are made here)
    test: tuple
    evaluation: tuple  # --val-split: where drift is reported
    root: str
    layout: str


def load_data(cfg: ExportConfig, ckpt) -> ExportData:
    """The dataset of ``cfg`` (or the one ``ckpt`` records), checked against the checkpoint's classes,
    with the validation split carved from train as training carved it."""
    from corese_edge.data.layouts import load_index, stratified_split

    root = cfg.data or (ckpt.dataset or {}).get("root") or ckpt.config.get("data")
    if not root:
        raise DataError(f"{ckpt.path} records no dataset; pass --data DIR")
    layout = "auto"
    if not cfg.data:
        layout = (ckpt.dataset or {}).get("layout") or ckpt.config.get("dataset") or "auto"
    index = load_index(root, layout)
    names = tuple(index.class_names)
    if len(names) != ckpt.num_classes:
        raise CheckpointError(
            f"{ckpt.path} predicts {ckpt.num_classes} classes ({', '.join(ckpt.class_names)}) but the dataset "
            f"at {index.root} has {len(names)} ({', '.join(names)}); export it with the data it was trained on (--data)"
        )
    if [n.lower() for n in names] != [n.lower() for n in ckpt.class_names]:
        raise CheckpointError(
            f"{ckpt.path} classes {list(ckpt.class_names)} do not match the dataset's {list(names)} at {index.root}"
        )
    fraction = float(ckpt.config.get("val_fraction") or 0.1)
    seed = int(ckpt.config.get("seed", cfg.seed))
    pool, selection = stratified_split(index.split("train"), fraction, seed)
    test = tuple(index.split("test"))
    evaluation = test if cfg.val_split == "test" else tuple(selection)
    if not evaluation:
        raise DataError(f"the {cfg.val_split} split of {index.root} has no images to measure drift on")
    return ExportData(names, tuple(pool), tuple(selection), test, evaluation, str(index.root), index.layout)


def calibration_paths(cfg: ExportConfig, data: ExportData) -> tuple[list[Path], dict[str, Any]]:
    """The calibration images (from ``--calib-data``, or the train split minus the validation part) and
    export.json's description of them; refuses any test image."""
    from corese_edge.data.calibration import calibration_samples, folder_images

    test_paths = {Path(s.path).resolve() for s in data.test}
    if cfg.calib_data:
        paths = folder_images(cfg.calib_data, cfg.calib_size, cfg.seed)
        overlap = [p for p in paths if p.resolve() in test_paths]
        if overlap:
            raise DataError(
                f"--calib-data {cfg.calib_data} contains test images ({overlap[0]}, {len(overlap)} in all); "
                "calibration must never see the test split"
            )
        return paths, {"source": os.fspath(cfg.calib_data), "images": len(paths)}
    chosen = calibration_samples(data.calib_pool, cfg.calib_size, cfg.seed)
    counts = {name: 0 for name in data.class_names}
    for s in chosen:
        counts[data.class_names[s.label]] += 1
    paths = [Path(s.path) for s in chosen]
    if any(p.resolve() in test_paths for p in paths):
        raise DataError(f"{data.root}: a file is listed in both the train and the test split; fix the dataset")
    return paths, {"source": "train split (validation part excluded)", "images": len(paths), "per_class": counts}


def load_images(samples: Sequence, prep) -> tuple[np.ndarray, np.ndarray]:
    """``samples`` preprocessed into one NCHW float32 array, and their labels (int64)."""
    from corese_edge.export.comparator import image_batches

    batches = list(image_batches([s.path for s in samples], prep, 32))
    return np.concatenate(batches), np.asarray([s.label for s in samples], dtype=np.int64)
