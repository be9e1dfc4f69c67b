"""Stage 2: FP32 ONNX -> FP16 ONNX that keeps FP32 inputs and outputs (``keep_io_types``).

TensorRT 10.x/11.x build it strongly typed (docs/ARCHITECTURE.md, "Precision lives in the graph");
ONNX Runtime runs it as is.  Ops listed in ``keep_fp32_ops`` (for example ``LayerNormalization``,
whose variance is the usual FP16 casualty) stay in FP32 with casts around them.
"""
from __future__ import annotations

import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from corese_edge.atomic import atomic_path
from corese_edge.errors import require

log = logging.getLogger(__name__)

#: ops the pipeline keeps in FP32 when the all-FP16 graph drifts past --max-drift
SENSITIVE_FP16_OPS = ("LayerNormalization",)


@dataclass(frozen=True)
class SensitiveOpsChoice:
    """Whether :data:`SENSITIVE_FP16_OPS` stay in FP32: ``keep_fp32_ops`` is empty when they do not.

    ``drop_pp_before`` is the drop (pp, on the validation split carved from train) of the graph
    with them in FP16; ``drop_pp`` that of the graph finally in place.
    """

    keep_fp32_ops: tuple[str, ...]
    drop_pp_before: float
    drop_pp: float

    @property
    def kept(self) -> bool:
        return bool(self.keep_fp32_ops)

    def note(self, what: str, instead: str = "") -> str | None:
        """The line that tells the user, e.g. ``note("FP16")``; None when nothing was kept."""
        if not self.kept:
            return None
        return (f"{what} dropped {self.drop_pp_before:.2f} pp on the validation split carved from train; "
                f"{', '.join(self.keep_fp32_ops)} kept in FP32{instead} ({self.drop_pp:.2f} pp)")


def keep_sensitive_ops_if_better(
    dest: str | os.PathLike, drop_pp: float, limit_pp: float,
    make_trial: Callable[[tuple[str, ...]], Path], drop: Callable[[Path], float],
) -> SensitiveOpsChoice:
    """The FP16 fallback of both FP16 graphs (the FP16 ONNX and INT8's FP16 remainder), in one place.

    ``dest`` holds the graph with every op in FP16, which dropped ``drop_pp``.  Only when that is
    over ``limit_pp``: ``make_trial(SENSITIVE_FP16_OPS)`` writes the graph with those ops in FP32
    and returns its path, ``drop(path)`` measures it, and the trial replaces ``dest`` when it drops
    less.  Otherwise nothing is written and nothing is measured.
    """
    if drop_pp <= limit_pp:
        return SensitiveOpsChoice((), drop_pp, drop_pp)
    trial = make_trial(SENSITIVE_FP16_OPS)
    trial_drop = drop(trial)
    if trial_drop < drop_pp:
        shutil.move(os.fspath(trial), os.fspath(dest))
        return SensitiveOpsChoice(tuple(SENSITIVE_FP16_OPS), drop_pp, trial_drop)
    return SensitiveOpsChoice((), drop_pp, drop_pp)


def convert_fp16(
    onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, keep_fp32_ops: Sequence[str] = ()
) -> Path:
    """Write an FP16 copy of ``onnx_in`` whose graph inputs and outputs stay float32.

    ``keep_fp32_ops`` are op types left in FP32 (onnxconverter-common's ``op_block_list``, added to
    its defaults).  The corese-edge metadata is copied unchanged.  Written atomically.
    """
    onnx = require("onnx", "export", "FP16 conversion")
    float16 = require("onnxconverter_common.float16", "export", "FP16 conversion")
    from corese_edge.export.onnx_fp32 import set_metadata, read_metadata

    meta = read_metadata(onnx_in)
    model = onnx.load(os.fspath(onnx_in))
    block = list(float16.DEFAULT_OP_BLOCK_LIST) + [op for op in keep_fp32_ops if op not in float16.DEFAULT_OP_BLOCK_LIST]
    unshare_initializers(model, set(block))
    with warnings.catch_warnings():
        # "the float32 number 1e-09 will be truncated to 1e-07": expected for tiny weights
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    set_metadata(half, meta)
    onnx.checker.check_model(half, full_check=True)
    out = Path(onnx_out)
    with atomic_path(out) as tmp:
        onnx.save(half, os.fspath(tmp))
    log.info("wrote %s (FP16, FP32 I/O%s)", out, f"; FP32 kept for {', '.join(keep_fp32_ops)}" if keep_fp32_ops else "")
    return out


def unshare_initializers(model, blocked_ops: set[str], blocked_nodes: set[str] = frozenset()) -> None:
    """Give FP32-kept nodes (op types ``blocked_ops``, names ``blocked_nodes``) their own copy of
    any initializer they share with converted nodes.

    The TorchScript exporter merges identical constants (for example every zero bias of an
    untrained model), and onnxconverter-common converts a shared initializer once, leaving the
    FP32 node or the FP16 node with the wrong type.
    """
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    users: dict[str, set[bool]] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                users.setdefault(name, set()).add(node.op_type in blocked_ops or node.name in blocked_nodes)
    shared = {name for name, kinds in users.items() if kinds == {True, False}}
    for node in graph.node:
        if node.op_type not in blocked_ops and node.name not in blocked_nodes:
            continue
        for i, name in enumerate(node.input):
            if name in shared:
                copy_name = f"{name}__fp32"
                if copy_name not in inits:
                    copy = graph.initializer.add()
                    copy.CopyFrom(inits[name])
                    copy.name = copy_name
                    inits[copy_name] = copy
                node.input[i] = copy_name
