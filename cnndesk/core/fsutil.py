"""Writing a file so that it appears whole or not at all: the one way cnndesk writes its files.

A file is written under a temporary name in the target's folder (same disk), flushed to disk
(``fsync``), moved over the target with ``os.replace`` (atomic on POSIX and on NTFS), and then the
folder itself is flushed, so that the rename survives a power cut too. A failure at any point (a
full disk, a kill) leaves the old file as it was; a failure this process sees also removes what it
had written under the temporary name.

The temporary name is a hidden folder beside the target, ``.<name>-<random>.tmp``, holding the new
file under the target's own name: a library that picks the format by the suffix (``model.save``,
``np.save``, Pillow) or writes a folder (a SavedModel) writes there as it would at the target.
:func:`is_temporary` recognises such a folder left by a killed process, for the clean-ups.

``OSError`` passes through unchanged (with its ``errno``): each caller turns it into its own error
(``ProjectError``, ``DatasetError``, ``UserError``) with its own words; :func:`why_not_written` gives the
reason in a few words a person reads ("the disk is full").
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, Iterator

WINDOWS = sys.platform == "win32"

_TEMPORARY = re.compile(r"^\..+-[a-z0-9_]{8}\.tmp$")  # what mkdtemp makes of the prefix and suffix below


def umask() -> int:
    """The process umask, read without changing it where the system allows (``os.umask`` is process-wide)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The permissions a new file gets from ``open`` (``0o666`` less the umask); ``mkstemp`` makes 0600."""
    return 0o666 & ~umask()


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's bytes to disk."""
    # Windows flushes only through a handle that may write (FlushFileBuffers); POSIX takes any descriptor
    fd = os.open(path, (os.O_RDWR | getattr(os, "O_BINARY", 0)) if WINDOWS else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk, where the system allows.

    Windows cannot open a folder as a file, so nothing is flushed there: NTFS journals its renames.
    A file system that refuses to flush a folder (some network shares) is not an error either.
    """
    if WINDOWS:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush a file, or every file and folder of a folder, to disk."""
    path = Path(path)
    if not path.is_dir():
        fsync_file(path)
        return
    for root, _dirs, files in os.walk(path):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_folder(root)


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of :func:`replacing`'s temporary folders (left by a process that was killed)."""
    return bool(_TEMPORARY.match(name))


def why_not_written(e: OSError) -> str:
    """Why a file could not be written, in a few words for a person ("the disk is full")."""
    number = getattr(e, "errno", None)
    if number in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "the disk is full"
    if number in (errno.EACCES, errno.EPERM):
        return "permission denied; choose a folder you may write to"
    if number == errno.EROFS:
        return "the disk is read-only; choose another folder"
    return str(e.strerror or e).rstrip(".")


@contextlib.contextmanager
def replacing(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write ``target``'s new content at; it replaces ``target`` when the block ends.

    The path is new (nothing is there yet) and has ``target``'s name, in a hidden folder beside it.
    What the block wrote there (a file, or a folder such as a SavedModel) is flushed to disk, given
    the usual permissions, and moved over ``target``; then ``target``'s folder is flushed. An
    existing folder at ``target`` is moved aside first and deleted once the new one is in place
    (a folder cannot be renamed over another): a kill in between leaves it in the hidden folder.
    When the block raises, or the block wrote nothing, or any step fails, ``target`` is as it was
    and the temporary folder is removed.

    Raises:
        OSError: the temporary folder cannot be made, or a flush or the rename failed
            (``FileNotFoundError`` when the block wrote nothing).
    """
    target = Path(target)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name.lstrip('.')}-", suffix=".tmp", dir=target.parent))
    try:
        tmp = folder / target.name
        yield tmp
        fsync_tree(tmp)
        if not tmp.is_dir():
            os.chmod(tmp, file_mode())  # a library that wrote through mkstemp leaves 0600: saved files get the usual
        if tmp.is_dir() and target.is_dir() and not target.is_symlink():
            old = folder / (target.name + ".old")
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except OSError:
                os.replace(old, target)
                raise
        else:
            os.replace(tmp, target)
        fsync_folder(target.parent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def open_replacing(target: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Yield a new file opened with ``mode`` (and ``open``'s ``kwargs``); it replaces ``target`` as :func:`replacing`
    says when the block ends without an error."""
    with replacing(target) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Replace ``target`` with ``data``, whole or not at all (see :func:`replacing`); returns ``target``."""
    with replacing(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    return Path(target)


def copy(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Copy the file ``source`` (bytes, times and permissions) to ``target``, whole or not at all; returns ``target``."""
    with replacing(target) as tmp:
        shutil.copy2(source, tmp)
    return Path(target)


def write_text(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``target`` with ``text`` encoded as ``encoding``, whole or not at all; returns ``target``."""
    return write_bytes(target, text.encode(encoding))
