"""Evaluation: logits over a split, the report, and the batch-size independence check."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from corese_edge import __version__
from corese_edge.atomic import write_json
from corese_edge.errors import CheckpointError, UserError
from corese_edge.train.metrics import classification_report

EVAL_SCHEMA = "corese-edge/eval/1"


@torch.no_grad()
def predict_logits(model: nn.Module, dataset, batch_size: int, device: torch.device | str = "cpu", workers: int = 0,
                   amp: torch.dtype | None = None, channels_last: bool = False, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run ``model`` (eval mode) over ``dataset``; returns float32 logits (N, C) and int64 labels (N,).

    ``workers`` loader processes, but none for a split of fewer than two batches per worker: the
    workers' start-up (a few seconds) would cost more than they load (a validation split of a
    hundred images, evaluated every epoch)."""
    from corese_edge.data.dataset import make_loader

    device = torch.device(device)
    was_training = model.training
    model.eval()
    if len(dataset) < 2 * workers * batch_size:
        workers = 0
    loader = make_loader(dataset, workers, batch_size=batch_size)
    if progress:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=f"evaluating (batch {batch_size})", leave=False)
    outs, targets = [], []
    for x, y in loader:
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ctx = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
        with ctx:
            out = model(x)
        outs.append(out.float().cpu().numpy())
        targets.append(y.numpy())
    model.train(was_training)
    if not outs:
        return np.zeros((0, 0), np.float32), np.zeros((0,), np.int64)
    return np.concatenate(outs), np.concatenate(targets).astype(np.int64)


@dataclass(frozen=True)
class EvaluateConfig:
    checkpoint: str
    data: str | None = None
    dataset: str | None = None
    split: str = "test"
    batch_size: int = 64
    out: str | None = None
    device: str = "auto"
    workers: int = 2
    skip_bad_images: bool = False
    progress: bool = True


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Evaluate a checkpoint on ``split`` (``test`` or ``val``, the split carved from train with the
    checkpoint's own seed and fraction).  Writes ``eval-<split>.json`` beside the checkpoint by
    default (never the run's ``report.json``) and records whether batch 1 and batch B agree.

    The dataset is ``cfg.data`` or the folder recorded in the checkpoint.  Its layout is
    ``cfg.dataset`` when given; otherwise the recorded layout for the recorded folder, and the
    detected layout for an explicit ``cfg.data``.  Either way the dataset's class names must equal
    the checkpoint's (:class:`CheckpointError` otherwise)."""
    from corese_edge.data.dataset import FERDataset
    from corese_edge.data.transforms import eval_transform
    from corese_edge.model.checkpoint import load_checkpoint
    from corese_edge.train.data import prepare_splits
    from corese_edge.train.device import resolve_device

    if cfg.split not in ("test", "val"):
        raise UserError(f"--split must be 'test' or 'val', got {cfg.split!r}")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.workers < 0:
        raise UserError(f"--workers must be 0 or more, got {cfg.workers}")
    ckpt = load_checkpoint(cfg.checkpoint)
    data = cfg.data or ckpt.dataset.get("root")
    if not data:
        raise UserError(f"{cfg.checkpoint} records no dataset; pass --data DIR")
    # The recorded layout describes the recorded folder only.  An explicit --data may hold the same
    # images in another layout (RAF-DB basic vs Kaggle), so it is detected, as export does; the
    # class-name check below still ties the data to the checkpoint.
    layout = cfg.dataset or (None if cfg.data else ckpt.dataset.get("layout")) or "auto"
    splits = prepare_splits(data, layout, float(ckpt.config.get("val_fraction", 0.1)), int(ckpt.config.get("seed", 0)),
                            cfg.skip_bad_images, progress=cfg.progress)
    if list(splits.class_names) != list(ckpt.class_names):
        raise CheckpointError(
            f"{cfg.checkpoint} was trained on classes {list(ckpt.class_names)} but {data} has {list(splits.class_names)}"
        )
    samples = splits.test if cfg.split == "test" else splits.val
    if not samples:
        raise UserError(f"the {cfg.split} split of {data} is empty")
    device = resolve_device(cfg.device)
    model = ckpt.build_model().to(device)
    ds = FERDataset(samples, eval_transform(ckpt.preprocessing))
    logits_b, targets = predict_logits(model, ds, cfg.batch_size, device, cfg.workers, progress=cfg.progress)
    logits_1, _ = predict_logits(model, ds, 1, device, cfg.workers, progress=cfg.progress)
    report = classification_report(targets, logits_b.argmax(1), ckpt.class_names)
    agree = bool((logits_1.argmax(1) == logits_b.argmax(1)).all())
    result = {
        "schema": EVAL_SCHEMA,
        "checkpoint": str(cfg.checkpoint),
        "split": cfg.split,
        "se_mode": ckpt.se_mode,
        "batch_size": cfg.batch_size,
        "batch_independence": {
            "batch_sizes": [1, cfg.batch_size],
            "predictions_agree": agree,
            "max_abs_logit_diff": float(np.abs(logits_1 - logits_b).max()),
        },
        **report,
        "corese_edge_version": __version__,
    }
    out = Path(cfg.out) if cfg.out else Path(cfg.checkpoint).parent / f"eval-{cfg.split}.json"
    if out.name == "report.json":
        raise UserError(f"refusing to overwrite the run's {out}; choose another --out")
    write_json(out, result)
    result["path"] = str(out)
    return result
