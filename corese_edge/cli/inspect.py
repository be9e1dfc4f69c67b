"""CLI: ``corese-edge inspect ARTIFACT``, the precision census of an ONNX graph or a built plan.

Never imports torch: an ONNX census needs only ``onnx``; a plan's census is read from its sidecar.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from corese_edge.errors import UserError


def read_artifact_census(artifact: str | Path, batch: int = 1) -> tuple[dict[str, Any], str]:
    """(census dict, title) for an ``.onnx`` (computed at ``batch``) or a ``.plan`` / ``.plan.json``
    (the ``census`` key its sidecar stores).  Anything else is a :class:`UserError`."""
    path = Path(artifact)
    name = path.name.lower()
    if name.endswith(".onnx"):
        from corese_edge.export.census import precision_census

        return precision_census(path, batch).to_dict(), path.name
    if name.endswith((".plan", ".engine", ".plan.json", ".engine.json")):
        sidecar = path if name.endswith(".json") else path.with_name(path.name + ".json")
        if not sidecar.is_file():
            raise UserError(f"{sidecar} not found: a plan's census is read from the sidecar build-engine writes beside it")
        try:
            raw = json.loads(sidecar.read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{sidecar}: not a readable plan sidecar ({exc})") from None
        census = raw.get("census") if isinstance(raw, dict) else None
        if not isinstance(census, dict) or "precisions" not in census:
            raise UserError(f"{sidecar} holds no precision census (built by an older build-engine); "
                            "run 'corese-edge inspect' on the ONNX the plan was built from")
        return census, sidecar.name
    if not path.exists():
        raise UserError(f"{path} not found")
    raise UserError(f"{path}: not an ONNX model or a plan (expected .onnx, .plan or .plan.json)")


@click.command("inspect", epilog="""\b
Examples:
  corese-edge inspect export/model.int8.onnx          # which precision each layer runs in on TensorRT
  corese-edge inspect export/model.fp16.onnx --batch 8
  corese-edge inspect export/model.int8.plan          # the census stored in its sidecar
  corese-edge inspect export/model.int8.onnx --json > census.json
""")
@click.argument("artifact", type=click.Path())
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Batch size the FLOPs are counted at (ONNX only).")
@click.option("--json", "as_json", is_flag=True, help="Print the census as JSON instead of a table.")
def inspect_command(artifact: str, batch: int, as_json: bool) -> None:
    """Precision census: per precision (int8, fp16, fp32) the compute nodes and their share of FLOPs
    under TensorRT's strong typing, then every FP32 compute node with its op type and FLOPs."""
    from corese_edge.export.census import census_table

    census, title = read_artifact_census(artifact, batch)
    click.echo(json.dumps(census, indent=2) if as_json else census_table(census, title=title))
