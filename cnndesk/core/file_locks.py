"""Locks for processes that share one dataset cache folder (``disk_cache``'s).

- The build lock of a cache key (:func:`exclusive`, :func:`take`, :func:`remove_unused`): an exclusive
  ``filelock.FileLock`` on one lock file per key. The process (or thread) that holds it finds or
  prepares that cache; the others wait, then find the complete cache and reuse it, instead of
  preparing a second one that would later have to be deleted. The OS drops it when a process ends,
  however it ends.
- Read holds (:func:`hold_shared`, :func:`release_shared`, :func:`unused`): a process that reads a
  cache holds a shared lock on its manifest for as long as it uses the cache; a process about to
  delete a cache takes an exclusive lock on the manifest without waiting, and leaves the cache alone
  when another process holds it.

The read holds stay hand-written, on ``flock``, because filelock has no lock that fits: its
reader/writer lock keeps its state in an SQLite database file, which would have to live inside the
cache folder that is renamed and deleted under it, and it refuses to turn a process's own read hold
into the write hold that deleting needs. ``flock`` locks belong to an open file description, and a
process keeps one descriptor per held manifest (reference-counted), so that it can turn its own
shared lock into the exclusive one (``flock`` cannot take an exclusive lock beside its own shared
lock on another descriptor). On Windows there are no read holds: a cache another process reads is
protected only while one of its files is open, as far as Windows refuses to rename a folder with an
open file in it (not tried on Windows).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import filelock

from .errors import Cancelled

WINDOWS = sys.platform == "win32"
if not WINDOWS:
    import fcntl

#: seconds between two tries of a lock another process holds
POLL_S = 0.2
_WAIT_S = 60.0


def exclusive(path: Path) -> filelock.FileLock:
    """The exclusive lock on ``path`` (the file is created when it is taken); take it with :func:`take`.

    Each call gives a lock of its own, shared by the threads that use it: two of them exclude each
    other as two processes do. A lock file that another process deletes while this one waits for it
    is noticed (filelock checks that the file it locked still has a name) and the path is tried again,
    so two processes never both hold "the" lock.
    """
    return filelock.FileLock(path, thread_local=False, fallback_to_soft=False, poll_interval=POLL_S)


def take(lock: filelock.FileLock, on_wait: Callable[[], None] | None = None,
         cancelled: Callable[[], bool] | None = None, wait: bool = True) -> bool:
    """Wait until ``lock`` is this one's; whether it is held.

    ``on_wait`` is called once, when another holder makes this one wait; ``cancelled`` is asked every
    ``POLL_S`` while waiting. With ``wait`` False, a lock another holds is not waited for: returns
    False. A lock file that cannot be created (a read-only cache folder, where nothing can be prepared
    anyway) gives no lock: returns False.

    Raises:
        Cancelled: ``cancelled`` said so while waiting.
    """
    try:
        try:
            lock.acquire(blocking=False)
            return True
        except filelock.Timeout:
            if not wait:
                return False
        if on_wait is not None:
            on_wait()
        while True:
            # waits of a finite length: filelock refuses an endless one for a lock another instance holds in this
            # thread (its deadlock check), which is how a test stands in for another process
            try:
                lock.acquire(timeout=_WAIT_S, cancel_check=cancelled)
                return True
            except filelock.Timeout:
                if cancelled is not None and cancelled():
                    raise Cancelled() from None
    except OSError:  # filelock.Timeout is one too, but never reaches here
        return False


def remove_unused(path: Path) -> bool:
    """Delete the lock file at ``path`` unless another holds it; whether it was deleted.

    A process waiting for it then gets the lock of the deleted file, which filelock notices, and
    locks the file at ``path`` afterwards (see :func:`exclusive`).
    """
    if not os.path.lexists(path):
        return False
    lock = exclusive(path)
    if not take(lock, wait=False):
        return False
    try:
        os.unlink(path)
        return True
    except OSError:  # Windows keeps a file that is open from being deleted; filelock deletes it on release there
        return False
    finally:
        lock.release()


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
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            free = True
        except OSError:  # held by another
            free = False
        try:
            yield free
        finally:
            if entry is not None:
                fcntl.flock(fd, fcntl.LOCK_SH)  # back to this process's own shared hold
            else:
                os.close(fd)
