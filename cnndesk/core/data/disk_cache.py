"""Datasets larger than memory: decoded images in uint8 shards on disk.

:func:`plan_cache` estimates the decoded cache of a dataset (images × H × W ×
channels bytes) and compares it with a memory budget (default: half of the
available memory). When it does not fit, :func:`prepare_on_disk` decodes and
resizes each image once and writes it into shard files of fixed-length
records (a 4-byte file number, then the image's bytes) in a temporary folder,
with a manifest that says what the shards were made from; the folder is
renamed into place only when complete, so a cache left by a crash, a kill or
a full disk is never read. :class:`OnDiskCache` opens a complete cache and
makes its ``tf.data`` pipeline (shard order shuffled, shards interleaved, a
bounded shuffle buffer); :class:`ShardedImages` lets the rest of cnndesk index
its images like the in-memory array. Facts behind this design, and how to
clear the cache: ``docs/large-datasets.md``.

Everything but :meth:`OnDiskCache.dataset` is TensorFlow-free, so a loader
thread can prepare a cache while another thread owns TensorFlow.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
import sys
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import file_locks
from ..errors import Cancelled, DatasetError, UserError
from .augmentation import augmentation_layers
from .images import Preprocessing, decode_or_reason
from .scanning import DatasetScan
from ..tasks import TaskState

#: bump when decoding or resizing changes what a cached image holds: older caches are then rebuilt
PREPARATION_VERSION = 1
#: the manifest format
MANIFEST_VERSION = 1
MANIFEST = "manifest.json"
RECORD_ORDER = "records.npy"  # the file number of each record, in the order written
#: a shard holds about this many bytes (the issue asks for 100–200 MB)
SHARD_BYTES = 128 * 2**20
#: bytes before each image in a record: the file's number in the scan, little-endian uint32
HEADER_BYTES = 4
#: records read as one element: the pipeline filters and unpacks a block in one step, not record by record
BLOCK_RECORDS = 64
#: the file number of a padding record (the last shard is padded to whole blocks)
PADDING = 2**32 - 1
#: the training pipeline's shuffle buffer holds at most this many bytes of records
SHUFFLE_BUFFER_BYTES = 64 * 2**20
#: shards read at the same time in training
INTERLEAVE = 4
#: free space kept beyond the cache's own size before preparing starts
SPARE_DISK_BYTES = 256 * 2**20
#: the environment variable that moves the default cache folder
CACHE_DIR_ENV = "CNNDESK_CACHE_DIR"
#: the status text while a cache is prepared (the CLI tells its progress apart by it)
PREPARING = "Preparing the on-disk cache"
#: the status text while another process prepares the same cache (it starts with ``PREPARING`` too)
WAITING = f"{PREPARING}: another cnndesk process is preparing the same cache; waiting for it…"
_DECODE_CHUNK = 64


# ---------------------------------------------------------------------------
# the budget

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


# ---------------------------------------------------------------------------
# the manifest

def source_fingerprint(scan: DatasetScan) -> str:
    """A hash of every scanned file's path, class, size and modification time, and of the class map.

    A file added, removed, renamed, rewritten or moved to another class
    changes it. Files that cannot be stat'ed count with size -1.
    """
    h = hashlib.sha256()
    h.update(json.dumps(scan.class_names).encode())
    for path, label in scan.files:
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        h.update(f"{path}\0{label}\0{size}\0{mtime}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def cache_key(root: Path, preprocessing: Preprocessing) -> str:
    """The name of a dataset's cache folder: one per dataset folder, image size and colour mode."""
    text = json.dumps([str(Path(root).resolve()), preprocessing.to_json(), PREPARATION_VERSION])
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:20]


def _expected_manifest(scan: DatasetScan, preprocessing: Preprocessing, fingerprint: str) -> dict:
    """What a cache made from ``scan`` must say about itself to be used."""
    return {"manifest_version": MANIFEST_VERSION, "preparation_version": PREPARATION_VERSION,
            "root": str(scan.root), "image_size": list(preprocessing.image_size),
            "color_mode": preprocessing.color_mode, "class_names": list(scan.class_names),
            "files": len(scan.files), "sources": fingerprint}


# ---------------------------------------------------------------------------
# preparing

