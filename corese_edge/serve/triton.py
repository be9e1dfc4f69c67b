"""``corese-edge package ARTIFACT --triton DIR``: a Triton Inference Server model repository.

::

    DIR/
      coresse/            config.pbtxt, labels.txt, 1/ (the artifact's files, or model.py + them)
      coresse_faces/      config.pbtxt, labels.txt, 1/model.py + face_detection_yunet_2023mar.onnx

``coresse`` (the classifier):

* native backend (``backend="native"``, the default): a ``.plan`` runs on ``platform:
  "tensorrt_plan"`` (``KIND_GPU``), an ``.onnx`` on ``platform: "onnxruntime_onnx"``, an ``.xml`` +
  ``.bin`` on ``backend: "openvino"`` (``KIND_CPU``);
* ``backend="python"``: a Python-backend model (:mod:`corese_edge.serve.python_models.coresse`) that
  runs corese-edge's own runner on the unchanged artifact (for a Triton without the native backend).

Its input is ``frames``, uint8 ``[S, S, 3]`` (already resized, in the model's channel order; the
``--embed-preprocess`` form), and its output ``probabilities``, FP32 ``[C]`` with softmax applied.
An ONNX or IR without embedded preprocessing gets it here (:mod:`corese_edge.serve.graphs`).  A plan
is what it was built as: a plan built from a ``.preprocess.onnx`` takes ``frames``, any other keeps
the float ``input`` ``[3, S, S]``; a plan's output stays ``logits`` unless its graph had the softmax,
and the config's parameters say which (``input_form``, ``output_kind``, ``softmax``).

The config carries ``max_batch_size`` (a plan's profile maximum, or ``max_batch``; never above the
profile), ``dynamic_batching`` (``preferred_batch_size`` the optimum batch, a small
``max_queue_delay_microseconds``), ``instance_group``, ``model_warmup`` at the optimum batch (the
plan's ``opt``, else build-engine's default), ``label_filename`` on the output for Triton's
classification extension, and the class names and preprocessing in ``parameters``.

``coresse_faces`` (Python backend, :mod:`corese_edge.serve.python_models.faces`): input ``image``
BYTES ``[1]`` (one encoded JPEG or PNG); decode, YuNet, alignment to the model's face template, one
BLS request to ``coresse`` for all faces; outputs ``boxes`` ``[-1, 4]``, ``landmarks`` ``[-1, 5,
2]``, ``scores`` ``[-1]``, ``probabilities`` ``[-1, C]``, ``labels`` BYTES ``[-1]``.

Every file goes through :mod:`corese_edge.atomic`; each model's ``config.pbtxt`` is written last.
The text is rendered here (no protobuf needed to package); the tests parse it into tritonclient's
``model_config_pb2.ModelConfig``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from corese_edge.atomic import write_bytes, write_files, write_text
from corese_edge.errors import UserError
from corese_edge.serve.artifact import FRAMES, PROBABILITIES, ArtifactFacts, read_artifact

CLASSIFIER = "coresse"
FACES = "coresse_faces"
VERSION = "1"
LABELS = "labels.txt"
BACKENDS = ("native", "python")
#: Queue delay the dynamic batcher waits for more requests (small: a frame's latency budget)
DEFAULT_QUEUE_DELAY_US = 500
#: numpy dtype name -> Triton data type
TRITON_DTYPES = {"uint8": "TYPE_UINT8", "float32": "TYPE_FP32", "float16": "TYPE_FP16", "int8": "TYPE_INT8",
                 "int32": "TYPE_INT32", "int64": "TYPE_INT64", "object": "TYPE_STRING", "bytes": "TYPE_STRING"}
#: file names Triton's backends look for (their default_model_filename) and the corese-edge companions
NATIVE_FILES = {"tensorrt": ("model.plan", "model.plan.json"), "onnx": ("model.onnx",), "openvino": ("model.xml", "model.bin")}
_KNOWN_VERSION_FILES = {"model.plan", "model.plan.json", "model.onnx", "model.xml", "model.bin", "model.py"}


# ----------------------------------------------------------------------------- protobuf text format
class Enum(str):
    """A protobuf enum value, rendered bare (``KIND_GPU``), not quoted."""


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'"{escaped}"'
    raise TypeError(f"cannot render {type(value).__name__} in a config.pbtxt")


def render_pbtxt(message: Mapping[str, Any], indent: int = 0) -> str:
    """Protobuf text format of ``message``: a dict is a message, a list of dicts a repeated message
    (one block each), a list of scalars a repeated scalar (``[a, b]``), an :class:`Enum` a bare
    enum value; maps are lists of ``{"key": ..., "value": ...}``."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", render_pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            for item in value:
                lines += [f"{pad}{key} {{", render_pbtxt(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def _parameters(values: Mapping[str, str]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


def _tensor(name: str, dtype: str, dims: Sequence[int], **extra: Any) -> dict[str, Any]:
    try:
        data_type = TRITON_DTYPES[dtype]
    except KeyError:
        raise UserError(f"tensor {name!r} has dtype {dtype}, which corese-edge does not serve") from None
    return {"name": name, "data_type": Enum(data_type), "dims": [int(d) for d in dims], **extra}


# ----------------------------------------------------------------------------- the repository
@dataclass(frozen=True)
class ServedTensors:
    """What ``coresse`` takes and returns in the repository (after embedding, for the served graph)."""

    input_name: str
    input_dtype: str
    input_dims: tuple[int, ...]
    output_name: str
    output_dims: tuple[int, ...]

    @property
    def input_form(self) -> str:
        return "frames" if self.input_dtype == "uint8" else "normalized"

    @property
    def output_kind(self) -> str:
        return "probabilities" if self.output_name == PROBABILITIES else "logits"


@dataclass(frozen=True)
class TritonRepository:
    """What :func:`package_triton` wrote: ``root``, ``models`` (name -> model folder), the served
    tensors of ``coresse``, its batch limits, and ``notes`` for the user."""

    root: Path
    models: dict[str, Path]
    tensors: ServedTensors
    max_batch: int
    opt_batch: int
    backend: str
    notes: tuple[str, ...] = field(default=())


def _batch_limits(facts: ArtifactFacts, max_batch: int | None) -> tuple[int, int]:
    """``(max_batch_size, optimum batch)``: a plan's profile bounds both; a dynamic-batch graph takes
    ``max_batch`` or build-engine's defaults (``EngineConfig``, stated once)."""
    if max_batch is not None and max_batch < 1:
        raise UserError(f"--max-batch must be >= 1, got {max_batch}")
    if facts.profile is not None:
        lo, opt, hi = facts.profile
        if max_batch is not None and max_batch > hi:
            raise UserError(f"--max-batch {max_batch} exceeds the plan's profile maximum {hi} ({facts.path}); "
                            f"use --max-batch {hi} or less, or rebuild the engine with --max-batch {max_batch}")
        if max_batch is not None and max_batch < lo:
            raise UserError(f"--max-batch {max_batch} is below the plan's profile minimum {lo} ({facts.path})")
        top = max_batch or hi
        return top, min(opt, top)
    from corese_edge.export.tensorrt import engine_defaults

    defaults = engine_defaults()
    top = max_batch or int(defaults["max_batch"])
    return top, min(int(defaults["opt_batch"]), top)


def _common_parameters(facts: ArtifactFacts, tensors: ServedTensors) -> dict[str, str]:
    from corese_edge import __version__

    meta = facts.metadata
    softmax = ("applied in the graph" if tensors.output_kind == "probabilities" else
               "not applied: a prebuilt plan whose graph has no softmax; the output is logits, "
               "apply softmax client-side (coresse_faces does)")
    return {
        "class_names": json.dumps(list(meta.class_names)),
        "preprocessing": meta.preprocessing.to_json(),
        "input_form": tensors.input_form,
        "input_description": ("uint8 [S, S, 3] frames, resized to the model's size, in its channel order; "
                              "normalisation happens in the model") if tensors.input_form == "frames" else
                             ("float32 [3, S, S] NCHW, (x / 255 - mean) / std in the model's channel order "
                              "(a plan built without --embed-preprocess)"),
        "output_kind": tensors.output_kind,
        "softmax": softmax,
        "artifact": facts.path.name,
        "precision": facts.precision,
        "model": meta.model,
        "corese_edge_version": __version__,
    }


def classifier_config(facts: ArtifactFacts, tensors: ServedTensors, *, backend: str, max_batch: int, opt_batch: int,
                      max_queue_delay_us: int, instances: int, artifact_file: str | None = None,
                      threads: int | None = None) -> dict[str, Any]:
    """The ``coresse`` config as a message dict (:func:`render_pbtxt`).  ``threads``: CPU threads per
    instance, for the Python backend's runner (``threads``) and Triton's ONNX Runtime backend
    (``intra_op_thread_count``); ``None`` leaves each backend's default."""
    config: dict[str, Any] = {"name": CLASSIFIER}
    if backend == "python":
        config["backend"] = "python"
        kind = "KIND_GPU" if facts.kind == "tensorrt" else "KIND_CPU"
    elif facts.kind == "tensorrt":
        config["platform"] = "tensorrt_plan"
        kind = "KIND_GPU"
    elif facts.kind == "onnx":
        config["platform"] = "onnxruntime_onnx"
        kind = "KIND_AUTO"  # Triton's rule: a GPU when there is one, else the CPU
    else:
        config["backend"] = "openvino"
        kind = "KIND_CPU"
    config["max_batch_size"] = max_batch
    config["input"] = [_tensor(tensors.input_name, tensors.input_dtype, tensors.input_dims)]
    config["output"] = [_tensor(tensors.output_name, "float32", tensors.output_dims, label_filename=LABELS)]
    config["dynamic_batching"] = {"preferred_batch_size": [opt_batch], "max_queue_delay_microseconds": int(max_queue_delay_us)}
    config["instance_group"] = [{"count": int(instances), "kind": Enum(kind)}]
    config["model_warmup"] = [{
        "name": f"warmup_batch_{opt_batch}",
        "batch_size": opt_batch,
        "inputs": [{"key": tensors.input_name, "value": {
            "data_type": Enum(TRITON_DTYPES[tensors.input_dtype]), "dims": list(tensors.input_dims), "zero_data": True}}],
    }]
    params = _common_parameters(facts, tensors)
    if backend == "python":
        params["artifact_file"] = artifact_file or ""
        if threads is not None:
            params["threads"] = str(int(threads))
    elif threads is not None and facts.kind == "onnx":
        params["intra_op_thread_count"] = str(int(threads))  # onnxruntime_backend's model-config key
    config["parameters"] = _parameters(params)
    return config


def faces_config(facts: ArtifactFacts, tensors: ServedTensors, *, max_batch: int, instances: int,
                 face_file: str) -> dict[str, Any]:
    """The ``coresse_faces`` config: one image per request (``max_batch_size: 0``), any number of faces."""
    c = facts.num_classes
    params = _common_parameters(facts, tensors)
    params.update({
        "face_model_file": face_file,
        "classifier_model": CLASSIFIER,
        "classifier_input": tensors.input_name,
        "classifier_output": tensors.output_name,
        "classifier_max_batch": str(max_batch),
        "align": "true",
    })
    return {
        "name": FACES,
        "backend": "python",
        "max_batch_size": 0,
        "input": [_tensor("image", "object", [1])],
        "output": [
            _tensor("boxes", "float32", [-1, 4]),
            _tensor("landmarks", "float32", [-1, 5, 2]),
            _tensor("scores", "float32", [-1]),
            _tensor(PROBABILITIES, "float32", [-1, c], label_filename=LABELS),
            _tensor("labels", "object", [-1]),
        ],
        "instance_group": [{"count": int(instances), "kind": Enum("KIND_CPU")}],
        "parameters": _parameters(params),
    }


def _python_model_source(name: str) -> bytes:
    """The source of :mod:`corese_edge.serve.python_models.<name>`, copied verbatim as ``model.py``."""
    return (Path(__file__).resolve().parent / "python_models" / f"{name}.py").read_bytes()


def _clear_stale(version_dir: Path, written: set[str]) -> None:
    """Remove model files a previous package left in ``version_dir`` that this one did not write
    (a ``model.onnx`` beside a new ``model.plan`` would confuse whoever reads the folder)."""
    if not version_dir.is_dir():
        return
    for entry in version_dir.iterdir():
        if entry.name in _KNOWN_VERSION_FILES and entry.name not in written and entry.is_file():
            entry.unlink()


def _write_artifact_files(facts: ArtifactFacts, version_dir: Path, served: bool) -> list[str]:
    """Put the artifact's files into ``version_dir`` under Triton's default names; ``served``:
    write the frames -> probabilities graph (ONNX / IR) instead of copying."""
    from corese_edge.serve.graphs import served_onnx, served_openvino

    names = NATIVE_FILES[facts.kind]
    targets = [version_dir / n for n in names]
    if served and facts.kind == "onnx":
        served_onnx(facts, targets[0])
    elif served and facts.kind == "openvino":
        served_openvino(facts, targets[0])
    else:
        # one commit per artifact: plan then sidecar (the commit record), .bin then .xml
        parts = dict(zip(targets, (f.read_bytes() for f in facts.files)))
        if facts.kind == "openvino":
            parts = {targets[1]: parts[targets[1]], targets[0]: parts[targets[0]]}
        write_files(parts)
    return list(names)


def served_tensors(facts: ArtifactFacts, backend: str) -> ServedTensors:
    """``coresse``'s tensors: frames -> probabilities except a native plan, which is what it was built as."""
    size, c = facts.metadata.preprocessing.size, facts.num_classes
    if backend == "native" and facts.kind == "tensorrt":
        return ServedTensors(facts.input.name, facts.input.dtype, facts.input.dims, facts.output.name, (c,))
    return ServedTensors(FRAMES, "uint8", (size, size, 3), PROBABILITIES, (c,))


def package_triton(
    artifact: str | os.PathLike,
    out: str | os.PathLike,
    *,
    backend: str = "native",
    max_batch: int | None = None,
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    instances: int = 1,
    threads: int | None = None,
    faces: bool = True,
    face_model: str | os.PathLike | None = None,
) -> TritonRepository:
    """Write the model repository for ``artifact`` into ``out`` (see the module doc).  ``threads``:
    CPU threads per ``coresse`` instance (see :func:`classifier_config`)."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if instances < 1:
        raise UserError(f"--instances must be >= 1, got {instances}")
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be >= 1, got {threads}")
    if max_queue_delay_us < 0:
        raise UserError(f"--max-queue-delay-us must be >= 0, got {max_queue_delay_us}")
    facts = read_artifact(artifact)
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} exists and is not a folder; --triton takes the model repository folder")
    face_path = None
    if faces:
        from corese_edge.runtime.faces import resolve_face_model

        face_path = resolve_face_model(face_model)
    top, opt = _batch_limits(facts, max_batch)
    tensors = served_tensors(facts, backend)
    notes: list[str] = []

    model_dir = root / CLASSIFIER
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    labels = "\n".join(facts.metadata.class_names) + "\n"  # Triton's label file: one class per line
    if backend == "python":
        written = _write_artifact_files(facts, version_dir, served=False)
        write_bytes(version_dir / "model.py", _python_model_source("coresse"))
        written.append("model.py")
        artifact_file = written[0]
    else:
        written = _write_artifact_files(facts, version_dir, served=True)
        artifact_file = None
        if facts.kind == "onnx" and not facts.takes_frames:
            notes.append(f"{CLASSIFIER}: embedded the preprocessing into {facts.path.name} (input '{FRAMES}') and appended a softmax")
        if facts.kind == "tensorrt" and tensors.output_kind == "logits":
            notes.append(f"{CLASSIFIER}: {facts.path.name} is a prebuilt plan without softmax: its output stays "
                         "'logits' (said in the config's parameters)")
        if facts.kind == "tensorrt" and tensors.input_form != "frames":
            notes.append(f"{CLASSIFIER}: {facts.path.name} was built without --embed-preprocess: it takes the float "
                         "'input' [3, S, S]; build the engine from the .preprocess.onnx to take frames")
    _clear_stale(version_dir, set(written))
    write_text(model_dir / LABELS, labels)
    config = classifier_config(facts, tensors, backend=backend, max_batch=top, opt_batch=opt,
                               max_queue_delay_us=max_queue_delay_us, instances=instances, artifact_file=artifact_file,
                               threads=threads)
    write_text(model_dir / "config.pbtxt", render_pbtxt(config) + "\n")
    models = {CLASSIFIER: model_dir}

    if faces and face_path is not None:
        faces_dir = root / FACES
        faces_version = faces_dir / VERSION
        faces_version.mkdir(parents=True, exist_ok=True)
        write_bytes(faces_version / face_path.name, face_path.read_bytes())
        write_bytes(faces_version / "model.py", _python_model_source("faces"))
        _clear_stale(faces_version, {"model.py"})
        write_text(faces_dir / LABELS, labels)
        write_text(faces_dir / "config.pbtxt",
                   render_pbtxt(faces_config(facts, tensors, max_batch=top, instances=instances, face_file=face_path.name)) + "\n")
        models[FACES] = faces_dir
    return TritonRepository(root, models, tensors, top, opt, backend, tuple(notes))
