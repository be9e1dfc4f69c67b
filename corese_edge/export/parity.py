"""The FP32 ONNX must compute what PyTorch computes: the parity checks of the export.

Both run through the runtime's runners (:mod:`corese_edge.export.comparator`), like the drift report.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from corese_edge.errors import UserError

log = logging.getLogger(__name__)

#: parity of the FP32 ONNX against PyTorch (issue 3): at least this many images, these limits
PARITY_MIN_IMAGES = 64
PARITY_MAX_ABS_LOGIT_DIFF = 1e-4


class ParityError(UserError):
    """The FP32 ONNX does not reproduce PyTorch's logits."""


def check_parity(evaluated, runners: Mapping[str, Any], extra_samples, prep) -> dict[str, Any]:
    """FP32 ONNX vs PyTorch on >= 64 images: max |logit diff| <= 1e-4 and identical top-1.

    ``evaluated`` (a :class:`~corese_edge.export.comparator.RunResults`) holds ``"reference"`` and
    ``"onnx-fp32"`` logits on the evaluation images; when there are fewer than 64, images of
    ``extra_samples`` (train images: parity is about arithmetic, not labels) top the set up,
    run by the same ``runners``.  Returns export.json's ``parity`` section.
    """
    from corese_edge.export.comparator import Comparator

    torch_logits, onnx_logits = evaluated.logits["reference"], evaluated.logits["onnx-fp32"]
    missing = PARITY_MIN_IMAGES - len(torch_logits)
    if missing > 0:
        extra = list(extra_samples[:missing])
        if len(extra) < missing:
            raise ParityError(f"parity needs {PARITY_MIN_IMAGES} images, the dataset has only "
                              f"{len(torch_logits) + len(extra)}")
        more = Comparator.run(runners, extra, prep)
        torch_logits = np.concatenate([torch_logits, more.logits["reference"]])
        onnx_logits = np.concatenate([onnx_logits, more.logits["onnx-fp32"]])
    diff = float(np.max(np.abs(torch_logits - onnx_logits)))
    agreement = float(np.mean(torch_logits.argmax(1) == onnx_logits.argmax(1)))
    images = len(torch_logits)
    result = {"images": images, "max_abs_logit_diff": diff, "top1_agreement": agreement,
              "limits": {"max_abs_logit_diff": PARITY_MAX_ABS_LOGIT_DIFF, "top1_agreement": 1.0}}
    if diff > PARITY_MAX_ABS_LOGIT_DIFF or agreement < 1.0:
        raise ParityError(
            f"the FP32 ONNX does not match PyTorch on {images} images: max |logit diff| {diff:.3g} "
            f"(limit {PARITY_MAX_ABS_LOGIT_DIFF:g}), top-1 agreement {agreement:.2%} (must be 100%)"
        )
    log.info("parity: max |logit diff| %.2e, top-1 agreement %.0f%% on %d images", diff, 100 * agreement, images)
    return result


def check_embedded(fp32_path, embedded_path, samples, prep) -> dict[str, Any]:
    """The uint8-frames FP32 variant must give the FP32 model's logits (same arithmetic, in-graph).
    Returns export.json's ``embed_preprocess`` section."""
    import cv2

    from corese_edge.export.comparator import onnx_logits
    from corese_edge.images import read_rgb

    samples = list(samples[:16])
    frames = np.stack([cv2.resize(read_rgb(s.path), (prep.size, prep.size), interpolation=prep.cv2_interpolation)
                       for s in samples])
    chw = (frames.astype(np.float32) / 255.0 - np.asarray(prep.mean, np.float32)) / np.asarray(prep.std, np.float32)
    base = onnx_logits(fp32_path, np.ascontiguousarray(chw.transpose(0, 3, 1, 2)))
    got = onnx_logits(embedded_path, frames)
    diff = float(np.max(np.abs(base - got)))
    if diff > PARITY_MAX_ABS_LOGIT_DIFF:
        raise ParityError(f"the --embed-preprocess model differs from model.onnx by {diff:.3g} in the logits")
    return {"images": len(samples), "max_abs_logit_diff_vs_fp32": diff}
