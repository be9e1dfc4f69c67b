"""Image decoding: every image becomes an (H, W, 3) uint8 RGB array.

Part of the base layer (docs/ARCHITECTURE.md, "Layers"): the dataset code, the calibration
reader and the embeddable runtime all decode files through this one module, so it imports
nothing but numpy, OpenCV and corese_edge.errors.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from corese_edge.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

_FIX = "fix or delete the file, or pass --skip-bad-images"


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a non-hidden file name with an image suffix (case-insensitive)."""
    p = Path(path)
    return not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES


class BadImageError(DataError):
    """An image that cannot be read; ``path`` and ``reason`` are kept for reports."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = " ".join(str(reason).split())  # keep the message on one line
        super().__init__(f"cannot read image {self.path}: {self.reason}; {_FIX}")


def _bad(path: str | os.PathLike, reason: object) -> BadImageError:
    return BadImageError(path, str(reason))


def _to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if img.dtype == np.int8:
        return (img.astype(np.int16) + 128).astype(np.uint8)
    if img.dtype == np.int16:
        return ((img.astype(np.int32) + 32768) * 255 // 65535).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        f = np.nan_to_num(img.astype(np.float64))
        # float images are conventionally in [0, 1]; fall back to min-max otherwise
        if f.size and (f.min() < 0.0 or f.max() > 1.0):
            lo, hi = float(f.min()), float(f.max())
            f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
        return np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)
    # int32 or anything else: min-max scale
    f = img.astype(np.float64)
    lo, hi = float(f.min()), float(f.max())
    f = (f - lo) / (hi - lo) if hi > lo else np.zeros_like(f)
    return np.rint(f * 255.0).astype(np.uint8)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as an (H, W, 3) uint8 RGB array.

    Grayscale becomes RGB, an alpha channel is dropped, 16-bit images are scaled to 8 bits.
    A missing, empty, truncated or undecodable file raises :class:`DataError` naming the file.
    """
    p = Path(path)
    try:
        buf = np.fromfile(p, dtype=np.uint8)
    except FileNotFoundError:
        raise _bad(p, "file not found") from None
    except IsADirectoryError:
        raise _bad(p, "is a directory") from None
    except OSError as exc:
        raise _bad(p, exc.strerror or exc) from None
    if buf.size == 0:
        raise _bad(p, "file is empty")
    if p.suffix.lower() in (".jpg", ".jpeg") and not _jpeg_complete(buf):
        raise _bad(p, "truncated JPEG (no end-of-image marker)")
    return decode_rgb(buf, p)


def decode_rgb(data: bytes | np.ndarray, source: str | os.PathLike = "image") -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ... as bytes or a uint8 array) to (H, W, 3) uint8 RGB,
    exactly as :func:`read_rgb` decodes a file; ``source`` names it in the :class:`DataError`.

    A JPEG stream without its end-of-image marker is refused here whatever its name (a file is
    checked by its suffix in :func:`read_rgb`, a buffer by its first bytes).
    """
    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else np.asarray(data, np.uint8)
    if buf.size == 0:
        raise _bad(source, "empty image data")
    if not _jpeg_complete(buf):
        raise _bad(source, "truncated JPEG (no end-of-image marker)")
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # pragma: no cover - OpenCV usually returns None instead
        raise _bad(source, f"OpenCV error {exc}") from None
    if img is None or img.size == 0:
        raise _bad(source, "not a decodable image (truncated or not an image)")

    img = _to_uint8(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.ndim != 3:
        raise _bad(source, f"unsupported image shape {img.shape}")
    channels = img.shape[2]
    if channels == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 2:  # gray + alpha
        return cv2.cvtColor(np.ascontiguousarray(img[:, :, 0]), cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    raise _bad(source, f"unsupported channel count {channels}")


def _jpeg_complete(buf: np.ndarray) -> bool:
    """A JPEG stream must have an end-of-image marker after its last start-of-scan.

    Some libjpeg builds pad a truncated stream with grey and decode it "successfully", so
    ``imdecode`` alone is not enough.  Entropy-coded data cannot contain ``FF D9`` (byte
    stuffing), so a complete file has EOI after the last SOS, even with trailing bytes.
    """
    data = buf.tobytes()
    if not data.startswith(b"\xff\xd8"):
        return True  # not a JPEG stream (e.g. a PNG named .jpg): let imdecode decide
    sos = data.rfind(b"\xff\xda")
    if sos < 0:
        return False
    return data.find(b"\xff\xd9", sos) >= 0
