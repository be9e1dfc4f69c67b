"""The CoRes-SE fusion network: ResNet + ConvNeXt features, SE re-weighting, MLP head.

Module and parameter names follow the seed notebook exactly (``resnet.*``, ``convnext.*``,
``se_fusion.fc1/fc2``, ``classifier.0/3``) so its checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import torch
from torch import nn

from corese_edge.model.variants import Variant, get_variant

SE_MODES = ("sample", "batch")


class SEFusion(nn.Module):
    """Squeeze-and-excitation over the concatenated feature vector.

    ``sample``: each row's gate comes from its own features (batch-independent; the default and
    the only mode exported).  ``batch``: the gate comes from the batch mean, as the seed notebook
    did; predictions then depend on the other images in the batch.
    """

    def __init__(self, channels: int, hidden: int, mode: str = "sample") -> None:
        super().__init__()
        if mode not in SE_MODES:
            raise ValueError(f"se_mode must be one of {SE_MODES}, got {mode!r}")
        self.mode = mode
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (N, C)
        squeeze = x.mean(dim=0, keepdim=True) if self.mode == "batch" else x
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(squeeze))))
        return x * gate


class CoResSE(nn.Module):
    """Input: normalised NCHW float32; output: logits (N, num_classes)."""

    def __init__(self, variant: str | Variant = "coresse", num_classes: int = 7, se_mode: str = "sample") -> None:
        super().__init__()
        import timm

        self.variant = get_variant(variant) if isinstance(variant, str) else variant
        self.num_classes = num_classes
        v = self.variant
        self.resnet = timm.create_model(v.resnet, pretrained=False, num_classes=0)
        self.convnext = timm.create_model(v.convnext, pretrained=False, num_classes=0)
        # The seed dropped ConvNeXt's head (and with it the head norm); features are the plain
        # global average of forward_features.
        self.convnext.head = nn.Identity()
        self.se_fusion = SEFusion(v.features, v.se_hidden, se_mode)
        self.classifier = nn.Sequential(
            nn.Linear(v.features, v.hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(v.dropout),
            nn.Linear(v.hidden, num_classes),
        )

    @property
    def se_mode(self) -> str:
        return self.se_fusion.mode

    @se_mode.setter
    def se_mode(self, mode: str) -> None:
        if mode not in SE_MODES:
            raise ValueError(f"se_mode must be one of {SE_MODES}, got {mode!r}")
        self.se_fusion.mode = mode

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> fused, SE-weighted features (N, C)."""
        r = self.resnet.forward_features(x).mean(dim=(2, 3))
        c = self.convnext.forward_features(x).mean(dim=(2, 3))
        return self.se_fusion(torch.cat([r, c], dim=1))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the last layer (fine-tuning 7 -> 8 classes)."""
        hidden = self.classifier[3].in_features
        self.classifier[3] = nn.Linear(hidden, num_classes)
        self.num_classes = num_classes
