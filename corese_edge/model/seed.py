"""Import checkpoints written by the CoRes-SE seed notebook.

Two formats exist:

* per-epoch: ``{"epoch", "model_state", "optimizer_state"}``;
* the final SWA file: ``{"epoch", "model_state": AveragedModel.state_dict()}`` whose keys carry a
  ``module.`` prefix, plus ``n_averaged``.

Both become a corese-edge checkpoint (``sample`` SE mode unless asked otherwise; at batch size 1
that is exactly the seed's behaviour).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Sequence

import torch

from corese_edge.errors import CheckpointError, UserError
from corese_edge.model.checkpoint import Checkpoint, safe_torch_load
from corese_edge.model.coresse import CoResSE
from corese_edge.model.variants import VARIANTS
from corese_edge.preprocessing import Preprocessing

RAFDB_CLASSES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
AFFECTNET_KAGGLE_CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise")
REQUIRED_PREFIXES = ("resnet.", "convnext.", "se_fusion.fc1.weight", "se_fusion.fc2.weight", "classifier.0.", "classifier.3.")


def seed_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], int, str]:
    """(state dict without ``module.``/``n_averaged``, epoch, "epoch" | "swa") from a seed file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"seed checkpoint not found: {path}")
    # the same safe (weights_only) loading as every corese-edge checkpoint
    raw = safe_torch_load(path, hint="expected a seed-notebook .pth (per-epoch or swa_model_final)")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("model_state"), Mapping):
        what = "a corese-edge checkpoint (already converted)" if isinstance(raw, Mapping) and "schema" in raw else "not a CoRes-SE seed checkpoint"
        raise CheckpointError(f"{path}: {what}; expected a dict with 'epoch' and 'model_state'")
    state = dict(raw["model_state"])
    kind = "epoch"
    if "n_averaged" in state or all(k.startswith("module.") for k in state):
        kind = "swa"
        state.pop("n_averaged", None)
        state = {k.removeprefix("module."): v for k, v in state.items()}
    missing = [p for p in REQUIRED_PREFIXES if not any(k.startswith(p) for k in state)]
    if missing:
        raise CheckpointError(f"{path}: not a CoRes-SE checkpoint (no {', '.join(missing)} weights)")
    epoch = raw.get("epoch", 0)
    return state, int(epoch) if isinstance(epoch, (int, float)) else 0, kind


def infer_variant(state: Mapping[str, torch.Tensor]) -> str:
    features = state["se_fusion.fc1.weight"].shape[1]
    for name, v in VARIANTS.items():
        if v.features == features and ("resnet.layer1.0.conv3.weight" in state) == (v.resnet_features == 2048):
            return name
    raise CheckpointError(f"no registered CoRes-SE variant has {features} fused features")


def default_class_names(num_classes: int) -> tuple[str, ...]:
    if num_classes == len(RAFDB_CLASSES):
        return RAFDB_CLASSES
    if num_classes == len(AFFECTNET_KAGGLE_CLASSES):
        return AFFECTNET_KAGGLE_CLASSES
    raise UserError(f"--num-classes {num_classes}: pass --class-names with {num_classes} names in index order")


def import_seed(path: str | os.PathLike, out: str | os.PathLike, num_classes: int,
                class_names: Sequence[str] | None = None, se_mode: str = "sample", img_size: int = 224) -> Checkpoint:
    """Convert a seed-notebook checkpoint into a corese-edge checkpoint at ``out``."""
    state, epoch, kind = seed_state_dict(path)
    head = state["classifier.3.weight"].shape[0]
    if head != num_classes:
        raise CheckpointError(f"{path}: the classifier has {head} outputs but --num-classes is {num_classes}")
    names = tuple(class_names) if class_names else default_class_names(num_classes)
    if len(names) != num_classes:
        raise UserError(f"--class-names has {len(names)} names but --num-classes is {num_classes}")
    variant = infer_variant(state)
    model = CoResSE(variant, num_classes, se_mode)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit {variant}: {str(exc).splitlines()[0]}") from None
    ckpt = Checkpoint(
        path=None, variant=variant, num_classes=num_classes, se_mode=se_mode, class_names=list(names),
        preprocessing=Preprocessing(size=img_size), state_dict=model.state_dict(),
        config={"imported_from": str(path), "seed_format": kind}, dataset={}, epoch=epoch, kind="seed-import",
    )
    ckpt.save(out)
    return ckpt
