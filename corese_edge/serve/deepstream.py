"""``corese-edge package ARTIFACT.onnx --deepstream DIR``: files for DeepStream's nvinfer as a
secondary classifier on a face detector's boxes.

* ``model.softmax.onnx``: the artifact with ``Softmax`` appended (output ``probabilities``, FP32).
  nvinfer's default classifier parser expects probabilities and applies no softmax.  A Q/DQ INT8
  artifact keeps its Q/DQ, so ``network-mode=1`` needs no calibration file.
* ``labels.txt``: nvinfer's classifier label format, one line per output layer with that layer's
  labels ``;``-separated, in output order.  One label per line would give the first class only.
* ``config_infer_secondary_coresse.txt`` (a GLib key file, group ``[property]``): mean and std from
  the artifact's metadata, never re-declared: nvinfer computes ``y = net-scale-factor * (x -
  offsets)``, so ``net-scale-factor = 1 / (255 * std)`` and ``offsets = 255 * mean`` per channel
  (0.0078431373 and 127.5;127.5;127.5 for mean = std = 0.5).  nvinfer has one scale factor for all
  channels, so an artifact whose std differs between channels is refused.
  ``model-color-format`` from the channel order, ``infer-dims`` ``3;S;S``, ``network-mode`` from
  the graph's precision (0 FP32, 1 INT8, 2 FP16), ``scaling-filter`` the NvBufSurfTransform filter
  matching the training interpolation (nearest 0, linear 1, cubic 2 = GPU-Cubic; ``area`` has no
  nvinfer filter, so bilinear is written and said in a comment), ``maintain-aspect-ratio=0`` (the
  training resize squashes the whole crop to S x S).

nvinfer crops the detector's box and does not align the face to the model's template; the
aligned crop corese-edge's own runtime uses needs nvdspreprocess with a custom transform (see the
README).  Only full-line ``#`` comments are written: GLib key files have no inline comments.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from corese_edge.atomic import write_text
from corese_edge.errors import UserError
from corese_edge.serve.artifact import PROBABILITIES, read_artifact

MODEL_FILE = "model.softmax.onnx"
LABELS_FILE = "labels.txt"
CONFIG_FILE = "config_infer_secondary_coresse.txt"
APP_GROUP_FILE = "deepstream_app_secondary_gie.txt"
#: Training interpolation -> nvinfer ``scaling-filter`` (NvBufSurfTransform_Inter); ``area`` has none
SCALING_FILTERS = {"nearest": 0, "linear": 1, "cubic": 2}
#: nvinfer ``network-mode``
NETWORK_MODES = {"fp32": 0, "int8": 1, "fp16": 2}
COLOR_FORMATS = {"rgb": 0, "bgr": 1}


@dataclass(frozen=True)
class DeepStreamPackage:
    folder: Path
    model: Path
    labels: Path
    config: Path
    properties: dict[str, str]
    notes: tuple[str, ...] = field(default=())


def _number(value: float) -> str:
    """Enough digits for a float32 consumer, no float noise (``0.0078431373``, ``127.5``)."""
    return f"{value:.10g}"


def nvinfer_properties(facts, *, batch_size: int, gie_id: int, operate_on_gie_id: int,
                       operate_on_class_ids: str | None, threshold: float, gpu_id: int) -> tuple[dict[str, str], list[str]]:
    """The ``[property]`` keys in the order they are written, and the comment lines to add."""
    prep = facts.metadata.preprocessing
    if len(set(prep.std)) != 1:
        raise UserError(f"{facts.path}: std {list(prep.std)} differs between channels, but nvinfer's net-scale-factor "
                        "is one number for all channels; use nvdspreprocess with a custom transform for this model")
    comments: list[str] = []
    std = float(prep.std[0])
    interpolation = prep.interpolation
    scaling = SCALING_FILTERS.get(interpolation)
    if scaling is None:
        scaling = SCALING_FILTERS["linear"]
        comments.append(f"the model was trained with {interpolation!r} resizing, which nvinfer has no filter for; "
                        "scaling-filter=1 (bilinear) is the nearest it has")
    props = {
        "gpu-id": str(gpu_id),
        "net-scale-factor": _number(1.0 / (255.0 * std)),
        "offsets": ";".join(_number(255.0 * float(m)) for m in prep.mean),
        "model-color-format": str(COLOR_FORMATS[prep.channel_order]),
        "onnx-file": MODEL_FILE,
        "labelfile-path": LABELS_FILE,
        "infer-dims": f"3;{prep.size};{prep.size}",
        "batch-size": str(batch_size),
        "network-mode": str(NETWORK_MODES.get(facts.precision, 0)),
        "network-type": "1",
        "process-mode": "2",
        "gie-unique-id": str(gie_id),
        "operate-on-gie-id": str(operate_on_gie_id),
        "output-blob-names": PROBABILITIES,
        "classifier-threshold": _number(threshold),
        "maintain-aspect-ratio": "0",
        "scaling-filter": str(scaling),
        "scaling-compute-hw": "0",
    }
    if operate_on_class_ids:
        ids = [s.strip() for s in operate_on_class_ids.replace(",", ";").split(";") if s.strip()]
        if not ids or not all(s.isdigit() for s in ids):
            raise UserError(f"--operate-on-class-ids takes class ids of the primary detector such as 0 or 0;2, "
                            f"got {operate_on_class_ids!r}")
        props["operate-on-class-ids"] = ";".join(ids)
    return props, comments


def package_deepstream(
    artifact: str | os.PathLike,
    out: str | os.PathLike,
    *,
    batch_size: int = 16,
    gie_id: int = 2,
    operate_on_gie_id: int = 1,
    operate_on_class_ids: str | None = None,
    threshold: float = 0.0,
    gpu_id: int = 0,
) -> DeepStreamPackage:
    """Write the nvinfer files for the ONNX ``artifact`` into ``out`` (see the module doc)."""
    from corese_edge.serve.graphs import softmax_onnx

    if not str(artifact).lower().endswith(".onnx"):
        raise UserError(f"{artifact}: --deepstream takes an .onnx artifact (nvinfer builds its own engine from it)")
    if batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if not 0.0 <= threshold <= 1.0:
        raise UserError(f"--classifier-threshold must be in [0, 1], got {threshold}")
    facts = read_artifact(artifact)
    if facts.takes_frames:
        raise UserError(f"{facts.path} takes uint8 frames (--embed-preprocess); nvinfer feeds normalised float NCHW: "
                        "package the .onnx without .preprocess")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} exists and is not a folder; --deepstream takes an output folder")
    props, comments = nvinfer_properties(facts, batch_size=batch_size, gie_id=gie_id, operate_on_gie_id=operate_on_gie_id,
                                         operate_on_class_ids=operate_on_class_ids, threshold=threshold, gpu_id=gpu_id)
    folder.mkdir(parents=True, exist_ok=True)
    model = softmax_onnx(facts, folder / MODEL_FILE)
    labels = folder / LABELS_FILE
    write_text(labels, ";".join(facts.metadata.class_names) + "\n")
    header = [
        f"# nvinfer secondary classifier for {facts.path.name} ({facts.metadata.model}, {facts.precision}), "
        "written by corese-edge package --deepstream",
        "# mean/std are the artifact's: net-scale-factor = 1/(255*std), offsets = 255*mean per channel",
        "# nvinfer crops the detector's box without aligning the face to the model's template",
    ]
    if "operate-on-class-ids" not in props:
        header.append("# add operate-on-class-ids=<the face class of your primary detector> to classify only faces")
    header += [f"# {c}" for c in comments]
    config = folder / CONFIG_FILE
    write_text(config, "\n".join(header + ["[property]"] + [f"{k}={v}" for k, v in props.items()]) + "\n")
    write_text(folder / APP_GROUP_FILE, "\n".join([
        "# the [secondary-gie] group to add to a deepstream-app config (paths relative to that config)",
        "[secondary-gie0]",
        "enable=1",
        f"gpu-id={gpu_id}",
        f"gie-unique-id={gie_id}",
        f"operate-on-gie-id={operate_on_gie_id}",
        f"batch-size={batch_size}",
        f"config-file={CONFIG_FILE}",
        f"labelfile-path={LABELS_FILE}",
    ]) + "\n")
    notes = [f"labels: one line of {facts.num_classes} ';'-separated classes (nvinfer's classifier format)"] + comments
    return DeepStreamPackage(folder, model, labels, config, props, tuple(notes))
