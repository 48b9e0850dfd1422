"""Datasets larger than memory: decoded images in uint8 shards on disk.

When a dataset does not fit in memory (:mod:`.cache_plan`), :func:`prepare_on_disk` decodes and
resizes each image once and writes it into shard files of fixed-length
records (a 4-byte file number, then the image's bytes) in a temporary folder,
with a manifest that says what the shards were made from; the folder is
renamed into place only when complete, so a cache left by a crash, a kill or
a full disk is never read. :mod:`.shards` reads a complete cache;
:func:`clear_caches` deletes those no process uses. Facts behind this design, and how to
clear the cache: ``docs/large-datasets.md``.

Nothing here imports TensorFlow, so a loader thread can prepare a cache while
another thread owns TensorFlow.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from .. import file_locks, fsutil
from ..errors import Cancelled, DatasetError
from .cache_plan import CachePlan, CacheSettings, format_bytes
from .images import Preprocessing, decode_or_reason
from .shards import (
    BLOCK_RECORDS, HEADER_BYTES, MANIFEST, MANIFEST_VERSION, PADDING, PREPARATION_VERSION, RECORD_ORDER, Decoded,
    OnDiskCache, discard,
)
from .scanning import DatasetScan
from ..tasks import TaskState

#: bump when decoding or resizing changes what a cached image holds: older caches are then rebuilt
#: a shard holds about this many bytes (the issue asks for 100–200 MB)
SHARD_BYTES = 128 * 2**20


#: free space kept beyond the cache's own size before preparing starts
SPARE_DISK_BYTES = 256 * 2**20


#: the status text while a cache is prepared (the CLI tells its progress apart by it)
PREPARING = "Preparing the on-disk cache"


#: the status text while another process prepares the same cache (it starts with ``PREPARING`` too)
WAITING = f"{PREPARING}: another cnndesk process is preparing the same cache; waiting for it…"


_DECODE_CHUNK = 64


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
    lock = file_locks.exclusive(root / f"{key}.lock")
    held = file_locks.take(lock, on_wait=lambda: state is not None and state.set_status(WAITING),
                           cancelled=lambda: state is not None and state.is_interruption_requested())
    try:
        found = _find_complete(root, key, expected)
        if found is not None:
            return found.decoded(len(scan.files)), _completed(plan, found, reused=True)
        _remove_abandoned(root, key, locked=held)
        cache = _prepare(root, key, expected, scan, preprocessing, plan, state, decode, workers)
    finally:
        if held:
            lock.release()
        file_locks.remove_unused(lock.lock_file)  # unless another holds it by now: no lock files left behind
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
        fsutil.fsync_folder(root)  # the complete cache's name, on disk
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
        lock = file_locks.exclusive(root / f"{key}.lock")
        if not file_locks.take(lock, wait=False):
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
            file_locks.remove_unused(lock.lock_file)


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
    (file number of each record, padding left out) and ``failures.json``;
    everything it writes is flushed to disk before it returns.
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
    for path in temp.glob("shard-*.bin"):
        fsutil.fsync_file(path)
    with fsutil.replacing(temp / RECORD_ORDER) as tmp:
        np.save(tmp, np.asarray(written, dtype=np.int64))
    failures.sort()
    fsutil.write_text(temp / "failures.json", json.dumps(failures))


def _shard_name(k: int) -> str:
    return f"shard-{k:05d}.bin"


def _write_manifest(temp: Path, expected: dict, preprocessing: Preprocessing) -> None:
    """The manifest, the cache's completeness marker: written last (what it vouches for is on disk already),
    flushed to disk with the folder's entries."""
    order = np.load(temp / RECORD_ORDER)
    shards = sorted(temp.glob("shard-*.bin"))
    record = HEADER_BYTES + int(np.prod(preprocessing.input_shape))
    slots = [s.stat().st_size // record for s in shards]  # records with the padding
    starts = np.cumsum([0, *slots])
    real = [int(min(len(order), starts[k + 1]) - starts[k]) for k in range(len(shards))]
    manifest = dict(expected, record_bytes=record, block_records=BLOCK_RECORDS, records=int(len(order)),
                    shards=[{"name": s.name, "records": r, "slots": n} for s, r, n in zip(shards, real, slots)],
                    complete=True)
    fsutil.write_text(temp / MANIFEST, json.dumps(manifest))


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
            discard(folder)
    return found


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
            file_locks.remove_unused(entry)
            continue
        if not entry.is_dir() or ".tmp-" in entry.name:  # a temporary folder still here is being written
            continue
        size = _folder_bytes(entry)
        if discard(entry):
            freed += size
    return freed
