"""ImageNet / local initial weights for the backbones."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from corese_edge.errors import UserError
from corese_edge.model.coresse import CoResSE

log = logging.getLogger(__name__)


def apply_pretrained(model: CoResSE, pretrained: str) -> None:
    """``none``; ``imagenet`` (timm hub tags, from the hub or the local HF cache); or a PATH to a
    state dict (a corese-edge checkpoint, a seed checkpoint or a plain ``state_dict``)."""
    if pretrained in ("none", "", None):
        return
    if pretrained == "imagenet":
        _load_imagenet(model)
        return
    path = Path(pretrained)
    if not path.is_file():
        raise UserError(
            f"--pretrained {pretrained}: no such file; use 'imagenet', 'none' or the path of a state dict"
        )
    from corese_edge.model.checkpoint import read_state_dict

    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not any(k.startswith(("resnet.", "convnext.")) for k in usable):
        raise UserError(f"{path}: no CoRes-SE backbone weights in this state dict (wrong model variant?)")
    missing = [k for k in own if k not in usable]
    model.load_state_dict(usable, strict=False)
    log.info("loaded %d tensors from %s (%d left at their initial values)", len(usable), path, len(missing))


def _load_imagenet(model: CoResSE) -> None:
    import timm

    v = model.variant
    for attr, tag in (("resnet", v.resnet_pretrained), ("convnext", v.convnext_pretrained)):
        try:
            net = timm.create_model(tag, pretrained=True, num_classes=0)
        except Exception as exc:  # hub/network errors come in many types
            raise UserError(
                f"cannot get ImageNet weights for {tag} (offline and not in the Hugging Face cache? {type(exc).__name__}); "
                "use --pretrained none, --pretrained PATH to a local state dict, or run once with network access"
            ) from None
        state = {k: t for k, t in net.state_dict().items() if not k.startswith("head.")}
        getattr(model, attr).load_state_dict(state, strict=True)
        del net
