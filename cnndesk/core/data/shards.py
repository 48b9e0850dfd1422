"""Reading a complete on-disk cache: fixed-length records in shard files, and their ``tf.data`` pipeline.

A cache folder holds shard files of fixed-length records (a 4-byte file
number, then the image's bytes, written in blocks of ``BLOCK_RECORDS``), the
order the records were written in, and a manifest that says what the shards
were made from (:mod:`.disk_cache` writes them). :class:`OnDiskCache` opens a
complete cache and makes its ``tf.data`` pipeline (shard order shuffled,
shards interleaved, a bounded shuffle buffer); :class:`ShardedImages` lets the
rest of cnndesk index its images like the in-memory array.

Everything but :meth:`OnDiskCache.dataset` is TensorFlow-free.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import file_locks
from ..errors import DatasetError
from .batches import augmentation_layers, finish_batches

#: bump when decoding or resizing changes what a cached image holds: older caches are then rebuilt
PREPARATION_VERSION = 1


#: the manifest format
MANIFEST_VERSION = 1


MANIFEST = "manifest.json"


RECORD_ORDER = "records.npy"  # the file number of each record, in the order written


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


def discard(folder: Path) -> bool:
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



@dataclass
class Decoded:
    """What preparing (or finding) a cache learnt about the files: which decoded, why others did not."""

    cache: "OnDiskCache"
    ok: np.ndarray  # (files,) bool, in scan order
    failures: list[tuple[int, str]]  # (file number, reason) of each file that could not be decoded, in scan order


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
            discard(folder)
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
        return finish_batches(ds, batch_size, prepare, repeat, augmented=aug is not None)

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
