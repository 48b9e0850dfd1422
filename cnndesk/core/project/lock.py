"""An exclusive lock on a project folder for the length of a save, and who holds it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

import filelock

from .. import fsutil
from ..errors import ProjectError

LOCK_FILE = ".cnndesk-lock"
#: the holder's pid, host and start time, written beside the lock file: a file of its own, so it can be read while
#: the lock is held on every system (a Windows lock makes the bytes it covers unreadable to others)
HOLDER_FILE = ".cnndesk-lock.json"
#: how long a writer that finds the lock taken looks for the holder's name before it says "another process"
_NAME_WAIT_S = 0.5


class ProjectLock:
    """An exclusive lock on a project folder for the length of a save.

    The exclusion is an OS lock on ``LOCK_FILE`` (``filelock``: ``flock``, or ``LockFileEx`` on Windows),
    which the OS drops when the process dies: a lock left by a killed writer is therefore free and is
    simply taken over. ``HOLDER_FILE`` names the holder, for messages. Both files go when the lock is
    released.

    Args:
        folder: the project folder (it must exist).

    Raises:
        ProjectError: another live process holds the lock (``busy``), or the
            lock file cannot be created (``OSError`` is passed on as it is).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.holder_path = self.folder / HOLDER_FILE
        # one lock per ProjectLock, shared by the threads that use it: two of them exclude each other as processes do
        self._lock = filelock.FileLock(self.path, thread_local=False, fallback_to_soft=False)
        self.took_over: dict | None = None  # who held it, if a writer died holding it

    def acquire(self, timeout: float = 0.0) -> "ProjectLock":
        """Take the lock, waiting up to ``timeout`` seconds for a live holder to finish."""
        try:
            self._lock.acquire(timeout=timeout, poll_interval=0.02)
        except filelock.Timeout:
            holder = self._holder_or_lock()
            if holder is not None:
                raise ProjectError(_busy_message(self.folder, holder)) from None
        try:
            self.took_over = _read_holder(self.holder_path)  # a clean release removes it: a writer died holding it
            me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
            fsutil.write_text(self.holder_path, json.dumps(me))
        except BaseException:
            self._lock.release()
            raise
        return self

    def _holder_or_lock(self) -> dict | None:
        """Who holds the lock (read from ``HOLDER_FILE``), or None when it could be taken after all.

        The holder writes its name just after it takes the lock and removes it just before it lets go:
        while the name is missing, the lock is tried again.
        """
        deadline = time.monotonic() + _NAME_WAIT_S
        while True:
            holder = _read_holder(self.holder_path)
            if holder is not None:
                return holder
            try:
                self._lock.acquire(blocking=False)
                return None
            except filelock.Timeout:
                if time.monotonic() > deadline:
                    return {}
                time.sleep(0.01)

    def release(self) -> None:
        if not self._lock.is_locked:
            return
        # before unlocking, so that a waiting writer never reads a name that is gone
        for path in (self.holder_path, self.path):
            with contextlib.suppress(OSError):  # Windows deletes the lock file itself once it is unlocked
                os.unlink(path)
        self._lock.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_holder(path: Path) -> dict | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def _busy_message(folder: Path, holder: dict) -> str:
    pid, host = holder.get("pid"), holder.get("host")
    who = f"process {pid}" if isinstance(pid, int) else "another process"
    if isinstance(host, str) and host and host != socket.gethostname():
        who += f" on {host}"
    return f"{folder} is being saved by {who}; try again when that save has finished."
