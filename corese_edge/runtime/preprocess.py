"""numpy + OpenCV preprocessing, built from the artifact's :class:`Preprocessing` record.

It reproduces training's eval transform (albumentations ``Resize`` + ``Normalize``, see
:func:`corese_edge.data.transforms.eval_transform`) to within 1e-5, without albumentations or
torch: each frame is resized with ``cv2.resize`` (the same call albumentations makes), then scaled,
shifted and laid out as NCHW float32 by one vectorised numpy pass straight into the batch tensor.

Accepted inputs (one image or several):

* an ``(H, W, 3)`` uint8 array, in ``color_order`` (``"rgb"`` by default, as PIL and most Python
  code hand them over; ``"bgr"`` for frames straight from ``cv2.imread`` / ``cv2.VideoCapture``);
* an ``(N, H, W, 3)`` uint8 array (a batch of equally sized frames);
* a path (``str`` / ``os.PathLike``) to an image file, decoded as RGB whatever ``color_order`` says;
* a list or tuple mixing any of the above (frames may differ in size).

Anything else is a :class:`~corese_edge.errors.UserError` naming what was wrong.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import cv2
import numpy as np

from corese_edge.errors import UserError
from corese_edge.preprocessing import Preprocessing

COLOR_ORDERS = ("rgb", "bgr")


def _is_path(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike))


def as_frames(images: Any, color_order: str = "rgb") -> list[np.ndarray]:
    """Normalise ``images`` to a non-empty list of ``(H, W, 3)`` uint8 arrays in ``color_order``.

    Paths are decoded as RGB and converted to ``color_order`` so every frame in the list shares
    one channel order.
    """
    if color_order not in COLOR_ORDERS:
        raise UserError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            items: Sequence[Any] = list(images)
            if not items:
                raise UserError("no images to process: the batch array is empty (shape %s)" % (images.shape,))
        else:
            items = [images]
    elif _is_path(images):
        items = [images]
    elif isinstance(images, (list, tuple)):
        items = images
        if len(items) == 0:
            raise UserError("no images to process: the list is empty")
    else:
        raise UserError(
            f"cannot preprocess a {type(images).__name__}: pass an HxWx3 uint8 array, "
            "an image path, or a list of them"
        )
    frames = []
    for i, item in enumerate(items):
        frames.append(_one_frame(item, i if len(items) > 1 else None, color_order))
    return frames


def _one_frame(item: Any, index: int | None, color_order: str) -> np.ndarray:
    where = f"image {index}" if index is not None else "image"
    if _is_path(item):
        from corese_edge.images import BadImageError, read_rgb

        try:
            rgb = read_rgb(item)
        except BadImageError as exc:  # drop the training-specific hint (--skip-bad-images)
            raise UserError(f"cannot read image {exc.path}: {exc.reason}") from None
        return rgb if color_order == "rgb" else np.ascontiguousarray(rgb[:, :, ::-1])
    if not isinstance(item, np.ndarray):
        raise UserError(f"{where}: expected an HxWx3 uint8 array or a path, got {type(item).__name__}")
    if item.dtype != np.uint8:
        raise UserError(
            f"{where}: expected dtype uint8 (0-255 pixels), got {item.dtype}; "
            "convert with (x * 255).round().astype(np.uint8) if it holds [0, 1] floats"
        )
    if item.ndim != 3 or item.shape[2] != 3:
        raise UserError(
            f"{where}: expected shape (H, W, 3), got {item.shape}; "
            "convert grayscale or RGBA first (cv2.cvtColor)"
        )
    if item.shape[0] == 0 or item.shape[1] == 0:
        raise UserError(f"{where}: empty image of shape {item.shape}")
    return item


@dataclass(frozen=True)
class Preprocessor:
    """Turns frames into the model's input tensor.

    ``prep`` comes from the artifact (ONNX metadata, plan sidecar or checkpoint) and is never
    re-declared here.  ``input_dtype`` is the model input's dtype: ``float32`` for the normal graph
    (NCHW, normalised), ``uint8`` for an ``--embed-preprocess`` graph (NHWC frames at the model's
    size, normalisation inside the graph).
    """

    prep: Preprocessing
    input_dtype: np.dtype = np.dtype(np.float32)

    @property
    def size(self) -> int:
        return self.prep.size

    def __call__(self, images: Any, color_order: str = "rgb") -> np.ndarray:
        """``images`` (see module doc) -> ``(N, 3, S, S)`` float32, or ``(N, S, S, 3)`` uint8."""
        return self.from_frames(as_frames(images, color_order), color_order)

    @cached_property
    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, shift)``, each (3, 1, 1) float32: ``(x / 255 - mean) / std == x * scale + shift``."""
        mean = np.asarray(self.prep.mean, dtype=np.float64)
        std = np.asarray(self.prep.std, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32).reshape(3, 1, 1)
        shift = (-mean / std).astype(np.float32).reshape(3, 1, 1)
        return scale, shift

    def _resize_one(self, frame: np.ndarray, dst: np.ndarray) -> np.ndarray:
        s = self.prep.size
        if frame.shape[0] == s and frame.shape[1] == s:
            return frame
        if not frame.flags.c_contiguous:
            frame = np.ascontiguousarray(frame)
        # albumentations' Resize is exactly this call (cv2.resize, dsize = (width, height))
        cv2.resize(frame, (s, s), dst=dst, interpolation=self.prep.cv2_interpolation)
        return dst

    def resize(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, S, S, 3)`` uint8: every frame resized (no crop) like albumentations ``Resize``."""
        s = self.prep.size
        out = np.empty((len(frames), s, s, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            dst = out[i]
            resized = self._resize_one(frame, dst)
            if resized is not dst:  # already at the model's size: copy it in
                dst[...] = resized
        return out

    def from_frames(self, frames: Sequence[np.ndarray], color_order: str = "rgb") -> np.ndarray:
        """Validated frames (``as_frames``) -> the model's input array.

        Each frame is resized into a scratch buffer and normalised straight into its slot of the
        NCHW batch, one fused numpy pass per frame while it is still in cache (faster than one pass
        over the whole resized batch, which does not fit in cache at 224 px).
        """
        flip = color_order != self.prep.channel_order
        if self.input_dtype == np.uint8:
            resized = self.resize(frames)
            return np.ascontiguousarray(resized[..., ::-1] if flip else resized)
        s = self.prep.size
        scale, shift = self._affine
        out = np.empty((len(frames), 3, s, s), dtype=np.float32)
        scratch = np.empty((s, s, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            chw = self._resize_one(frame, scratch).transpose(2, 0, 1)
            if flip:
                chw = chw[::-1]
            np.multiply(chw, scale, out=out[i], casting="unsafe")
            out[i] += shift
        return out

    def normalize(self, resized: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3)`` uint8 in the model's channel order -> ``(N, 3, S, S)`` float32.

        ``(x / 255 - mean) / std`` is computed as ``x * scale + shift`` in float32; it agrees with
        albumentations' ``Normalize`` to about 1e-7.
        """
        scale, shift = self._affine
        out = np.empty((resized.shape[0], 3, resized.shape[1], resized.shape[2]), dtype=np.float32)
        np.multiply(resized.transpose(0, 3, 1, 2), scale[None], out=out, casting="unsafe")
        out += shift[None]
        return out
