"""Atomic artifact writes: temporary files in the target folder, fsynced, moved with ``os.replace``.

A crash, Ctrl-C or full disk mid-write leaves the previous file intact, never a half-written one
(docs/ARCHITECTURE.md, "Atomic writes").  This module is the one writer: single files
(:func:`atomic_path`, :func:`write_bytes`, :func:`write_text`, :func:`write_json`,
:func:`torch_save`) and files that only make sense together (:func:`atomic_files`,
:func:`write_files`: a TensorRT plan and its sidecar, an OpenVINO ``.xml`` and its ``.bin``) go
through the same commit:

1. every part gets a temporary file beside its target (``.<first target>.tmp-<token><suffix>``,
   one token per commit, so parts that name each other by stem, as OpenVINO's ``.xml`` does its
   ``.bin``, still do);
2. the caller writes them; an exception here removes the temporaries and leaves every target as
   it was;
3. each temporary is fsynced and given the mode a normal file would get (``0666 & ~umask``;
   ``mkstemp`` makes ``0600``);
4. they are moved over their targets in the order given, the last one acting as the commit record;
   if a move fails, the parts already moved are removed again, so a new part never sits beside an
   old one that does not belong to it;
5. the folder is fsynced, so the renames survive a power loss (a Jetson's SD card).

Only a SIGKILL or power loss between two moves leaves a mixed state; the readers recognise it (a
plan's sidecar records its size and sha256, see ``corese_edge.runtime.trt.check_plan_file``).
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


@contextlib.contextmanager
def atomic_files(*targets: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path per target; on success they replace the targets in this order.

    The targets share one folder and differ in suffix (``model.plan`` + ``model.plan.json``,
    ``model.bin`` + ``model.xml``); the temporaries keep the targets' suffixes, so libraries that
    infer a format from the file name still work.  See the module doc for the guarantees.
    """
    paths = [Path(t) for t in targets]
    with _commit(paths, [p.suffix for p in paths]) as temps:
        yield temps


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    ``suffix`` defaults to the target's suffix, so libraries that infer a format from the
    file name (matplotlib, onnx) still work.
    """
    target = Path(path)
    with _commit([target], [suffix if suffix is not None else target.suffix]) as (tmp,):
        yield tmp


def write_files(parts: Mapping[str | os.PathLike, bytes]) -> None:
    """Write every ``{path: bytes}`` part as one commit, moved into place in the mapping's order
    (the last part is the commit record)."""
    with atomic_files(*parts) as temps:
        for tmp, data in zip(temps, parts.values()):
            tmp.write_bytes(data)


@contextlib.contextmanager
def _commit(targets: list[Path], suffixes: list[str]) -> Iterator[tuple[Path, ...]]:
    if not targets:
        raise ValueError("atomic_files needs at least one target")
    folder = targets[0].parent
    if any(t.parent != folder for t in targets):
        raise ValueError(f"the parts of one atomic commit share one folder: {', '.join(map(str, targets))}")
    if len(set(suffixes)) != len(suffixes) or len({t.name for t in targets}) != len(targets):
        raise ValueError(f"the parts of one atomic commit need distinct suffixes: {', '.join(map(str, targets))}")
    folder.mkdir(parents=True, exist_ok=True)
    temps = _claim_temps(folder, targets[0].name, suffixes)
    moved: list[Path] = []
    try:
        yield tuple(temps)
        mode = 0o666 & ~_umask()
        for tmp in temps:
            _fsync_file(tmp)
            os.chmod(tmp, mode)
        try:
            for tmp, target in zip(temps, targets):
                os.replace(tmp, target)
                moved.append(target)
        except BaseException:
            # never leave a new part beside an old one it does not belong with (should even this
            # fail, readers refuse the pair: a plan's sidecar vouches for its size and sha256)
            for target in moved:
                with contextlib.suppress(OSError):
                    target.unlink(missing_ok=True)
            raise
        _fsync_dir(folder)
    finally:
        for tmp in temps:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _claim_temps(folder: Path, name: str, suffixes: list[str]) -> list[Path]:
    """Create (empty, ``0600``) one temporary per suffix, all with one fresh token."""
    prefix = f".{name}.tmp-"
    for _ in range(100):
        fd, first = tempfile.mkstemp(prefix=prefix, suffix=suffixes[0], dir=folder)
        os.close(fd)
        temps = [Path(first)]
        token = temps[0].name[len(prefix): len(temps[0].name) - len(suffixes[0])]
        try:
            for suffix in suffixes[1:]:
                tmp = folder / f"{prefix}{token}{suffix}"
                os.close(os.open(tmp, _CREATE, 0o600))
                temps.append(tmp)
            return temps
        except FileExistsError:  # another writer holds this token: give ours back, draw again
            for tmp in temps:
                tmp.unlink(missing_ok=True)
    raise FileExistsError(f"no free temporary name for {folder / name}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the renames durable; best effort where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    """The process umask (``os.umask`` can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """``obj`` as the toolkit writes JSON: indented, keys in their order, a final newline (numpy
    values and paths as plain JSON)."""
    return json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON. Every JSON the toolkit writes carries a ``schema`` key."""
    if isinstance(obj, dict) and "schema" not in obj:
        raise ValueError(f"refusing to write {path}: JSON artifacts must carry a 'schema' field")
    write_text(path, json_text(obj))


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, Paths
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (torch-free, for artifacts of any size)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
