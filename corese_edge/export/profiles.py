"""Export profiles: ``export/NAME.yaml`` files that pin a target's precisions, batch profile and drift limit.

A profile is named by its file stem (``--profile jetson-orin-int8``) or given as a path
(``--profile export/jetson-orin-int8.yaml``).  Names are looked up in ``./export/`` first, then in
the ``export/`` folder of the corese-edge source tree.  Its keys are :class:`ExportConfig` field
names (dashes or underscores); a profile overrides the defaults and the command line overrides
the profile.
"""
from __future__ import annotations

import os
from pathlib import Path

from corese_edge.errors import UserError

#: the ``export/`` folder at the top of the source tree (present in a checkout / editable install)
SOURCE_PROFILE_DIR = Path(__file__).resolve().parents[2] / "export"


def profile_dirs() -> list[Path]:
    dirs = [Path.cwd() / "export", SOURCE_PROFILE_DIR]
    unique: list[Path] = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [u.resolve() for u in unique]:
            unique.append(d)
    return unique


def available_profiles() -> dict[str, Path]:
    """Profile name -> file, the first folder in :func:`profile_dirs` winning."""
    found: dict[str, Path] = {}
    for d in profile_dirs():
        for path in sorted(d.glob("*.yaml")):
            found.setdefault(path.stem, path)
    return found


def resolve_profile(profile: str | os.PathLike) -> Path:
    """The YAML file for a profile name or path; an unknown one is a :class:`UserError` listing the known."""
    text = os.fspath(profile)
    path = Path(text).expanduser()
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    known = available_profiles()
    name = path.name.removesuffix(".yaml").removesuffix(".yml")
    if name in known and (path.suffix not in (".yaml", ".yml") or len(path.parts) == 1 or path.parent.name == "export"):
        return known[name]
    listing = ", ".join(known) if known else "none found (looked in ./export/)"
    raise UserError(f"unknown export profile {text!r}; available profiles: {listing}")
