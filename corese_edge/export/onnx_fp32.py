"""Stage 1: checkpoint -> FP32 ONNX with a dynamic batch and corese-edge metadata."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

from corese_edge import __version__
from corese_edge.atomic import atomic_path
from corese_edge.metadata import ArtifactMetadata

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(checkpoint, out: str | os.PathLike, opset: int = 17, model=None) -> Path:
    """Export a corese-edge checkpoint to ONNX (SE always in ``sample`` mode).

    Input ``input``: float32 (N, 3, S, S), normalised; output ``logits``: float32 (N, classes).
    Leftover Identity nodes are removed, Constant nodes become initializers and unused
    initializers are dropped; the result passes the full ``onnx.checker`` check.  Written
    atomically.  ``checkpoint`` is a path or an already loaded
    :class:`~corese_edge.model.checkpoint.Checkpoint`; ``model`` optionally reuses a module built
    from it (``ckpt.build_model(se_mode="sample")``).
    """
    import onnx
    import torch

    from corese_edge.model.checkpoint import Checkpoint, file_sha256, load_checkpoint

    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    if model is None:
        model = ckpt.build_model(se_mode="sample")
    elif getattr(model, "se_mode", "sample") != "sample" or model.training:
        raise ValueError("export_onnx needs the model in eval mode with se_mode='sample'")
    size = ckpt.preprocessing.size
    dummy = torch.zeros(1, 3, size, size)
    out = Path(out)
    with atomic_path(out) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (dummy,),
            str(tmp),
            dynamo=False,  # single file, opset 17 (the dynamo exporter writes external data)
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
        )
        proto = onnx.load(str(tmp))
        proto = remove_identities(fold_constant_nodes(proto))
        meta = ArtifactMetadata(
            class_names=tuple(ckpt.class_names),
            preprocessing=ckpt.preprocessing,
            model=ckpt.variant,
            checkpoint_sha256=file_sha256(ckpt.path),
            corese_edge_version=__version__,
        )
        set_metadata(proto, meta)
        proto.doc_string = f"CoRes-SE ({ckpt.variant}) exported by corese-edge {__version__}"
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, str(tmp))
    return out


def onnx_opset(model) -> int:
    """The default-domain (``ai.onnx``) opset of a ModelProto or an ONNX path; 0 when it names none."""
    if not hasattr(model, "opset_import"):
        import onnx

        model = onnx.load(os.fspath(model), load_external_data=False)
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def set_metadata(proto, meta: ArtifactMetadata) -> None:
    """Replace ``metadata_props`` with exactly the corese-edge keys."""
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(path: str | os.PathLike) -> ArtifactMetadata:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return ArtifactMetadata.from_props({p.key: p.value for p in proto.metadata_props}, source=str(path))


def fold_constant_nodes(proto):
    """Turn ``Constant`` nodes into initializers (TensorRT's parser and ORT's quantizer prefer them).

    A Constant that is itself a graph output is left alone, as is the rare ``sparse_value`` form.
    """
    from onnx import helper, numpy_helper
    import numpy as np

    graph = proto.graph
    outputs = {o.name for o in graph.output}
    existing = {t.name for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type != "Constant" or node.output[0] in outputs or node.output[0] in existing:
            keep.append(node)
            continue
        attr = node.attribute[0] if len(node.attribute) == 1 else None
        if attr is None or attr.name == "sparse_value":
            keep.append(node)
            continue
        value = helper.get_attribute_value(attr)
        if attr.name == "value":
            tensor = value
            tensor.name = node.output[0]
        else:
            dtype = {"value_float": np.float32, "value_floats": np.float32,
                     "value_int": np.int64, "value_ints": np.int64}.get(attr.name)
            if dtype is None:  # value_string(s): keep as a node
                keep.append(node)
                continue
            tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), node.output[0])
        graph.initializer.append(tensor)
        existing.add(node.output[0])
    del graph.node[:]
    graph.node.extend(keep)
    return proto


def remove_identities(proto):
    """Bypass Identity nodes (rewiring their consumers) and drop initializers nothing uses."""
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] not in outputs:
            src = node.input[0]
            rename[node.output[0]] = rename.get(src, src)
            continue
        keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(keep)
    used = {name for node in graph.node for name in node.input} | outputs
    inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    return proto
