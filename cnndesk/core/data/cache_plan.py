"""Where a dataset's decoded images live: in memory, or in shards on disk when they do not fit.

:func:`plan_cache` estimates the decoded cache of a dataset (images × H × W ×
channels bytes) and compares it with a memory budget (default: half of the
available memory); the answer, a :class:`CachePlan`, says which and why.
Also the byte figures the window shows and reads ("2.1 GB", "500M").
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .images import Preprocessing

#: the environment variable that moves the default cache folder
CACHE_DIR_ENV = "CNNDESK_CACHE_DIR"


def available_memory() -> int:
    """Bytes of memory available to a new allocation without swapping.

    Linux's ``MemAvailable`` (page cache that can be dropped counts as
    available); elsewhere the free physical pages ``os.sysconf`` reports;
    4 GiB when neither can be read.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 4 * 2**30


def default_memory_limit() -> int:
    """Half of the available memory: the rest is for TensorFlow, the model and the system."""
    return available_memory() // 2


def default_cache_folder() -> Path:
    """Where caches go unless the user chose a folder: ``$CNNDESK_CACHE_DIR``, else the user's cache folder.

    Linux: ``$XDG_CACHE_HOME/cnndesk/datasets`` (``~/.cache/cnndesk/datasets``);
    macOS: ``~/Library/Caches/cnndesk/datasets``; Windows:
    ``%LOCALAPPDATA%\\cnndesk\\Cache\\datasets``.
    """
    chosen = os.environ.get(CACHE_DIR_ENV)
    if chosen:
        return Path(chosen).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "cnndesk" / "Cache"
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches" / "cnndesk"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cnndesk"
    return base / "datasets"


def format_bytes(n: float) -> str:
    """``n`` bytes for people, three digits at most: "812 MB", "3.41 GB" (powers of 1000, as file managers
    show them)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(n) < 999.5 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """A size as people write it: "8G", "512MB", "1.5GiB", "0" (bytes when no unit is given).

    Raises:
        UserError: not a size.
    """
    s = text.strip().lower().replace(" ", "")
    number = s.rstrip("kmgtib")
    unit = s[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if unit not in _UNITS or value < 0 or value != value:
        raise UserError(f"{text!r} is not a size: write e.g. 8G, 512M or 0.")
    return int(value * _UNITS[unit])


@dataclass(frozen=True)
class CacheSettings:
    """How much memory decoded images may take, and where on-disk caches go.

    Args:
        memory_limit: bytes; None: half of the available memory, read when a
            dataset is loaded. 0 puts every dataset on disk.
        folder: the folder that holds the caches; None: :func:`default_cache_folder`.
    """

    memory_limit: int | None = None
    folder: Path | None = None

    def limit(self) -> int:
        return default_memory_limit() if self.memory_limit is None else int(self.memory_limit)

    def root(self) -> Path:
        return Path(self.folder).expanduser() if self.folder is not None else default_cache_folder()


def estimate_bytes(images: int, preprocessing: Preprocessing) -> int:
    """Bytes of the decoded uint8 cache of ``images`` images: images × H × W × channels."""
    return int(images) * int(np.prod(preprocessing.input_shape))


@dataclass(frozen=True)
class CachePlan:
    """Where a dataset's decoded images are kept, and why.

    ``folder`` is the cache's own folder when ``on_disk``; ``reused`` says a
    complete cache made from the same files was found and read as it was.
    """

    images: int
    bytes: int
    limit: int
    on_disk: bool
    folder: Path | None = None
    reused: bool = False
    shards: int = 0

    def describe(self) -> str:
        """One sentence for the dataset panel, the CLI and the training log."""
        size = f"The decoded images take {format_bytes(self.bytes)}"
        if not self.on_disk:
            return f"{size}, within the memory limit of {format_bytes(self.limit)}: they are kept in memory."
        where = f" in {self.folder}" if self.folder is not None else ""
        how = "reused" if self.reused else "prepared"
        return (f"{size}, more than the memory limit of {format_bytes(self.limit)}: they are read from a cache "
                f"on disk{where} ({how}).")

    def to_json(self) -> dict:
        return {"images": self.images, "bytes": self.bytes, "limit": self.limit, "on_disk": self.on_disk,
                "folder": None if self.folder is None else str(self.folder), "reused": self.reused,
                "shards": self.shards}


def plan_cache(images: int, preprocessing: Preprocessing, settings: CacheSettings | None = None) -> CachePlan:
    """In memory or on disk: the estimate of ``images`` decoded images against the memory limit."""
    settings = settings or CacheSettings()
    size, limit = estimate_bytes(images, preprocessing), settings.limit()
    return CachePlan(images, size, limit, size > limit)