@dataclass
class Decoded:
    """What preparing (or finding) a cache learnt about the files: which decoded, why others did not."""

    cache: "OnDiskCache"
    ok: np.ndarray  # (files,) bool, in scan order
    failures: list[tuple[int, str]]  # (file number, reason) of each file that could not be decoded, in scan order


def prepare_on_disk(scan: DatasetScan, preprocessing: Preprocessing, plan: CachePlan,
                    settings: CacheSettings | None = None, state: TaskState | None = None,
                    decode: Callable[[Path, Preprocessing], np.ndarray | str] | None = None,
                    workers: int | None = None) -> tuple[Decoded, CachePlan]:
    """Find the complete cache made from exactly these files, or prepare it.

    Args:
        scan: the dataset's files.
        preprocessing: image size and colour mode.
        plan: the estimate that sent the dataset to disk.
        settings: the cache folder. Defaults to ``CacheSettings()``.
        state: progress, and its interruption request cancels (the temporary folder is removed).
        decode: decodes one file into a uint8 array, or returns why it cannot.
            Defaults to the one the in-memory path uses.
        workers: decoding threads. Defaults to the number of CPUs, at most 8.

    Returns:
        the cache with what decoding found, and ``plan`` completed with the cache's folder.

    Raises:
        DatasetError: the cache cannot be written (full disk, no permission), with what to do.
        Cancelled: ``state`` asked to stop.
    """
    settings = settings or CacheSettings()
    if decode is None:
        decode = decode_or_reason
    root = settings.root()
    key = cache_key(scan.root, preprocessing)
    expected = _expected_manifest(scan, preprocessing, source_fingerprint(scan))
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _write_error(e, root, plan) from None
    # one preparer per cache at a time, across processes: the others wait here, then reuse what it made (in a
    # folder where no lock file can be made, nothing can be prepared either: it is only read, unlocked)
    lock = file_locks.ExclusiveLock(root / f"{key}.lock")
    held = lock.acquire(on_wait=lambda: state is not None and state.set_status(WAITING),
                        cancelled=lambda: state is not None and state.is_interruption_requested())
    try:
        found = _find_complete(root, key, expected)
        if found is not None:
            return found.decoded(len(scan.files)), _completed(plan, found, reused=True)
        _remove_abandoned(root, key, locked=held)
        cache = _prepare(root, key, expected, scan, preprocessing, plan, state, decode, workers)
    finally:
        lock.release()
        lock.remove_unused()  # unless another process holds it by now: no lock files left in the cache folder
    return cache.decoded(len(scan.files)), _completed(plan, cache, reused=False)


def _prepare(root: Path, key: str, expected: dict, scan: DatasetScan, preprocessing: Preprocessing,
             plan: CachePlan, state: TaskState | None, decode, workers: int | None) -> "OnDiskCache":
    """Write a new cache of ``key`` into a temporary folder, rename it into place and open it."""
    token = secrets.token_hex(4)
    final = root / f"{key}-{token}"  # a new name for every cache made: a reader of an older one never mixes them
    try:
        _check_room(root, plan)
        temp = root / f"{key}.tmp-{os.getpid()}-{token}"
        temp.mkdir()
    except OSError as e:
        raise _write_error(e, root, plan) from None
    try:
        _write_shards(temp, scan, preprocessing, state, decode, workers)
        _write_manifest(temp, expected, preprocessing)
        temp.rename(final)
    except OSError as e:
        shutil.rmtree(temp, ignore_errors=True)
        raise _write_error(e, root, plan) from None
    except BaseException:  # cancelled, interrupted, a decoder's bug: nothing half-written stays
        shutil.rmtree(temp, ignore_errors=True)
        raise
    cache = OnDiskCache.open(final, expected)
    if cache is None:  # renamed into place but not readable as written: never train on it
        raise DatasetError(f"The on-disk cache in {final} could not be read back after preparing it. "
                           "Check the disk, or raise the memory limit to keep the images in memory.")
    return cache


def _completed(plan: CachePlan, cache: "OnDiskCache", reused: bool) -> CachePlan:
    return CachePlan(plan.images, plan.bytes, plan.limit, True, cache.folder, reused, len(cache.shard_files))


