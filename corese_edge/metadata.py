"""Artifact metadata: what travels with every exported model (torch-free, onnx-free).

ONNX files carry it in ``metadata_props`` with exactly the keys of :data:`ONNX_KEYS` (values are
strings; ``class_names`` and ``preprocessing`` are JSON).  TensorRT plans carry it, plus build
facts, in a sidecar ``<plan>.json``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping

from corese_edge.errors import UserError
from corese_edge.preprocessing import Preprocessing

ONNX_SCHEMA = "corese-edge/onnx/1"
ONNX_KEYS = ("class_names", "preprocessing", "model", "checkpoint_sha256", "corese_edge_version", "schema")


@dataclass(frozen=True)
class ArtifactMetadata:
    class_names: tuple[str, ...]
    preprocessing: Preprocessing
    model: str
    checkpoint_sha256: str
    corese_edge_version: str
    schema: str = ONNX_SCHEMA

    def to_props(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props``."""
        return {
            "class_names": json.dumps(list(self.class_names)),
            "preprocessing": self.preprocessing.to_json(),
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
            "corese_edge_version": self.corese_edge_version,
            "schema": self.schema,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ArtifactMetadata":
        missing = [k for k in ONNX_KEYS if k not in props]
        if missing:
            raise UserError(
                f"{source}: not a corese-edge artifact (metadata lacks {', '.join(missing)}); "
                "export it with 'corese-edge export'"
            )
        try:
            return cls(
                class_names=tuple(json.loads(props["class_names"])),
                preprocessing=Preprocessing.from_json(props["preprocessing"]),
                model=props["model"],
                checkpoint_sha256=props["checkpoint_sha256"],
                corese_edge_version=props["corese_edge_version"],
                schema=props["schema"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{source}: corrupt corese-edge metadata ({exc})") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "preprocessing": self.preprocessing.to_dict(),
            "model": self.model,
            "checkpoint_sha256": self.checkpoint_sha256,
            "corese_edge_version": self.corese_edge_version,
        }


#: OpenVINO IR: the metadata lives in the model's rt_info under this key, one string per
#: :data:`ONNX_KEYS` entry (the same strings as ONNX ``metadata_props``), plus build facts under
#: ``corese_edge/build/...`` (precision, source ONNX, quantizer).
RT_INFO_ROOT = "corese_edge"


def write_rt_info(model: Any, props: Mapping[str, str], build: Mapping[str, str] | None = None) -> None:
    """Store ``props`` (:meth:`ArtifactMetadata.to_props` or an ONNX file's ``metadata_props``) and
    ``build`` in an ``openvino.Model``'s rt_info; :func:`ov.save_model` then writes them into the .xml."""
    for key, value in props.items():
        model.set_rt_info(str(value), [RT_INFO_ROOT, str(key)])
    for key, value in (build or {}).items():
        model.set_rt_info(str(value), [RT_INFO_ROOT, "build", str(key)])


def read_rt_info(model: Any, source: str = "model") -> tuple[ArtifactMetadata, dict[str, str]]:
    """The :class:`ArtifactMetadata` and build facts stored by :func:`write_rt_info` in an
    ``openvino.Model`` read from ``source``; a one-line :class:`UserError` when they are missing."""
    props: dict[str, str] = {}
    for key in ONNX_KEYS:
        if model.has_rt_info([RT_INFO_ROOT, key]):
            props[key] = model.get_rt_info([RT_INFO_ROOT, key]).astype(str)
    build: dict[str, str] = {}
    if model.has_rt_info([RT_INFO_ROOT, "build"]):
        for key in model.get_rt_info([RT_INFO_ROOT, "build"]).astype(dict):
            build[str(key)] = model.get_rt_info([RT_INFO_ROOT, "build", str(key)]).astype(str)
    return ArtifactMetadata.from_props(props, source), build
