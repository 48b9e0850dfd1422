"""Files written whole or not at all (``core.fsutil``): the old file survives a failure, nothing temporary stays."""

from __future__ import annotations

import errno
import os
import stat

import pytest

from cnndesk.core import fsutil


def _full_disk_after(monkeypatch, budget: int):
    """``os.write`` takes ``budget`` bytes, then fails as a full disk does."""
    real = os.write
    left = [budget]

    def write(fd, data):
        if left[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data[:left[0]]))
        left[0] -= n
        return n

    monkeypatch.setattr(fsutil.os, "write", write)


def test_a_full_disk_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "settings.json"
    fsutil.write_text(target, '{"old": true}')
    _full_disk_after(monkeypatch, 5)  # the new text starts to land, then the disk is full
    with pytest.raises(OSError) as e:
        fsutil.write_text(target, '{"new": "a longer text than the old one"}')
    assert e.value.errno == errno.ENOSPC
    assert target.read_text() == '{"old": true}'
    assert os.listdir(tmp_path) == ["settings.json"]


def test_a_library_that_fails_half_way_leaves_the_old_file(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"the old model")
    with pytest.raises(OSError):
        with fsutil.replacing(target) as tmp:
            assert tmp.name == "model.keras" and not tmp.exists()  # the library writes the name it is given
            tmp.write_bytes(b"PK half a")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == b"the old model" and os.listdir(tmp_path) == ["model.keras"]


def test_a_block_that_wrote_nothing_replaces_nothing(tmp_path):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        with fsutil.replacing(target):
            pass
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.png"]


def test_the_file_is_flushed_before_the_rename_and_the_folder_after_it(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        st = os.fstat(fd)
        events.append(("fsync folder" if stat.S_ISDIR(st.st_mode) else "fsync file", st.st_ino))
        real_fsync(fd)

    def replace(src, dst, *a, **k):
        events.append(("replace", os.stat(src).st_ino))
        real_replace(src, dst, *a, **k)

    monkeypatch.setattr(fsutil.os, "fsync", fsync)
    monkeypatch.setattr(fsutil.os, "replace", replace)
    target = fsutil.write_bytes(tmp_path / "records.bin", b"\x01" * 1000)
    written = target.stat().st_ino
    assert events == [("fsync file", written), ("replace", written), ("fsync folder", tmp_path.stat().st_ino)]
    assert target.read_bytes() == b"\x01" * 1000
    assert stat.S_IMODE(target.stat().st_mode) == fsutil.file_mode()


def test_where_a_folder_cannot_be_flushed_nothing_is_tried(tmp_path, monkeypatch):
    monkeypatch.setattr(fsutil, "WINDOWS", True)  # Windows cannot open a folder; NTFS journals its renames
    flushed = []
    monkeypatch.setattr(fsutil.os, "fsync", lambda fd: flushed.append(stat.S_ISDIR(os.fstat(fd).st_mode)))
    fsutil.write_text(tmp_path / "a.txt", "text")
    assert flushed == [False] and (tmp_path / "a.txt").read_text() == "text"


def test_a_folder_replaces_an_earlier_folder_whole(tmp_path):
    target = tmp_path / "served"
    target.mkdir()
    (target / "stale.txt").write_text("from the first export")
    with fsutil.replacing(target) as tmp:
        (tmp / "variables").mkdir(parents=True)
        (tmp / "saved_model.pb").write_bytes(b"graph")
        (tmp / "variables" / "data").write_bytes(b"weights")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*")) == [
        "saved_model.pb", "variables", "variables/data"]
    assert os.listdir(tmp_path) == ["served"]


def test_a_temporary_folder_left_by_a_killed_writer_is_recognised(tmp_path, monkeypatch):
    left = []
    monkeypatch.setattr(fsutil.shutil, "rmtree", lambda *a, **k: None)  # as if killed before tidying
    with pytest.raises(RuntimeError), fsutil.replacing(tmp_path / ".cnndesk-lock.json") as tmp:
        left.append(tmp.parent.name)
        raise RuntimeError("killed")
    assert fsutil.is_temporary(left[0]) and left[0].startswith(".cnndesk-lock.json-")
    assert not any(fsutil.is_temporary(n) for n in ("project.json", ".project-abc.json", "versions", "x.tmp"))
