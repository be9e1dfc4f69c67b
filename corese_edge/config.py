"""Typed configs: frozen dataclasses, optionally overridden by a YAML file, then by explicit options.

Precedence: dataclass defaults < YAML file < options given on the command line.  The resolved
config is written next to every artifact (``config.yaml``, ``export.json``, plan sidecars).
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Mapping, TypeVar

from corese_edge.errors import UserError

T = TypeVar("T")


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: expected a mapping of option names to values")
    return data


def build_config(cls: type[T], yaml_path: str | os.PathLike | None = None, **overrides: Any) -> T:
    """``cls`` from defaults, then ``yaml_path``'s keys, then ``overrides`` whose value is not None.

    Keys may use dashes or underscores.  An unknown key is a :class:`UserError` naming it.
    """
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    if yaml_path:
        for key, value in read_yaml(yaml_path).items():
            name = str(key).replace("-", "_")
            if name not in names:
                raise UserError(f"{yaml_path}: unknown option {key!r}; valid: {', '.join(sorted(names))}")
            values[name] = value
    for key, value in overrides.items():
        if key not in names:
            raise TypeError(f"{cls.__name__} has no field {key!r}")
        if value is not None:
            values[key] = value
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in values and isinstance(values[f.name], list):
            values[f.name] = tuple(values[f.name])
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UserError(f"invalid configuration: {exc}") from None


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-safe dict of a config dataclass (paths and tuples become str and lists)."""

    def clean(v: Any) -> Any:
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        return v

    return {k: clean(v) for k, v in dataclasses.asdict(cfg).items()}


def dump_yaml(data: Mapping[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(dict(data), sort_keys=False)