def _check_room(root: Path, plan: CachePlan) -> None:
    """Refuse to start when the disk cannot take the cache (a disk that fills later is caught while writing)."""
    free = shutil.disk_usage(root).free
    if free < plan.bytes + SPARE_DISK_BYTES:
        raise DatasetError(
            f"The on-disk cache of this dataset needs about {format_bytes(plan.bytes)}, but the disk holding "
            f"{root} has only {format_bytes(free)} free. Free some space, choose a cache folder on another disk, "
            "or use a smaller image size.")


def _write_error(e: OSError, root: Path, plan: CachePlan) -> DatasetError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return DatasetError(
            f"The disk holding the dataset cache ({root}) is full: the cache needs about "
            f"{format_bytes(plan.bytes)}. Nothing half-written was kept. Free some space, choose a cache folder on "
            "another disk, or use a smaller image size.")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return DatasetError(f"The dataset cache cannot be written in {root} ({e.strerror}). Choose another "
                            "cache folder.")
    return DatasetError(f"Writing the dataset cache in {root} failed: {e.strerror or e}. Nothing half-written "
                        "was kept.")


def _remove_abandoned(root: Path, key: str, locked: bool = False) -> int:
    """Delete the temporary folders of ``key`` that no process writes (left by a crash or a kill); bytes freed.

    A writer holds the cache's lock (``<key>.lock``) for as long as its
    temporary folder exists, and the system drops the lock when a process
    ends, however it ends. So while the lock is this caller's (``locked``),
    or free to take, every temporary folder of ``key`` is left over; while
    another holds it, they are all left alone. (The process id in a folder's
    name decides nothing: ids are reused, and probing one with a signal ends
    that process on Windows.)
    """
    lock = None
    if not locked:
        lock = file_locks.ExclusiveLock(root / f"{key}.lock")
        if not lock.acquire(wait=False):
            return 0
    try:
        freed = 0
        for entry in root.glob(f"{key}.tmp-*"):
            freed += _folder_bytes(entry)
            shutil.rmtree(entry, ignore_errors=True)
        return freed
    finally:
        if lock is not None:
            lock.release()
            lock.remove_unused()


def _folder_bytes(folder: Path) -> int:
    """The bytes of the files in ``folder`` (0 for what vanishes while it is counted)."""
    total = 0
    for f in folder.rglob("*"):
        try:
            total += f.stat().st_size if f.is_file() else 0
        except OSError:
            pass
    return total


