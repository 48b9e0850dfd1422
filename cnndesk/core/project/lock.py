"""An exclusive, OS-backed lock on a project folder for the length of a save."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from ..errors import ProjectError

LOCK_FILE = ".cnndesk-lock"


class ProjectLock:
    """An exclusive lock on a project folder for the length of a save.

    The lock file holds the writer's pid and host, to name it in messages; the
    exclusion itself is an OS lock on that file (``flock``; ``msvcrt.locking`` on
    Windows), which the OS drops when the process dies. A lock file left by a
    killed writer is therefore free and is simply taken over.

    Args:
        folder: the project folder (it must exist).

    Raises:
        ProjectError: another live process holds the lock (``busy``), or the
            lock file cannot be created (``OSError`` is passed on as it is).
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.fd: int | None = None
        self.took_over: dict | None = None  # what a stale lock file said, if one was taken over

    def acquire(self, timeout: float = 0.0) -> "ProjectLock":
        """Take the lock, waiting up to ``timeout`` seconds for a live holder to finish."""
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if not _try_lock(fd):
                    if time.monotonic() < deadline:
                        os.close(fd)
                        fd = None
                        time.sleep(0.02)
                        continue
                    holder = _read_holder(fd)
                    for _ in range(10):  # the holder writes its name just after taking the lock
                        if holder:
                            break
                        time.sleep(0.01)
                        holder = _read_holder(fd)
                    os.close(fd)
                    fd = None
                    raise ProjectError(_busy_message(self.folder, holder))
                try:  # the previous holder may have removed the file after we opened it: lock the file at the path
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    fd = None
                    continue
                holder = _read_holder(fd)
                if holder:
                    self.took_over = holder  # a writer died holding it (its OS lock went with it)
                me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
                os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(fd, 0)
                os.write(fd, me)
                self.fd, fd = fd, None
                return self
            finally:
                if fd is not None:
                    os.close(fd)
        raise ProjectError(f"{self.folder} is being saved by another process; try again in a moment.")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):  # before unlocking, so a waiting writer sees the file is gone and retries
            os.unlink(self.path)
        _unlock(self.fd)
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


try:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1 << 20)  # a byte range beyond the text, so it stays readable
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1 << 20)
        except OSError:
            pass


def _read_holder(fd: int) -> dict | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        d = json.loads(os.read(fd, 4096).decode("utf-8"))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def _busy_message(folder: Path, holder: dict | None) -> str:
    pid = holder.get("pid") if holder else None
    host = holder.get("host") if holder else None
    who = f"process {pid}" if isinstance(pid, int) else "another process"
    if isinstance(host, str) and host and host != socket.gethostname():
        who += f" on {host}"
    return f"{folder} is being saved by {who}; try again when that save has finished."
