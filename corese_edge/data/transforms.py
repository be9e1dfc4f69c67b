"""Train augmentation (the seed's recipe, albumentations 2.x APIs) and the eval transform.

The eval transform is built from a :class:`~corese_edge.preprocessing.Preprocessing` record;
the runtime's numpy preprocessing is built from the same record and must agree to 1e-5.
"""
from __future__ import annotations

import albumentations as A
import cv2
import numpy as np

from corese_edge.preprocessing import Preprocessing


def eval_transform(prep: Preprocessing) -> A.Compose:
    """Resize (no crop) + Normalize, returning an HWC float32 array."""
    return A.Compose(
        [
            A.Resize(prep.size, prep.size, interpolation=prep.cv2_interpolation),
            A.Normalize(mean=prep.mean, std=prep.std, max_pixel_value=255.0),
        ]
    )


def train_transform(prep: Preprocessing) -> A.Compose:
    """The seed notebook's augmentations, with the arguments albumentations 2 really reads.

    * ShiftScaleRotate(0.1, 0.1, 15, p=0.5) -> Affine(translate 10 %, scale 0.9-1.1, rotate +-15)
    * CoarseDropout(max_holes=2, max_height=32, max_width=32) was silently ignored by
      albumentations 2; the 2.x spelling is num_holes_range / hole_height_range / hole_width_range.
      The 32 px holes were meant for 224 px inputs, so they scale with the image size.
    """
    hole = max(1, round(32 * prep.size / 224))
    return A.Compose(
        [
            A.Resize(prep.size, prep.size, interpolation=prep.cv2_interpolation),
            A.HorizontalFlip(p=0.5),
            A.Affine(
                translate_percent=(-0.1, 0.1),
                scale=(0.9, 1.1),
                rotate=(-15, 15),
                interpolation=cv2.INTER_LINEAR,
                border_mode=cv2.BORDER_REFLECT_101,
                p=0.5,
            ),
            A.GaussianBlur(p=0.2),
            A.CLAHE(p=0.1),
            A.CoarseDropout(
                num_holes_range=(1, 2),
                hole_height_range=(max(1, hole // 4), hole),
                hole_width_range=(max(1, hole // 4), hole),
                fill=0,
                p=0.5,
            ),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.1, p=0.5),
            A.Normalize(mean=prep.mean, std=prep.std, max_pixel_value=255.0),
        ]
    )


def to_chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
