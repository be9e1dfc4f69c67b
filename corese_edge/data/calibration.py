"""Calibration images for INT8 quantization, and a streaming batch reader over them.

Calibration never sees the test split: :func:`calibration_samples` draws from the samples it is
given (the train split minus the validation part carved from it), stratified across classes, and
:func:`folder_images` reads any folder of images (unlabelled is fine), for example frames from the
user's own cameras.  :func:`calibration_batches` decodes and preprocesses one batch at a time, so
memory stays bounded however many images are used.

Torch-free (numpy, OpenCV and albumentations, like training's eval transform).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from corese_edge.images import is_image_file, read_rgb
from corese_edge.errors import DataError
from corese_edge.preprocessing import Preprocessing


def calibration_samples(samples: Sequence, size: int, seed: int = 0) -> list:
    """``size`` samples drawn without replacement, stratified across classes.

    Each class gets a share proportional to its frequency (largest remainder), and at least one
    image while ``size`` allows it.  Deterministic for a seed and independent of input order.
    Returns all samples when ``size`` is at least their number.  Sorted by path.
    """
    if size <= 0:
        raise DataError(f"calibration size must be positive, got {size}")
    ordered = sorted(samples, key=lambda s: str(s.path))
    if size >= len(ordered):
        return ordered
    by_label: dict[int, list] = {}
    for s in ordered:
        by_label.setdefault(int(s.label), []).append(s)
    labels = sorted(by_label)
    total = len(ordered)
    quota = {lab: size * len(by_label[lab]) / total for lab in labels}
    take = {lab: int(quota[lab]) for lab in labels}
    if size >= len(labels):  # every class represented when there is room
        for lab in labels:
            take[lab] = max(take[lab], 1)
    # too many after the one-per-class floor: take back from the largest shares
    while sum(take.values()) > size:
        lab = max(labels, key=lambda k: (take[k], -k))
        take[lab] -= 1
    # too few: hand out by the largest fractional remainder while a class has images left
    by_remainder = sorted(labels, key=lambda k: (-(quota[k] - int(quota[k])), k))
    while sum(take.values()) < size:
        for lab in by_remainder:
            if sum(take.values()) < size and take[lab] < len(by_label[lab]):
                take[lab] += 1
    chosen: list = []
    for lab in labels:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, lab, 0xCA11B])
        group = by_label[lab]
        idx = rng.permutation(len(group))[: take[lab]]
        chosen.extend(group[j] for j in sorted(idx.tolist()))
    return sorted(chosen, key=lambda s: str(s.path))


def folder_images(folder: str | os.PathLike, size: int | None = None, seed: int = 0) -> list[Path]:
    """Image files anywhere under ``folder`` (sorted); a seeded random ``size`` of them if given."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"--calib-data {root} is not a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not paths:
        raise DataError(f"--calib-data {root} holds no images (looked for .jpg, .png, .bmp, .webp, .tif)")
    if size is not None and size < len(paths):
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xF01D])
        idx = sorted(rng.choice(len(paths), size=size, replace=False).tolist())
        paths = [paths[i] for i in idx]
    return paths


def preprocess_image(path: str | os.PathLike, transform) -> np.ndarray:
    """One image file -> CHW float32 through ``transform`` (an albumentations eval transform)."""
    image = read_rgb(path)
    out = transform(image=image)["image"]
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def calibration_batches(
    paths: Iterable[str | os.PathLike], prep: Preprocessing, batch_size: int = 8
) -> Iterator[np.ndarray]:
    """Yield NCHW float32 batches (the last may be smaller), decoding lazily: one batch in memory."""
    from corese_edge.data.transforms import eval_transform

    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    transform = eval_transform(prep)
    batch: list[np.ndarray] = []
    for path in paths:
        batch.append(preprocess_image(path, transform))
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


class CalibrationBatches:
    """A re-iterable, sized stream of calibration batches over a fixed list of image paths."""

    def __init__(self, paths: Sequence[str | os.PathLike], prep: Preprocessing, batch_size: int = 8) -> None:
        if not paths:
            raise DataError("no calibration images")
        self.paths = [Path(p) for p in paths]
        self.prep = prep
        self.batch_size = int(batch_size)

    def __len__(self) -> int:
        return -(-len(self.paths) // self.batch_size)

    @property
    def num_images(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        return calibration_batches(self.paths, self.prep, self.batch_size)
