"""Named CoRes-SE variants (torch-free data, in the spirit of timm's ``@register_model``)."""
from __future__ import annotations

from dataclasses import dataclass

from corese_edge.errors import UserError


@dataclass(frozen=True)
class Variant:
    """One fusion configuration: which timm backbones, their ImageNet tags and the head sizes."""

    name: str
    resnet: str
    convnext: str
    resnet_pretrained: str
    convnext_pretrained: str
    resnet_features: int
    convnext_features: int
    hidden: int = 512
    dropout: float = 0.5
    se_reduction: int = 16
    description: str = ""

    @property
    def features(self) -> int:
        return self.resnet_features + self.convnext_features

    @property
    def se_hidden(self) -> int:
        return self.features // self.se_reduction


VARIANTS: dict[str, Variant] = {}


def register_variant(variant: Variant) -> Variant:
    if variant.name in VARIANTS:
        raise ValueError(f"variant {variant.name!r} registered twice")
    VARIANTS[variant.name] = variant
    return variant


register_variant(
    Variant(
        name="coresse",
        resnet="resnet50",
        convnext="convnext_tiny",
        # the seed used torchvision's ResNet-50 weights, which timm carries as resnet50.tv_in1k
        resnet_pretrained="resnet50.tv_in1k",
        convnext_pretrained="convnext_tiny",
        resnet_features=2048,
        convnext_features=768,
        description="ResNet-50 + ConvNeXt-Tiny, 53.8 M parameters, the published CoRes-SE",
    )
)
register_variant(
    Variant(
        name="coresse-lite",
        resnet="resnet18",
        convnext="convnext_atto",
        resnet_pretrained="resnet18.tv_in1k",
        convnext_pretrained="convnext_atto.d2_in1k",
        resnet_features=512,
        convnext_features=320,
        description="ResNet-18 + ConvNeXt-Atto, for small Jetsons and for tests",
    )
)
register_variant(
    Variant(
        name="coresse-test",
        # timm's own test backbones (timm/models/resnet.py and convnext.py register test_resnet and
        # test_convnext for its CI): the same block types at a few hundred thousand parameters
        resnet="test_resnet",
        convnext="test_convnext",
        resnet_pretrained="test_resnet.r160_in1k",
        convnext_pretrained="test_convnext.r160_in1k",
        resnet_features=96,
        convnext_features=64,
        dropout=0.0,
        description="timm's test_resnet + test_convnext, 0.7 M parameters, for tests and CI (not for deployment)",
    )
)


def get_variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise UserError(f"unknown model {name!r}; choose one of: {', '.join(VARIANTS)}") from None
