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
