"""corese_edge.atomic: the one writer.  Single files and ordered multi-file commits (plan + sidecar,
.xml + .bin): the order of the moves, the fsyncs (files before the moves, the folder after), what a
failure at each step leaves, and the mode of the written files."""
from __future__ import annotations

import os
import stat

import pytest

from corese_edge import atomic


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def log(monkeypatch):
    """Every os.fsync (as the inode it synced) and os.replace (as the target's name), in order."""
    events: list[tuple[str, object]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return events


def test_parts_are_fsynced_then_moved_in_order_then_the_folder_is_fsynced(tmp_path, log):
    plan, sidecar = tmp_path / "m.plan", tmp_path / "m.plan.json"
    atomic.write_files({plan: b"PLAN", sidecar: b"{}\n"})
    assert plan.read_bytes() == b"PLAN" and sidecar.read_bytes() == b"{}\n"
    assert _listing(tmp_path) == ["m.plan", "m.plan.json"]  # no temporary left
    inode = {"plan": plan.stat().st_ino, "sidecar": sidecar.stat().st_ino, "folder": tmp_path.stat().st_ino}
    assert log == [
        ("fsync", inode["plan"]),       # the temporaries' inodes are the targets' after the move
        ("fsync", inode["sidecar"]),
        ("replace", "m.plan"),          # the plan first ...
        ("replace", "m.plan.json"),     # ... the sidecar, the commit record, last
        ("fsync", inode["folder"]),     # and the renames made durable
    ]


def test_the_order_is_the_callers(tmp_path, log):
    """OpenVINO: .bin first, .xml last; the temporaries share a stem, so the .xml's .bin is its part."""
    xml, bin_ = tmp_path / "model.xml", tmp_path / "model.bin"
    with atomic.atomic_files(bin_, xml) as (tmp_bin, tmp_xml):
        assert tmp_xml.with_suffix(".bin") == tmp_bin
        assert tmp_bin.parent == tmp_xml.parent == tmp_path and tmp_xml.suffix == ".xml"
        assert tmp_bin.exists() and tmp_xml.exists() and not xml.exists()  # claimed, not yet in place
        tmp_xml.write_text("<net/>")
        tmp_bin.write_bytes(b"\x00weights")
    assert [e for e in log if e[0] == "replace"] == [("replace", "model.bin"), ("replace", "model.xml")]
    assert xml.read_text() == "<net/>" and bin_.read_bytes() == b"\x00weights"
    assert _listing(tmp_path) == ["model.bin", "model.xml"]


def test_a_failing_writer_leaves_every_previous_file_and_no_temporary(tmp_path, log):
    plan, sidecar = tmp_path / "m.plan", tmp_path / "m.plan.json"
    atomic.write_files({plan: b"OLD PLAN", sidecar: b"old sidecar"})
    log.clear()
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic.atomic_files(plan, sidecar) as (tmp_plan, tmp_sidecar):
            tmp_plan.write_bytes(b"NEW PLAN")
            raise RuntimeError("disk full")
    assert (plan.read_bytes(), sidecar.read_bytes()) == (b"OLD PLAN", b"old sidecar")
    assert _listing(tmp_path) == ["m.plan", "m.plan.json"]
    assert not any(kind == "replace" for kind, _ in log)


def test_a_failing_fsync_moves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "export.json"
    atomic.write_json(target, {"schema": "old"})
    before = target.read_bytes()

    def fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_json(target, {"schema": "new"})
    assert target.read_bytes() == before and _listing(tmp_path) == ["export.json"]


def test_a_failure_between_the_moves_removes_the_parts_already_moved(tmp_path, monkeypatch):
    """The plan is in place, the sidecar's move fails: the new plan is removed again, the old
    sidecar stays, no temporary is left (a new plan never sits beside a sidecar not its own)."""
    plan, sidecar = tmp_path / "m.plan", tmp_path / "m.plan.json"
    atomic.write_files({plan: b"OLD PLAN", sidecar: b"old sidecar"})
    real_replace = os.replace

    def replace(src, dst):
        if str(dst).endswith(".json"):
            raise PermissionError(13, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(PermissionError):
        atomic.write_files({plan: b"NEW PLAN", sidecar: b"new sidecar"})
    assert not plan.exists() and sidecar.read_bytes() == b"old sidecar"
    assert _listing(tmp_path) == ["m.plan.json"]


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic.write_files({tmp_path / "m.plan": b"P", tmp_path / "m.plan.json": b"{}"})
        atomic.write_text(tmp_path / "notes.md", "x")
    finally:
        os.umask(old)
    for name in ("m.plan", "m.plan.json", "notes.md"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_single_file_temporaries_are_named_after_the_target(tmp_path):
    """atomic_path keeps the target's suffix (onnx, matplotlib infer the format from it) and names the
    temporary .<target>.tmp-*, beside it."""
    with atomic.atomic_path(tmp_path / "model.onnx") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.tmp-") and tmp.suffix == ".onnx"
        tmp.write_bytes(b"onnx")
    with atomic.atomic_path(tmp_path / "plot", suffix=".png") as tmp:
        assert tmp.suffix == ".png"
        tmp.write_bytes(b"png")
    assert _listing(tmp_path) == ["model.onnx", "plot"]


def test_parts_of_one_commit_share_a_folder_and_differ_in_suffix(tmp_path):
    with pytest.raises(ValueError, match="distinct suffixes"):
        atomic.write_files({tmp_path / "a.json": b"", tmp_path / "b.json": b""})
    with pytest.raises(ValueError, match="share one folder"):
        atomic.write_files({tmp_path / "m.plan": b"", tmp_path / "sub" / "m.plan.json": b""})
    assert _listing(tmp_path) == []


def test_write_json_refuses_a_document_without_schema(tmp_path):
    with pytest.raises(ValueError, match="schema"):
        atomic.write_json(tmp_path / "x.json", {"a": 1})
    atomic.write_json(tmp_path / "x.json", {"schema": "s/1", "path": tmp_path})
    assert (tmp_path / "x.json").read_text() == atomic.json_text({"schema": "s/1", "path": str(tmp_path)})
    assert _listing(tmp_path) == ["x.json"]
