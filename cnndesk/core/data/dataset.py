"""Decode a scanned dataset once, split it, feed ``fit``.

:func:`load_dataset` turns a class-folder tree (see :mod:`.scanning`) into a
uint8 cache of images (decoded by :mod:`.images`) and a stratified split;
:func:`make_tf_dataset` is the pipeline from that cache to ``fit``.
Everything here but the tf.data section is TensorFlow-free, so a GUI worker
thread may load while another thread owns TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .color_hint import SAMPLE_SIZE, spread
from ..errors import Cancelled, DatasetError
from .images import Preprocessing, decode_or_reason, upright_size
from .cache_plan import CachePlan, CacheSettings, plan_cache
from .disk_cache import prepare_on_disk
from .copies import (
    DEFAULT_DISTANCE, find_duplicates, image_chunks, perceptual_hashes, picture_thumbnails, similar_pairs,
    Thumbnails,
)
from .split import leak_free_split, split_indices
from .scanning import SKIPPED_SHOWN, DatasetScan, SkippedFile, printable, scan_dataset
from ..tasks import TaskState


#: a class with fewer than this share of the largest class's images is "imbalanced"
IMBALANCE_RATIO = 0.5


#: more than this share of the image files (of the whole dataset, or of one class) unreadable: refused
MOST_UNREADABLE = 0.5


#: more than this share of the image files unreadable: a warning
SOME_UNREADABLE = 0.1


#: a class with fewer usable images than this: a warning (its validation accuracy means little)
FEW_IMAGES = 10


@dataclass(frozen=True)
class DatasetConfig:
    """Settings of the dataset panel.

    Args:
        preprocessing: image size and colour mode.
        val_split: share of each class kept for validation. Defaults to 0.2.
        seed: seed of the split and the shuffle. Defaults to 1337.
        augment: names from ``AUGMENTATIONS`` applied in training only.
        class_weights: weight the loss by inverse class frequency.
        duplicate_distance: the largest perceptual-hash distance (bits of 64) at
            which two images are compared as pictures to find copies; the split
            keeps copies on one side (see :mod:`.copies`). Defaults to 10.
    """

    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    val_split: float = 0.2
    seed: int = 1337
    augment: tuple[str, ...] = ()
    class_weights: bool = False
    duplicate_distance: int = DEFAULT_DISTANCE

    def to_json(self) -> dict:
        d = asdict(self)
        d["preprocessing"] = self.preprocessing.to_json()
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "DatasetConfig":
        return cls(
            preprocessing=Preprocessing.from_json(d["preprocessing"]),
            val_split=float(d.get("val_split", 0.2)),
            seed=int(d.get("seed", 1337)),
            augment=tuple(d.get("augment", ())),
            class_weights=bool(d.get("class_weights", False)),
            duplicate_distance=int(d.get("duplicate_distance", DEFAULT_DISTANCE)),
        )


@dataclass(eq=False)
class LoadedDataset:
    """Decoded images of a dataset: a uint8 cache and the split.

    ``images`` has shape (N, H, W, C), dtype uint8; ``labels`` (N,) int32.
    When the decoded images exceed the memory limit, ``images`` is a
    ``shards.ShardedImages`` that reads them from disk when indexed.

    Two datasets are equal only when they are the same object: comparing their
    fields would compare every pixel (an array the size of the image cache).
    """

    root: Path
    class_names: list[str]
    preprocessing: Preprocessing
    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[SkippedFile]
    train_index: np.ndarray
    val_index: np.ndarray
    notes: list[str] = field(default_factory=list)  # warnings found while reading, e.g. unreadable files
    hashes: np.ndarray | None = None  # (N,) uint64 perceptual hashes of the images (see .quality)
    pairs: np.ndarray | None = None  # (M, 3) int32 (i, j, hash distance): copies (pictures compared), up to MAX_DISTANCE
    split_note: str = ""  # what the split did about duplicates and exclusions (quality.Split.summary)
    storage: "CachePlan | None" = None  # in memory or on disk, and why (``disk_cache``)
    image_sizes: tuple = ()  # (height, width) of a sample of the image files as stored, upright (``sample_sizes``)

    @property
    def on_disk(self) -> bool:
        """Whether ``images`` is read from an on-disk cache (a ``ShardedImages``) rather than held in memory."""
        return self.storage is not None and self.storage.on_disk

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> dict[str, int]:
        c = Counter(self.labels.tolist())
        return {name: c.get(i, 0) for i, name in enumerate(self.class_names)}

    def split_counts(self) -> dict[str, int]:
        """Each class's images in training and validation: what will be trained on, without the excluded."""
        used = np.concatenate([self.train_index, self.val_index]).astype(np.intp)
        c = np.bincount(self.labels[used], minlength=self.num_classes)
        return {name: int(c[i]) for i, name in enumerate(self.class_names)}

    def upscaling_note(self) -> str:
        """A sentence when the images (those sampled) are smaller than the size they are read at, so they are
        scaled up ("Images are 25×25 px; they are scaled up to 64×64 for training."); "" otherwise."""
        if not self.image_sizes:
            return ""
        h, w = self.preprocessing.image_size
        most = (max(s[0] for s in self.image_sizes), max(s[1] for s in self.image_sizes))
        if most[0] > h or most[1] > w or most == (h, w):
            return ""
        size = f"{'' if len(set(self.image_sizes)) == 1 else 'up to '}{most[0]}×{most[1]}"
        return f"Images are {size} px; they are scaled up to {h}×{w} for training."

    def imbalance_warning(self) -> str | None:
        """A sentence if the smallest class is much smaller than the largest (in the images trained on)."""
        counts = self.split_counts()
        most = max(counts.values())
        small = [n for n, c in counts.items() if c < IMBALANCE_RATIO * most]
        if not small:
            return None
        names = ", ".join(f"{printable(n)} ({counts[n]})" for n in small)
        return (f"Classes are imbalanced: {names} have less than half the images of the "
                f"largest class ({most}). Consider adding images or turning on class weights.")

    def warnings(self) -> list[str]:
        """Every warning about this dataset, each a sentence: what was found while
        reading (unreadable files, links not followed), imbalance, classes with few images. The images
        are counted as trained on: the excluded ones are not."""
        out = list(self.notes)
        counts = self.split_counts()
        few = [f"{printable(n)} ({c})" for n, c in counts.items() if c < FEW_IMAGES]
        if few:
            out.append(f"Few images: {', '.join(few)} {'has' if len(few) == 1 else 'have'} fewer than {FEW_IMAGES} "
                       "usable images, so their validation accuracy means little. Add images.")
        imbalance = self.imbalance_warning()
        if imbalance:
            out.append(imbalance)
        return out

    def class_weight(self) -> dict[int, float]:
        """Inverse-frequency weights over the training split, mean 1."""
        c = Counter(self.labels[self.train_index].tolist())
        n = len(self.train_index)
        k = self.num_classes
        return {i: n / (k * max(c.get(i, 0), 1)) for i in range(k)}

    def subset(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.images[index], self.labels[index]

    def rows(self, index: np.ndarray) -> "ImageRows":
        """The images ``index`` as a lazy sequence: nothing is read until a slice of it is asked for.

        For evaluating a split chunk by chunk, so that an on-disk dataset's
        validation split is never held in memory whole.
        """
        return ImageRows(self.images, index)

    def validation_size(self) -> int:
        """How many images a run validates on; the stopping rules weigh their evidence by it.

        A distributed process's share (``distributed.ProcessShare``) holds part of them and counts them all.
        """
        return len(self.val_index)


class ImageRows:
    """Some rows of a dataset's images (an array or an on-disk ``ShardedImages``), read when sliced.

    ``rows[a:b]`` is the (n, H, W, C) uint8 array of those images; ``len(rows)``
    their number. See :meth:`LoadedDataset.rows`.
    """

    def __init__(self, images, index: np.ndarray):
        self.images, self.index = images, np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("ImageRows takes a slice: read the rows chunk by chunk")
        return np.asarray(self.images[self.index[key]])


def load_dataset(
    root: str | os.PathLike,
    config: DatasetConfig | None = None,
    state: TaskState | None = None,
    workers: int | None = None,
    follow_outside_links: bool = False,
    cache: "CacheSettings | None" = None,
) -> LoadedDataset:
    """Scan ``root``, decode every image once, and split it.

    This is the one function that turns a folder into training data; the
    pipeline that feeds ``fit`` is :func:`make_tf_dataset` on its result.

    Args:
        root: the dataset folder.
        config: image size, colour mode, split and seed. Defaults to ``DatasetConfig()``.
        state: receives progress; its interruption request cancels the load.
        workers: decoding threads. Defaults to the number of CPUs (Pillow
            releases the GIL while decoding).
        follow_outside_links: also read class folders and files that are
            links out of ``root``. Defaults to False.
        cache: the memory limit for the decoded images and where an on-disk
            cache goes when they exceed it (``disk_cache``). Defaults to half
            of the available memory and the user's cache folder.

    Raises:
        DatasetError: the folder cannot be used, with what to do about it.
        Cancelled: ``state`` asked to stop.
    """
    config = config or DatasetConfig()
    scan = scan_dataset(root, state, follow_outside_links)
    pre = config.preprocessing
    

    plan = plan_cache(len(scan.files), pre, cache)
    if plan.on_disk:
        decoded, plan = prepare_on_disk(scan, pre, plan, cache, state, workers=workers)
        ok = decoded.ok
        skipped = list(scan.skipped) + [SkippedFile(str(scan.files[i][0]), why) for i, why in decoded.failures]
        images = decoded.cache.images(np.flatnonzero(ok))
    else:
        images, ok, skipped = _decode_in_memory(scan, pre, state, workers)
    labels_all = np.array([lab for _, lab in scan.files], dtype=np.int32)
    idx = np.flatnonzero(ok)
    labels = labels_all[idx]
    paths = [str(scan.files[i][0]) for i in idx]

    counts = Counter(labels.tolist())
    empty = [name for i, name in enumerate(scan.class_names) if counts.get(i, 0) == 0]
    usable = len(scan.class_names) - len(empty)
    if usable < 2:
        raise DatasetError(
            f"{scan.root} has {usable} class with usable images; at least 2 are needed. "
            "Add a subfolder of images for each class you want to recognise.")
    if empty:
        raise DatasetError(
            f"The class folder(s) {', '.join(repr(e) for e in empty)} have no usable image. "
            "Add images to them or remove them from the dataset folder.")
    notes = _check_readable(scan, labels_all, ok, skipped)
    if config.val_split > 0:
        single = [printable(name) for i, name in enumerate(scan.class_names) if counts.get(i, 0) < 2]
        if single:
            raise DatasetError(
                f"The class{'es' if len(single) > 1 else ''} {', '.join(single)} "
                f"{'have' if len(single) > 1 else 'has'} only 1 usable image: too few to split, since at least 2 "
                "are needed to keep one for validation. Add images, or set the validation split to 0.")

    data = LoadedDataset(scan.root, scan.class_names, pre, images, labels, paths, skipped, np.zeros(0, np.int64),
                         np.zeros(0, np.int64), notes, storage=plan, image_sizes=sample_sizes(paths))
    if state is not None:
        state.set_status("Looking for duplicates…")
    data.hashes, thumbnails = _hashes_and_thumbnails(images)
    data.pairs = similar_pairs(data.hashes, thumbnails=thumbnails)  # pictures compared block by block: bounded memory
    return resplit(data, config)


def resplit(data: LoadedDataset, config: DatasetConfig, excluded_rows: Sequence[int] = ()) -> LoadedDataset:
    """``data`` with a new split: stratified, every near-duplicate group on one side, excluded rows in neither.

    The groups are those at ``config.duplicate_distance`` (:mod:`.copies`); a
    dataset read without hashes gets the plain stratified split.
    """
    if data.pairs is None:
        train, val = split_indices(data.labels, config.val_split, config.seed)
        return dataclasses.replace(data, train_index=train, val_index=val, split_note="")
    groups = find_duplicates(data.images, data.labels, data.pairs, config.duplicate_distance).groups
    split = leak_free_split(data.labels, groups, config.val_split, config.seed, excluded_rows)
    return dataclasses.replace(data, train_index=split.train, val_index=split.val,
                               split_note=split.summary(data.class_names))


def excluded_rows(data: LoadedDataset, excluded) -> list[int]:
    """The rows of ``data`` whose files are among ``excluded`` (file paths, the project's exclusions)."""
    return [i for i, p in enumerate(data.paths) if p in excluded] if excluded else []


def split_excluding(data: LoadedDataset, config: DatasetConfig, excluded) -> LoadedDataset:
    """``data`` split again with ``config``'s split settings, the files ``excluded`` (paths) in neither side:
    what a change of the split, the hash distance or the exclusions makes of the dataset read."""
    return resplit(data, config, excluded_rows(data, excluded))


def sample_sizes(paths: Sequence[str], size: int = SAMPLE_SIZE) -> tuple[tuple[int, int], ...]:
    """The upright (height, width) of up to ``size`` of the image files ``paths`` (spread over the list, so every
    class is reached), read from their headers; files that cannot be opened are left out."""
    return tuple(s for s in map(upright_size, spread(paths, size)) if s is not None)


def _hashes_and_thumbnails(images) -> tuple[np.ndarray, Thumbnails]:
    """``copies.perceptual_hashes`` and ``copies.picture_thumbnails`` of the decoded images, in one pass over them.

    The images (in memory, or an on-disk cache) are read a bounded chunk at a time (``copies.image_chunks``).
    """
    hashes, thumbnails = [np.zeros(0, np.uint64)], []
    for chunk in image_chunks(images):
        hashes.append(perceptual_hashes(chunk))
        thumbnails.append(picture_thumbnails(chunk))
    return np.concatenate(hashes), Thumbnails.concatenate(thumbnails, images.shape[-1])


def _decode_in_memory(scan: DatasetScan, pre: Preprocessing, state: TaskState | None,
                      workers: int | None) -> tuple[np.ndarray, np.ndarray, list[SkippedFile]]:
    """Decode every scanned file into one uint8 array: (the decoded images, which files decoded, skipped files)."""
    n = len(scan.files)
    images = np.empty((n,) + pre.input_shape, dtype=np.uint8)
    ok = np.zeros(n, dtype=bool)
    skipped = list(scan.skipped)
    workers = workers or min(8, os.cpu_count() or 2)
    if state is not None:
        state.set_status(f"Reading {n} images…")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunk = 64
        for start in range(0, n, chunk):
            if state is not None and state.is_interruption_requested():
                raise Cancelled()
            part = scan.files[start:start + chunk]
            for i, result in enumerate(pool.map(lambda f: decode_or_reason(f[0], pre), part), start):
                if isinstance(result, str):
                    skipped.append(SkippedFile(str(scan.files[i][0]), result))
                else:
                    images[i] = result
                    ok[i] = True
            if state is not None:
                state.set_progress_value(100.0 * min(start + chunk, n) / max(n, 1))
    idx = np.flatnonzero(ok)
    return (images[idx] if len(idx) < n else images), ok, skipped


def _check_readable(scan: DatasetScan, labels_all: np.ndarray, ok: np.ndarray,
                    skipped: Sequence[SkippedFile]) -> list[str]:
    """Refuse a dataset most of whose image files could not be read; warnings for fewer losses and links.

    Files of other types do not count: only image files that failed to decode.

    Raises:
        DatasetError: more than ``MOST_UNREADABLE`` of all image files, or of one
            class's, could not be read.
    """
    total, failed = len(ok), int((~ok).sum())
    first = next((s for s in skipped if s.path == str(scan.files[int(np.argmin(ok))][0])), None) if failed else None
    example = f" (the first: {printable(first.path)}: {first.reason})" if first else ""
    if total and failed > MOST_UNREADABLE * total:
        raise DatasetError(
            f"{failed:,} of the {total:,} image files in {printable(str(scan.root))} ({failed / total:.1%}) could not "
            f"be read{example}; only {total - failed:,} are left. Training on them would report a meaningless "
            "accuracy: fix or remove the unreadable files (was the folder being written or copied?).")
    for i, name in enumerate(scan.class_names):
        mine = labels_all == i
        n, bad = int(mine.sum()), int((mine & ~ok).sum())
        if n and bad > MOST_UNREADABLE * n:
            raise DatasetError(
                f"{bad:,} of the {n:,} image files of the class {printable(name)} ({bad / n:.1%}) could not be read; "
                f"only {n - bad:,} are left. Fix or remove the unreadable files.")
    notes = []
    if total and failed > SOME_UNREADABLE * total:
        notes.append(f"{failed:,} of the {total:,} image files ({failed / total:.1%}) could not be read{example}; "
                     "see the skipped files.")
    if scan.not_followed:
        shown = ", ".join(printable(s.path) for s in scan.not_followed[:SKIPPED_SHOWN])
        more = f" and {len(scan.not_followed) - SKIPPED_SHOWN:,} more" if len(scan.not_followed) > SKIPPED_SHOWN else ""
        notes.append(f"{len(scan.not_followed):,} link(s) out of the dataset folder were not followed: {shown}{more}. "
                     "Copy what they lead to into the dataset folder, or allow links out of it "
                     "(cnndesk-cli train --follow-outside-links).")
    return notes
