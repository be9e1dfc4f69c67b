"""Preprocessing as data.

The checkpoint, the ONNX metadata and the TensorRT sidecar all carry one :class:`Preprocessing`
record; training's eval transform and the runtime's numpy preprocessing are both built from it and
never re-declare any of its numbers.  Torch-free.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping

#: The seed's normalisation: mean = std = 0.5, so inputs lie in [-1, 1] (not ImageNet statistics).
SEED_MEAN = (0.5, 0.5, 0.5)
SEED_STD = (0.5, 0.5, 0.5)

INTERPOLATIONS = ("linear", "area", "cubic", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB uint8 image becomes the model's input.

    resize the whole image (no crop) to ``size`` x ``size`` with ``interpolation`` (OpenCV
    semantics), scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel, lay out as
    NCHW float32 in ``channel_order``.
    """

    size: int = 224
    mean: tuple[float, float, float] = SEED_MEAN
    std: tuple[float, float, float] = SEED_STD
    interpolation: str = "linear"
    channel_order: str = "rgb"
    layout: str = "nchw"

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Preprocessing":
        return cls(
            size=int(d["size"]),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
            interpolation=str(d.get("interpolation", "linear")),
            channel_order=str(d.get("channel_order", "rgb")),
            layout=str(d.get("layout", "nchw")),
        )

    @classmethod
    def from_json(cls, text: str) -> "Preprocessing":
        return cls.from_dict(json.loads(text))

    @property
    def cv2_interpolation(self) -> int:
        import cv2

        return {
            "linear": cv2.INTER_LINEAR,
            "area": cv2.INTER_AREA,
            "cubic": cv2.INTER_CUBIC,
            "nearest": cv2.INTER_NEAREST,
        }[self.interpolation]