def _write_shards(temp: Path, scan: DatasetScan, preprocessing: Preprocessing, state: TaskState | None,
                  decode, workers: int | None) -> None:
    """Decode every file once, in a shuffled order, into fixed-length records of shards of ~``SHARD_BYTES``.

    The order is shuffled once here so that each shard holds every class in
    proportion: the training pipeline only shuffles within a bounded buffer.
    Each shard holds whole blocks of ``BLOCK_RECORDS`` records; the last is
    padded with records of file number ``PADDING``. Writes ``records.npy``
    (file number of each record, padding left out) and ``failures.json``.
    """
    n = len(scan.files)
    image_bytes = int(np.prod(preprocessing.input_shape))
    per_shard = max(1, SHARD_BYTES // (HEADER_BYTES + image_bytes) // BLOCK_RECORDS) * BLOCK_RECORDS
    order = np.random.default_rng(int(cache_key(scan.root, preprocessing)[:8], 16)).permutation(n)
    written: list[int] = []
    failures: list[tuple[int, str]] = []
    shard = None
    workers = workers or min(8, os.cpu_count() or 2)
    if state is not None:
        state.set_status(f"{PREPARING}: decoding {n:,} images once…")
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for start in range(0, n, _DECODE_CHUNK):
                if state is not None and state.is_interruption_requested():
                    raise Cancelled()
                part = order[start:start + _DECODE_CHUNK]
                for i, result in zip(part, pool.map(lambda k: decode(scan.files[k][0], preprocessing), part)):
                    if isinstance(result, str):
                        failures.append((int(i), result))
                        continue
                    if shard is None or len(written) % per_shard == 0:
                        if shard is not None:
                            shard.close()
                        shard = open(temp / _shard_name(len(written) // per_shard), "wb")
                    shard.write(int(i).to_bytes(HEADER_BYTES, "little"))
                    shard.write(np.ascontiguousarray(result, dtype=np.uint8).tobytes())
                    written.append(int(i))
                if state is not None:
                    state.set_progress_value(100.0 * min(start + _DECODE_CHUNK, n) / max(n, 1))
        if state is not None and state.is_interruption_requested():  # also after the last chunk
            raise Cancelled()
        if shard is not None:
            padding = PADDING.to_bytes(HEADER_BYTES, "little") + bytes(image_bytes)
            shard.write(padding * (-len(written) % BLOCK_RECORDS))
    finally:
        if shard is not None:
            shard.close()
    np.save(temp / RECORD_ORDER, np.asarray(written, dtype=np.int64))
    failures.sort()
    (temp / "failures.json").write_text(json.dumps(failures), encoding="utf-8")


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.bin"


def _write_manifest(temp: Path, expected: dict, preprocessing: Preprocessing) -> None:
    """The manifest, written last and flushed to disk: the cache's completeness marker."""
    order = np.load(temp / RECORD_ORDER)
    shards = sorted(temp.glob("shard-*.bin"))
    record = HEADER_BYTES + int(np.prod(preprocessing.input_shape))
    slots = [s.stat().st_size // record for s in shards]  # records with the padding
    starts = np.cumsum([0, *slots])
    real = [int(min(len(order), starts[k + 1]) - starts[k]) for k in range(len(shards))]
    manifest = dict(expected, record_bytes=record, block_records=BLOCK_RECORDS, records=int(len(order)),
                    shards=[{"name": s.name, "records": r, "slots": n} for s, r, n in zip(shards, real, slots)],
                    complete=True)
    for s in shards:
        _fsync(s)
    path = temp / MANIFEST
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _find_complete(root: Path, key: str, expected: dict) -> "OnDiskCache | None":
    """The complete cache of ``key`` made from the ``expected`` files; outdated and incomplete ones are removed."""
    if not root.is_dir():
        return None
    found = None
    for folder in sorted(root.glob(f"{key}-*")):
        cache = OnDiskCache.open(folder, expected) if found is None else None
        if cache is not None:
            found = cache
        else:
            _discard(folder)
    return found


def _discard(folder: Path) -> bool:
    """Delete a cache folder unless another process reads it (holds its manifest); whether it went.

    The folder is first renamed to a temporary name of this process while no
    other process can start reading it, then deleted: a reader that opens it
    a moment later finds nothing, never a folder half deleted.
    """
    key = folder.name.rsplit("-", 1)[0]
    with file_locks.unused(folder / MANIFEST) as free:
        if not free:
            return False
        doomed = folder.with_name(f"{key}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            folder.rename(doomed)
        except FileNotFoundError:
            return True
        except OSError:  # e.g. Windows, where a file in it is open
            return False
    shutil.rmtree(doomed, ignore_errors=True)
    return True


# ---------------------------------------------------------------------------
# reading

class OnDiskCache:
    """A complete, checked cache folder: its shards, records and manifest.

    Open one with :meth:`open`; it never reads a folder whose manifest is
    missing, incomplete, from another preparation version or made from
    other files, or whose shards do not have the sizes the manifest says.
    """

    def __init__(self, folder: Path, manifest: dict, order: np.ndarray, failures: list[tuple[int, str]]):
        self.folder = Path(folder)
        self.manifest = manifest
        self.order = order  # file number of each record, in record order
        self.failures = failures  # (file number, reason) of each file that could not be decoded
        self.record_bytes = int(manifest["record_bytes"])
        self.image_shape = (*manifest["image_size"], 1 if manifest["color_mode"] == "grayscale" else 3)
        self.shard_files = [str(self.folder / s["name"]) for s in manifest["shards"]]
        self.shard_records = [int(s["records"]) for s in manifest["shards"]]
        self.shard_slots = [int(s["slots"]) for s in manifest["shards"]]  # records with the padding
        self.block = int(manifest["block_records"])
        self.per_shard = max(self.shard_slots) if self.shard_slots else 1

    @classmethod
    def open(cls, folder: Path, expected: dict | None = None) -> "OnDiskCache | None":
        """The cache in ``folder`` if it is complete and (given ``expected``) made from the same files; else None.

        An incomplete or outdated folder is removed, so that it is rebuilt.
        """
        folder = Path(folder)
        if not folder.is_dir():
            return None
        held = file_locks.hold_shared(folder / MANIFEST)  # before reading it: no process deletes it from now on
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            usable = (manifest.get("complete") is True
                      and (expected is None or all(manifest.get(k) == v for k, v in expected.items())))
            if usable:
                order = np.load(folder / RECORD_ORDER)
                failures = [(int(i), str(why)) for i, why in
                            json.loads((folder / "failures.json").read_text(encoding="utf-8"))]
                cache = cls(folder, manifest, order, failures)
                usable = cache._shards_intact() and len(order) == int(manifest["records"])
        except (OSError, ValueError, KeyError, TypeError):
            usable = False
        if not usable:
            if held:
                file_locks.release_shared(folder / MANIFEST)
            _discard(folder)
            return None
        if held:  # until this object is gone; a folder renamed away meanwhile reads as "removed", as before
            weakref.finalize(cache, file_locks.release_shared, folder / MANIFEST)
        return cache

    def _shards_intact(self) -> bool:
        sizes = [os.path.getsize(f) if os.path.exists(f) else -1 for f in self.shard_files]
        return (sizes == [n * self.record_bytes for n in self.shard_slots]
                and all(n % self.block == 0 for n in self.shard_slots))

    def decoded(self, files: int) -> Decoded:
        """Which of the dataset's ``files`` are in the cache, and why the others are not."""
        ok = np.zeros(files, dtype=bool)
        ok[self.order] = True
        return Decoded(self, ok, list(self.failures))

    def images(self, rows_to_files: np.ndarray) -> "ShardedImages":
        """An array-like view of the cached images, row ``r`` being file ``rows_to_files[r]``."""
        return ShardedImages(self, rows_to_files)

    def count(self, use: np.ndarray, shard_index: int = 0, num_shards: int = 1) -> int:
        """How many records of the shards ``shard_index::num_shards`` belong to the files marked in ``use``."""
        shards = range(shard_index, len(self.shard_files), num_shards)
        starts = np.cumsum([0, *self.shard_records])
        return int(sum(use[self.order[starts[k]:starts[k + 1]]].sum() for k in shards))

    def dataset(self, file_labels: np.ndarray, use: np.ndarray, num_classes: int, batch_size: int, *,
                training: bool, seed: int = 0, augment: Sequence[str] = (), repeat: bool = False,
                shard_index: int = 0, num_shards: int = 1):
        """The ``tf.data`` pipeline over the shards ``shard_index::num_shards``, for the files marked in ``use``.

        Batches of (float32 images in 0-255, one-hot labels), as
        :func:`cnndesk.core.data.pipeline.make_tf_dataset` gives. In training the
        shard order is shuffled every pass, ``INTERLEAVE`` shards are read
        together, records pass a shuffle buffer of at most
        ``SHUFFLE_BUFFER_BYTES`` and the augmentation runs; otherwise the
        records come in the order written. Memory does not grow with the
        dataset: only the per-file labels and flags (a few bytes per image)
        are held. Each process of a distributed run passes its own
        ``shard_index`` of ``num_shards`` and reads only those shards;
        :meth:`count` says how many images that is.

        Args:
            file_labels: (files,) class id of each scanned file.
            use: (files,) bool, the files to read (e.g. the training split's).
            num_classes: length of the one-hot labels.
            batch_size: images per batch.
            training: shuffle and augment.
            seed: seed of the shuffles and the augmentation.
            augment: names from ``AUGMENTATIONS``.
            repeat: repeat forever, each pass one epoch of ``ceil(count / batch_size)`` batches.
            shard_index: this process's share of the shards. Defaults to 0.
            num_shards: how many shares the shards are dealt into. Defaults to 1 (all shards).
        """
        import tensorflow as tf

        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in 0..{num_shards - 1}; got {shard_index}")
        files = self.shard_files[shard_index::num_shards]
        selected = self.count(use, shard_index, num_shards)
        with tf.device("/CPU:0"):
            aug = augmentation_layers(augment, seed) if training and augment else None
        labels = tf.constant(np.asarray(file_labels, dtype=np.int32))
        keep = tf.constant(np.asarray(use, dtype=bool))
        image_shape, record, block = self.image_shape, self.record_bytes, self.block

        def file_numbers(raw):  # the little-endian header of each record, as int64 (padding: PADDING)
            head = tf.cast(raw[:, :HEADER_BYTES], tf.int64)
            return head[:, 0] + head[:, 1] * 256 + head[:, 2] * 65536 + head[:, 3] * 16777216

        @tf.autograph.experimental.do_not_convert
        def wanted(blob):  # one block of records in, the wanted ones out as a (k, record) uint8 tensor
            raw = tf.reshape(tf.io.decode_raw(blob, tf.uint8), (block, record))
            number = file_numbers(raw)
            real = number < len(use)
            return tf.boolean_mask(raw, real & tf.gather(keep, tf.where(real, number, 0)))

        @tf.autograph.experimental.do_not_convert
        def prepare(raw):
            x = tf.cast(tf.reshape(raw[:, HEADER_BYTES:], (-1, *image_shape)), tf.float32)
            if aug is not None:
                x = tf.clip_by_value(aug(x, training=True), 0.0, 255.0)
            return x, tf.one_hot(tf.gather(labels, file_numbers(raw)), num_classes)

        ds = tf.data.Dataset.from_tensor_slices(tf.constant(files or [""], dtype=tf.string))
        if not files:
            ds = ds.take(0)
        if training:
            ds = ds.shuffle(max(len(files), 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.interleave(lambda f: tf.data.FixedLengthRecordDataset(f, record * block, buffer_size=2**20),
                           cycle_length=min(INTERLEAVE, max(len(files), 1)) if training else 1, block_length=1)
        ds = ds.map(wanted).unbatch()
        if training:
            buffer = max(batch_size, min(selected, SHUFFLE_BUFFER_BYTES // record))
            ds = ds.shuffle(max(buffer, 1), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if repeat:
            ds = ds.repeat()
        ds = ds.map(prepare, num_parallel_calls=2 if aug is not None else 1)
        ds = ds.prefetch(2)
        options = tf.data.Options()
        options.autotune.enabled = False
        options.deterministic = True
        return ds.with_options(options)

    # -- random access ------------------------------------------------------
    def read(self, files: np.ndarray) -> np.ndarray:
        """The images of the given file numbers, read with one ``pread`` each, in the order given."""
        position = self._positions()
        files = np.asarray(files, dtype=np.int64)
        out = np.empty((len(files), *self.image_shape), dtype=np.uint8)
        size = self.record_bytes - HEADER_BYTES
        pos = position[files]
        if len(pos) and pos.min() < 0:
            raise IndexError("a file that is not in the cache was asked for")
        for shard in np.unique(pos // self.per_shard):
            which = np.flatnonzero(pos // self.per_shard == shard)
            try:
                fd = os.open(self.shard_files[int(shard)], os.O_RDONLY | getattr(os, "O_BINARY", 0))
            except FileNotFoundError:
                raise DatasetError(f"The on-disk dataset cache {self.folder} was removed (its images changed, or "
                                   "it was cleared): read the dataset again.") from None
            try:
                for j in which:
                    offset = int(pos[j] % self.per_shard) * self.record_bytes + HEADER_BYTES
                    out[j] = np.frombuffer(_pread(fd, size, offset), dtype=np.uint8).reshape(self.image_shape)
            finally:
                os.close(fd)
        return out

    def _positions(self) -> np.ndarray:
        """The record number of each file number (-1: not cached)."""
        cached = getattr(self, "_position", None)
        if cached is None:
            files = int(self.manifest["files"])
            cached = np.full(files, -1, dtype=np.int64)
            cached[self.order] = np.arange(len(self.order))
            self._position = cached
        return cached


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        data = os.pread(fd, size, offset)
    else:  # Windows
        os.lseek(fd, offset, os.SEEK_SET)
        data = os.read(fd, size)
    if len(data) != size:
        raise DatasetError("The on-disk dataset cache was changed while it was read: load the dataset again.")
    return data


class ShardedImages:
    """The images of an on-disk cache, indexed like the in-memory (N, H, W, C) uint8 array.

    ``images[i]`` is one image, ``images[rows]`` (rows a sequence or slice)
    an array of them, each read from its shard when asked for: nothing is
    held in memory. The training pipeline does not index it;
    :func:`cnndesk.core.data.pipeline.make_tf_dataset` streams the shards instead.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, cache: OnDiskCache, rows_to_files: np.ndarray, streamed: tuple[int, int] = (0, 1)):
        self.cache = cache
        self.rows_to_files = np.asarray(rows_to_files, dtype=np.int64)
        self.shape = (len(self.rows_to_files), *cache.image_shape)
        self.streamed = streamed  # (shard_index, num_shards) that :meth:`dataset` streams unless told otherwise

    @property
    def shard_count(self) -> int:
        """How many shards the cache has."""
        return len(self.cache.shard_files)

    def own_shards(self, shard_index: int, num_shards: int) -> "ShardedImages":
        """The same images, whose training stream reads only the shards ``shard_index::num_shards``.

        Indexing still reads any row (validation gathers its rows wherever
        they are); only :meth:`dataset`, and so ``make_tf_dataset`` in
        training, opens no other shard. A distributed process trains on this.
        """
        if not 0 <= shard_index < num_shards:
            raise ValueError(f"shard_index must be in 0..{num_shards - 1}; got {shard_index}")
        return ShardedImages(self.cache, self.rows_to_files, (shard_index, num_shards))

    def rows_in_shards(self, index: np.ndarray, shard_index: int, num_shards: int) -> np.ndarray:
        """The rows of ``index`` whose records are in the shards ``shard_index::num_shards``, in index order."""
        rows = np.asarray(index, dtype=np.int64)
        shard = self.cache._positions()[self.rows_to_files[rows]] // self.cache.per_shard
        return rows[shard % num_shards == shard_index]

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            return self.cache.read(self.rows_to_files[[rows]])[0]
        return self.cache.read(self.rows_to_files[rows])

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def dataset(self, labels: np.ndarray, index: np.ndarray | None, num_classes: int, batch_size: int, *,
                training: bool, seed: int = 0, augment: Sequence[str] = (), repeat: bool = False,
                shard_index: int | None = None, num_shards: int | None = None):
        """The streaming pipeline of :meth:`OnDiskCache.dataset` over the rows ``index`` (None: all) of this view.

        For a distributed run, each process passes its ``shard_index`` of ``num_shards``
        (or streams a view made by :meth:`own_shards`, whose shards are the default)
        and reads only its own shards; :meth:`count` says how many of ``index`` they hold.

        Example::

            ds = data.images.dataset(data.labels, data.train_index, data.num_classes, 32, training=True,
                                     repeat=True, shard_index=process_id, num_shards=processes)
        """
        if shard_index is None or num_shards is None:
            shard_index, num_shards = self.streamed
        rows = np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64)
        return self.cache.dataset(self.file_labels(np.asarray(labels)), self.file_mask(rows), num_classes,
                                  batch_size, training=training, seed=seed, augment=augment, repeat=repeat,
                                  shard_index=shard_index, num_shards=num_shards)

    def count(self, index: np.ndarray | None = None, shard_index: int = 0, num_shards: int = 1) -> int:
        """How many of the rows ``index`` (None: all) the shards ``shard_index::num_shards`` hold."""
        rows = np.arange(len(self)) if index is None else np.asarray(index, dtype=np.int64)
        return self.cache.count(self.file_mask(rows), shard_index, num_shards)

    def file_labels(self, labels: np.ndarray) -> np.ndarray:
        """Per scanned file, the class id of its row (-1 for a file that is not a row)."""
        out = np.full(int(self.cache.manifest["files"]), -1, dtype=np.int32)
        out[self.rows_to_files] = labels
        return out

    def file_mask(self, rows: np.ndarray) -> np.ndarray:
        """Per scanned file, whether its row is in ``rows``."""
        out = np.zeros(int(self.cache.manifest["files"]), dtype=bool)
        out[self.rows_to_files[rows]] = True
        return out


def clear_caches(settings: CacheSettings | None = None) -> int:
    """Delete every cache in the cache folder; the bytes freed. A cache being written by a running process
    (which holds its lock), or read by another one, is left alone, and so is the lock file of a cache being
    prepared."""
    root = (settings or CacheSettings()).root()
    if not root.is_dir():
        return 0
    # the temporary folders first, each key's by its lock (which the lock files' tidying below would not keep)
    keys = {entry.name.split(".tmp-")[0] for entry in root.iterdir() if ".tmp-" in entry.name and entry.is_dir()}
    freed = sum(_remove_abandoned(root, key) for key in keys)
    for entry in root.iterdir():
        if entry.suffix == ".lock" and entry.is_file():
            file_locks.ExclusiveLock(entry).remove_unused()
            continue
        if not entry.is_dir() or ".tmp-" in entry.name:  # a temporary folder still here is being written
            continue
        size = _folder_bytes(entry)
        if _discard(entry):
            freed += size
    return freed
