"""Advisory file locks for processes that share one cache folder.

Two uses, both by ``disk_cache``:

- :class:`ExclusiveLock`: one lock file per cache key. The process (or
  thread) that holds it finds or prepares that cache; the others wait, then
  find the complete cache and reuse it, instead of preparing a second one that
  would later have to be deleted.
- Read holds (:func:`hold_shared`, :func:`unused`): a process that reads a
  cache holds a shared lock on its manifest for as long as it uses the cache;
  a process about to delete a cache takes an exclusive lock on the manifest
  without waiting, and leaves the cache alone when another process holds it.

On POSIX these are ``flock`` locks. They belong to an open file description,
so two threads that each open the file exclude each other as two processes
do, and the system drops them when a process ends, however it ends. A process
keeps one descriptor per held file (reference-counted), so that it can turn
its own shared lock into the exclusive one (``flock`` cannot take an
exclusive lock beside its own shared lock on another descriptor).

On Windows, ``msvcrt.locking`` gives exclusive locks only: the key lock works
as on POSIX, but there are no read holds, and a cache another process reads
is protected only while one of its files is open, as far as Windows refuses
to rename a folder with an open file in it (not tried on Windows).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import Cancelled

WINDOWS = sys.platform == "win32"
if WINDOWS:
    import msvcrt
else:
    import fcntl

#: seconds between two tries of a lock another process holds
POLL_S = 0.2


def _try_exclusive(fd: int) -> bool:
    """Take the exclusive lock of ``fd`` without waiting; whether it was taken."""
    try:
        if WINDOWS:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # held by another (BlockingIOError on POSIX, PermissionError on Windows)
        return False
    return True


def _unlock(fd: int) -> None:
    if WINDOWS:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)


class ExclusiveLock:
    """An exclusive lock on ``path`` (created if missing), held between :meth:`acquire` and :meth:`release`.

    The lock file may be deleted by :meth:`remove_unused` while another
    process waits on it; a waiter that then gets the lock of the deleted file
    notices (the path names another file, or none) and starts again on the
    file now at ``path``, so that two processes never both hold "the" lock.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self, on_wait: Callable[[], None] | None = None,
                cancelled: Callable[[], bool] | None = None, wait: bool = True) -> bool:
        """Wait until the lock is this one's; whether it is held.

        ``on_wait`` is called once, when another holder makes this one wait;
        ``cancelled`` is asked every ``POLL_S`` while waiting. With ``wait``
        False, a lock another holds is not waited for: returns False. A lock
        file that cannot be created (a read-only cache folder, where nothing
        can be prepared anyway) gives no lock: returns False.

        Raises:
            Cancelled: ``cancelled`` said so while waiting.
        """
        waited = False
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
            except OSError:
                return False
            while not _try_exclusive(fd):
                if not wait:
                    os.close(fd)
                    return False
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                if cancelled is not None and cancelled():
                    os.close(fd)
                    raise Cancelled()
                time.sleep(POLL_S)
            if _names(self.path, fd):
                self._fd = fd
                return True
            os.close(fd)  # the file was removed while this one waited on it: lock the one there now

    def remove_unused(self) -> bool:
        """Delete the lock file unless another holds it; whether it was deleted.

        A process waiting for it then gets the lock of the deleted file, sees
        that, and locks the file at ``path`` afterwards (see :meth:`acquire`).
        """
        try:
            fd = os.open(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        except OSError:
            return False
        try:
            if not _try_exclusive(fd):
                return False
            try:
                if _names(self.path, fd):
                    os.unlink(self.path)
                    return True
            finally:
                _unlock(fd)
        except OSError:  # Windows keeps a file that is open from being deleted
            pass
        finally:
            os.close(fd)
        return False

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                _unlock(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> "ExclusiveLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not deleted or replaced meanwhile)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


# ---------------------------------------------------------------------------
# read holds

_guard = threading.Lock()
_held: dict[str, list[int]] = {}  # real path -> [descriptor, holders in this process]


def _key(path: Path) -> str:
    return os.path.realpath(path)


def hold_shared(path: Path) -> bool:
    """Hold a shared lock on ``path`` until :func:`release_shared`; False (nothing held) when it does not exist.

    Waits while another process holds the exclusive lock (only for as long
    as it takes that process to rename the folder away), and then checks that
    ``path`` still names the same file: if it was moved away meanwhile,
    nothing is held and False is returned. On Windows nothing is locked and
    True is returned whenever ``path`` exists.
    """
    if WINDOWS:
        return Path(path).exists()
    key = _key(path)
    with _guard:
        if key in _held:
            _held[key][1] += 1
            return True
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return False
        fcntl.flock(fd, fcntl.LOCK_SH)
        if not _names(path, fd):
            os.close(fd)
            return False
        _held[key] = [fd, 1]
        return True


def release_shared(path: Path) -> None:
    """Give up one hold of :func:`hold_shared`; the lock goes with the last one."""
    if WINDOWS:
        return
    with _guard:
        entry = _held.get(_key(path))
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _held[_key(path)]
            os.close(entry[0])  # closing the descriptor drops its lock


@contextlib.contextmanager
def unused(path: Path) -> Iterator[bool]:
    """Yields whether no other process holds ``path`` with :func:`hold_shared`; while True, none can start to.

    The caller moves or deletes what ``path`` guards inside the ``with``
    block. This process's own holds do not count: its shared lock is turned
    into the exclusive one for the block and back afterwards. A ``path`` that
    does not exist yields True (nobody can hold it). On Windows it always
    yields True.
    """
    if WINDOWS:
        yield True
        return
    with _guard:
        entry = _held.get(_key(path))
        if entry is not None:
            fd = entry[0]
        else:
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                yield True
                return
        free = _try_exclusive(fd)
        try:
            yield free
        finally:
            if entry is not None:
                fcntl.flock(fd, fcntl.LOCK_SH)  # back to this process's own shared hold
            else:
                os.close(fd)
