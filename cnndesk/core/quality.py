"""What may be wrong with a dataset: duplicates, train/validation leaks, likely mislabelled images.

**Duplicates.** Every image gets a 64-bit perceptual hash (:func:`perceptual_hashes`),
computed from the uint8 cache :func:`.dataset.load_dataset` already holds, so no
file is read again. Two images whose hashes differ in at most ``distance`` bits
are near duplicates when their small colour thumbnails agree too (:func:`confirm_pairs`);
images linked by such pairs form a :class:`DuplicateGroup`.
A group is *exact* when all its images have the same pixels, *cross-class* when
its images carry different labels, and a *leak* when the split put some of them
in training and some in validation. :func:`leak_free_split` keeps every group on
one side. How the hash works and what it costs: ``docs/data-quality.md``.

**Likely mislabelled images.** An image whose out-of-sample predicted
probability of its own label is low is a candidate (confident learning):
validation images are scored by the current model, which never trained on them;
training images only by models retrained without them
(:func:`out_of_fold_probabilities`, k folds). :func:`rank_label_doubts` says for
each candidate which of the two scored it.

**Fixes.** :func:`move_to_class` moves a file into another class folder (never
over an existing file, nothing deleted) and :class:`ChangeLog` lists the moves and
exclusions so that each can be undone.

Everything here but :func:`out_of_fold_probabilities` is plain NumPy.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import UserError

#: the side of the grey thumbnail an image is hashed from, and the bits of its hash
THUMB_SIDE, HASH_BITS = 32, 64
#: the default largest hash distance (bits of 64) at which two images count as near duplicates
DEFAULT_DISTANCE = 8
#: a pair of near duplicates must also agree in colour: 8x8 colour thumbnails at most this far apart (of 255)
COLOUR_SIDE, COLOUR_TOLERANCE = 8, 8.0
#: pairs are found once up to this distance, so that any threshold up to it needs no new search
MAX_DISTANCE = 12
#: images are hashed from every k-th pixel, so that their shorter side keeps at least this many
SAMPLED_SIDE = 64
#: pixel values hashed per step (bounds the float32 copy: 32 MiB)
HASH_CHUNK_VALUES = 1 << 23
#: hash comparisons per step of the pair search
PAIR_BLOCK = 1 << 22

VALIDATION, KFOLD = "validation", "k-fold"
#: how a doubt was scored: a few words for a table column, and a sentence
SCORED_BY = {VALIDATION: "validation, current model", KFOLD: "training, k-fold retrain"}
SCORED_BY_SENTENCE = {VALIDATION: "A validation image, scored by the current model (which never trained on it).",
                      KFOLD: "A training image, scored by a retrain that left it out (k-fold)."}


# ---------------------------------------------------------------------------
# hashes and pairs

def _edges(length: int, parts: int) -> np.ndarray:
    """Start offsets of ``parts`` nearly equal bins over ``length`` (every bin non-empty when length >= parts)."""
    return (np.arange(parts) * length) // parts


def _sampled(images: np.ndarray, keep: int = SAMPLED_SIDE) -> np.ndarray:
    """Every k-th row and column of (N, H, W, C) images, so that the shorter side keeps at least ``keep``.

    The thumbnails average blocks of pixels; a sample of each block averages
    nearly the same, and large images then cost little more than small ones.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W, C); got shape {images.shape}")
    k = max(1, min(images.shape[1], images.shape[2]) // keep)
    return images[:, ::k, ::k] if k > 1 else images


def _thumbnail_matrix(length: int, side: int) -> np.ndarray:
    """(side, length): averages ``length`` pixels into ``side`` equal-area blocks (repeats them when fewer)."""
    m = np.zeros((side, length))
    if length >= side:
        edges = np.append(_edges(length, side), length)
        for i in range(side):
            m[i, edges[i]:edges[i + 1]] = 1.0 / (edges[i + 1] - edges[i])
    else:
        m[np.arange(side), np.arange(side) * length // side] = 1.0
    return m


def _dct_matrix(side: int) -> np.ndarray:
    """The (unscaled) DCT-II basis: row u holds cos(pi (2x + 1) u / 2 side)."""
    k = np.arange(side)
    return np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * side))


def _low_frequencies(side: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` lowest 2-D frequencies (u, v) but (0, 0), lowest u + v first."""
    uv = sorted(((u, v) for u in range(side) for v in range(side) if (u, v) != (0, 0)),
                key=lambda p: (p[0] + p[1], p[0]))[:count]
    return np.array([p[0] for p in uv]), np.array([p[1] for p in uv])


def perceptual_hashes(images: np.ndarray, chunk_values: int = HASH_CHUNK_VALUES) -> np.ndarray:
    """A 64-bit perceptual hash of each image: (N, H, W, C) uint8 -> (N,) uint64.

    Each image is seen as a 32x32 grey thumbnail (equal-area block means of all
    channels); bit k says whether its k-th lowest spatial frequency (a DCT
    coefficient, the mean left out) is above the median of the 64. The low
    frequencies are the layout of the picture, which resizing, re-encoding and
    pixel noise leave alone; why this and not a difference hash is in
    ``docs/data-quality.md``.

    Thumbnail and DCT are linear, so both fold into two small matrices: one
    product over each image's columns (with the channels), one over its rows,
    of the low frequencies only. No thumbnail is made, and the pixels are read
    once, ``chunk_values`` of them at a time as float32; of an image larger
    than 127 px a side only every k-th row and column (``_sampled``).
    """
    images = _sampled(np.asarray(images))
    n, h, w, c = images.shape
    u, v = _low_frequencies(THUMB_SIDE, HASH_BITS)
    k = int(max(u.max(), v.max())) + 1  # the frequencies needed per axis
    basis = _dct_matrix(THUMB_SIDE)[:k]
    rows = (basis @ _thumbnail_matrix(h, THUMB_SIDE)).astype(np.float32)  # (k, H)
    cols = np.repeat((basis @ _thumbnail_matrix(w, THUMB_SIDE)).T / c, c, axis=0).astype(np.float32)  # (W*C, k)
    out = np.empty(n, dtype=np.uint64)
    step = max(1, chunk_values // max(h * w * c, 1))
    for start in range(0, n, step):
        part = images[start:start + step].reshape(-1, w * c).astype(np.float32)  # (m * H, W * C)
        m = len(part) // h
        by_column = (part @ cols).reshape(m, h, k).transpose(1, 0, 2).reshape(h, m * k)  # one product each way
        coefficients = (rows @ by_column).reshape(k, m, k).transpose(1, 0, 2)[:, u, v]  # (m, 64)
        bits = coefficients > np.median(coefficients, axis=1, keepdims=True)
        out[start:start + m] = np.ascontiguousarray(np.packbits(bits, axis=1)).view(">u8")[:, 0]
    return out


def hamming(a, b) -> np.ndarray:
    """Bits in which the hashes ``a`` and ``b`` differ (broadcast)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def similar_pairs(hashes: np.ndarray, max_distance: int = MAX_DISTANCE, thumbnails: np.ndarray | None = None,
                  tolerance: float = COLOUR_TOLERANCE) -> np.ndarray:
    """Every pair of images whose hashes differ in at most ``max_distance`` bits.

    Returns an (M, 3) int32 array of rows ``(i, j, distance)`` with ``i < j``.
    All pairs are compared, a block of rows at a time: ``docs/data-quality.md``
    has what that costs.

    With ``thumbnails`` (:func:`colour_thumbnails` of every image) only the
    pairs whose thumbnails agree too are kept (:func:`confirm_pairs`), block by
    block. Pictures of a few simple shapes on plain backgrounds hash alike by
    the million: 0.35 million candidate pairs among 10,000 such images, 35 million
    expected among 100,000 (they grow with the square of the count), which
    would take gigabytes if held before confirming them.
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    found = []
    step = max(1, PAIR_BLOCK // max(n, 1))
    for start in range(0, n, step):
        block = hashes[start:start + step]
        d = hamming(block[:, None], hashes[None, start:])  # each row against itself and the rows after it
        i, j = np.nonzero(d <= max_distance)
        keep = j > i
        i, j = i[keep], j[keep]
        pairs = np.stack([i + start, j + start, d[i, j]], axis=1).astype(np.int32)
        if thumbnails is not None:
            pairs = pairs[_thumbnails_agree(thumbnails, pairs, tolerance)]
        found.append(pairs)
    return np.concatenate(found) if found else np.zeros((0, 3), np.int32)


def _thumbnails_agree(thumbnails: np.ndarray, pairs: np.ndarray, tolerance: float) -> np.ndarray:
    """Whether each pair's two thumbnails differ by at most ``tolerance`` on average; ``PAIR_BLOCK`` values a step."""
    agree = np.empty(len(pairs), bool)
    step = max(1, PAIR_BLOCK // max(thumbnails[0].size if len(thumbnails) else 1, 1))
    for start in range(0, len(pairs), step):
        part = pairs[start:start + step]
        agree[start:start + step] = np.abs(thumbnails[part[:, 0]] - thumbnails[part[:, 1]]).mean(axis=(1, 2)) <= tolerance
    return agree


def colour_thumbnails(images: np.ndarray, side: int = COLOUR_SIDE) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, side, side * C) float32 block means, colour kept (channels last)."""
    images = _sampled(np.asarray(images), 4 * side)
    n, h, w, c = images.shape
    rows = _thumbnail_matrix(h, side).astype(np.float32)
    # (W * C, side * C): averages the columns of each channel on its own
    cols = np.kron(_thumbnail_matrix(w, side).T, np.eye(c)).astype(np.float32)
    out = np.empty((n, side, side * c), np.float32)
    step = max(1, HASH_CHUNK_VALUES // max(h * w * c, 1))
    for start in range(0, n, step):
        part = images[start:start + step].reshape(-1, w * c).astype(np.float32)
        out[start:start + len(part) // h] = rows @ (part @ cols).reshape(-1, h, side * c)
    return out


def confirm_pairs(images: np.ndarray, pairs: np.ndarray, tolerance: float = COLOUR_TOLERANCE) -> np.ndarray:
    """The ``pairs`` whose 8x8 colour thumbnails differ by at most ``tolerance`` (of 255) on average.

    The hash sees grey layout only: two different pictures of one simple shape on
    a plain background can hash alike. A copy keeps its colours; such look-alikes
    rarely do (``docs/data-quality.md`` has the figures). ``images`` may be an
    on-disk cache: only the paired rows are read, a chunk at a time.
    """
    pairs = np.asarray(pairs).reshape(-1, 3)
    if not len(pairs):
        return pairs
    rows = np.unique(pairs[:, :2])
    thumbs = chunked_thumbnails(images, rows)
    where = np.searchsorted(rows, pairs[:, :2])
    return pairs[_thumbnails_agree(thumbs, np.concatenate([where, pairs[:, 2:]], axis=1), tolerance)]


def image_chunks(images, rows: np.ndarray | None = None, chunk_bytes: int = 64 << 20):
    """The images ``rows`` (None: all) as consecutive (n, H, W, C) arrays of about ``chunk_bytes`` of pixels each.

    ``images`` is the in-memory array or an on-disk ``ShardedImages``; either
    way no more than a chunk of them is copied at once.
    """
    rows = np.arange(len(images)) if rows is None else np.asarray(rows)
    step = max(1, chunk_bytes // (int(np.prod(images.shape[1:])) or 1))
    for start in range(0, len(rows), step):
        yield np.asarray(images[rows[start:start + step]])


def chunked_thumbnails(images, rows: np.ndarray | None = None) -> np.ndarray:
    """:func:`colour_thumbnails` of the images ``rows`` (None: all), read a chunk at a time (:func:`image_chunks`)."""
    parts = [colour_thumbnails(chunk) for chunk in image_chunks(images, rows)]
    return np.concatenate(parts) if parts else np.zeros((0, COLOUR_SIDE, COLOUR_SIDE * images.shape[-1]), np.float32)


# ---------------------------------------------------------------------------
# groups

@dataclass(frozen=True)
class DuplicateGroup:
    """Images that are (near) copies of each other: rows of the dataset, smallest first."""

    members: tuple[int, ...]
    exact: bool  # all have the same pixels (at the size the dataset was read)
    cross_class: bool  # they carry more than one label
    leak: bool  # some are in the training split, some in the validation split
    distance: int  # the largest hash distance of a pair that links the group

    @property
    def kind(self) -> str:
        """"exact" or "near"; "cross-class" before either when the labels differ."""
        base = "exact" if self.exact else "near"
        return f"cross-class {base}" if self.cross_class else base


@dataclass
class DuplicateReport:
    """The duplicate groups of a dataset at one hash distance."""

    groups: list[DuplicateGroup]
    distance: int

    def counts(self) -> dict[str, int]:
        """How many groups of each kind, and how many images are in a group beside its first."""
        g = self.groups
        return {"groups": len(g), "exact": sum(x.exact for x in g), "near": sum(not x.exact for x in g),
                "within_class": sum(not x.cross_class for x in g), "cross_class": sum(x.cross_class for x in g),
                "leaks": sum(x.leak for x in g), "extra_copies": sum(len(x.members) - 1 for x in g)}

    def summary(self) -> str:
        """One sentence for the dataset panel and the CLI."""
        c = self.counts()
        if not c["groups"]:
            return f"No duplicates found (hash distance {self.distance} or less)."
        return (f"{c['groups']} duplicate group(s) at hash distance {self.distance} or less: {c['exact']} exact, "
                f"{c['near']} near; {c['cross_class']} across classes; {c['leaks']} across the train/validation "
                f"split; {c['extra_copies']} extra copies in all.")

    def to_json(self, paths: Sequence[str], labels: np.ndarray, class_names: Sequence[str],
                val_rows: np.ndarray | None = None) -> dict:
        in_val = set(np.asarray(val_rows).tolist()) if val_rows is not None else set()
        return {"distance": self.distance, "counts": self.counts(), "groups": [
            {"kind": g.kind, "exact": g.exact, "cross_class": g.cross_class, "leak": g.leak, "distance": g.distance,
             "images": [{"path": paths[i], "class": class_names[int(labels[i])],
                         "split": "validation" if i in in_val else "training"} for i in g.members]}
            for g in self.groups]}


def _components(n: int, pairs: np.ndarray) -> list[list[int]]:
    """Connected components of size > 1 of the graph on ``n`` rows with edges ``pairs[:, :2]``."""
    parent = list(range(n))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs[:, :2].tolist():
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in sorted({int(x) for x in pairs[:, :2].ravel()}):
        groups.setdefault(root(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def find_duplicates(images: np.ndarray, labels: np.ndarray, pairs: np.ndarray, distance: int = DEFAULT_DISTANCE,
                    val_rows: np.ndarray | None = None, left_out: Sequence[int] = ()) -> DuplicateReport:
    """Group the images linked by ``pairs`` (from :func:`similar_pairs`) at ``distance`` bits or less.

    Args:
        images: the uint8 cache (to tell exact copies from near ones).
        labels: the class of each row.
        pairs: ``(i, j, distance)`` rows.
        distance: the largest hash distance that links two images.
        val_rows: the validation split, to mark groups that straddle it.
        left_out: rows to leave out (excluded images).
    """
    pairs = np.asarray(pairs).reshape(-1, 3)
    pairs = pairs[pairs[:, 2] <= distance]
    if len(left_out):
        gone = np.zeros(len(labels), bool)
        gone[np.asarray(list(left_out), dtype=np.int64)] = True
        pairs = pairs[~gone[pairs[:, 0]] & ~gone[pairs[:, 1]]]
    in_val = np.zeros(len(labels), bool)
    if val_rows is not None and len(val_rows):
        in_val[np.asarray(val_rows)] = True
    far = {}
    for i, j, d in pairs.tolist():
        far[i] = max(far.get(i, 0), d)
    groups = []
    for members in _components(len(labels), pairs):
        first = images[members[0]]
        sides = in_val[members]
        groups.append(DuplicateGroup(
            members=tuple(members),
            exact=all(np.array_equal(first, images[m]) for m in members[1:]),
            cross_class=len({int(labels[m]) for m in members}) > 1,
            leak=bool(sides.any() and not sides.all()),
            distance=max(far.get(m, 0) for m in members)))
    groups.sort(key=lambda g: (not g.cross_class, not g.leak, g.distance, g.members))
    return DuplicateReport(groups, distance)


# ---------------------------------------------------------------------------
# the split

@dataclass(frozen=True)
class Split:
    """A train/validation split that keeps every duplicate group on one side."""

    train: np.ndarray
    val: np.ndarray
    kept_together: int  # groups a plain stratified split would have put on both sides
    excluded: int  # rows in neither split (excluded by the user)

    def summary(self) -> str:
        """What the split did about duplicates and exclusions, for the split line of the panel and the CLI."""
        parts = []
        if self.kept_together:
            parts.append(f"{self.kept_together} near-duplicate group(s) kept on one side, so validation sees no "
                         "near-copy of a training image")
        else:
            parts.append("no near-duplicate group spans training and validation")
        if self.excluded:
            parts.append(f"{self.excluded} image(s) excluded")
        return "; ".join(parts)


def leak_free_split(labels: np.ndarray, groups: Sequence[DuplicateGroup], val_split: float, seed: int,
                    excluded_rows: Sequence[int] = ()) -> Split:
    """A stratified split (:func:`.dataset.split_indices`) of the rows not excluded, with every group on one side.

    A group that the stratified split put on both sides goes whole to the side
    that held most of it; on a tie, to validation while that keeps validation
    within the share the stratified split gave it, else to training (so copies
    under two labels, each pair split evenly, do not all end in training and
    leave validation empty). The per-class shares move by a few images at most.
    Without groups and exclusions the split is exactly ``split_indices(labels,
    val_split, seed)``.
    """
    from .dataset import split_indices

    labels = np.asarray(labels)
    keep = np.ones(len(labels), bool)
    if len(excluded_rows):
        keep[np.asarray(list(excluded_rows), dtype=np.int64)] = False
    rows = np.flatnonzero(keep)
    train_pos, val_pos = split_indices(labels[rows], val_split, seed) if len(rows) else ([], [])
    side = np.full(len(labels), -1, np.int8)  # -1 excluded, 0 train, 1 validation
    side[rows[np.asarray(train_pos, dtype=np.int64)]] = 0
    side[rows[np.asarray(val_pos, dtype=np.int64)]] = 1
    moved = 0
    val_share = len(val_pos)
    for g in groups:
        members = np.array([m for m in g.members if side[m] >= 0], dtype=np.int64)
        if len(members) < 2:
            continue
        n_val = int((side[members] == 1).sum())
        if 0 < n_val < len(members):
            if 2 * n_val == len(members):  # a tie: validation takes it while it stays within its share
                to_val = int((side == 1).sum()) - n_val + len(members) <= val_share
            else:
                to_val = n_val > len(members) - n_val
            side[members] = 1 if to_val else 0
            moved += 1
    return Split(np.flatnonzero(side == 0), np.flatnonzero(side == 1), moved, int((side < 0).sum()))


# ---------------------------------------------------------------------------
# likely mislabelled images

@dataclass(frozen=True)
class LabelDoubt:
    """An image whose label the out-of-sample prediction disagrees with."""

    row: int  # of the dataset
    given: int  # its label (folder)
    predicted: int
    given_probability: float  # out-of-sample probability of ``given``: the lower, the likelier a wrong label
    confidence: float  # probability of ``predicted``
    scored_by: str  # VALIDATION or KFOLD


@dataclass
class LabelScores:
    """Out-of-sample class probabilities of some rows of a dataset, and which way each row was scored."""

    rows: np.ndarray  # (M,) dataset rows
    probabilities: np.ndarray  # (M, classes)
    scored_by: np.ndarray  # (M,) VALIDATION or KFOLD
    notes: list[str] = field(default_factory=list)  # sentences: what was scored how, what was not

    def doubts(self, labels: np.ndarray, limit: int | None = None) -> list["LabelDoubt"]:
        return rank_label_doubts(self.probabilities, self.rows, labels, self.scored_by, limit)

    def merged(self, other: "LabelScores") -> "LabelScores":
        return LabelScores(np.concatenate([self.rows, other.rows]),
                           np.concatenate([self.probabilities, other.probabilities]),
                           np.concatenate([self.scored_by, other.scored_by]), self.notes + other.notes)


def rank_label_doubts(probabilities: np.ndarray, rows: np.ndarray, labels: np.ndarray, scored_by,
                      limit: int | None = None) -> list[LabelDoubt]:
    """The rows whose predicted class differs from their label, least probable label first.

    Args:
        probabilities: (M, classes) out-of-sample probabilities of ``rows``.
        rows: the dataset rows they belong to.
        labels: the label of every dataset row.
        scored_by: one string for all, or one per row.
        limit: keep this many at most.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    rows = np.asarray(rows, dtype=np.int64)
    given = np.asarray(labels)[rows]
    how = np.broadcast_to(np.asarray(scored_by, dtype=object), rows.shape)
    if not len(rows):
        return []
    predicted = probabilities.argmax(axis=1)
    p_given = probabilities[np.arange(len(rows)), given]
    order = [k for k in np.argsort(p_given, kind="stable") if predicted[k] != given[k]]
    doubts = [LabelDoubt(int(rows[k]), int(given[k]), int(predicted[k]), float(p_given[k]),
                         float(probabilities[k, predicted[k]]), str(how[k])) for k in order]
    return doubts[:limit] if limit is not None else doubts


def stratified_folds(rows: np.ndarray, labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """``rows`` dealt into ``k`` folds, each class spread evenly over them (seeded)."""
    if k < 2:
        raise UserError("Scoring training images needs at least 2 folds.")
    rng = np.random.default_rng(seed)
    rows = np.asarray(rows, dtype=np.int64)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(np.asarray(labels)[rows]):
        members = rows[np.asarray(labels)[rows] == c]
        rng.shuffle(members)
        for n, r in enumerate(members.tolist()):
            folds[(n + offset) % k].append(r)
        offset += len(members)
    return [np.sort(np.array(f, dtype=np.int64)) for f in folds]


class ProgressNote:
    """The latest progress of a long job, written by the job's thread and read by whoever shows it.

    The reader polls (the job answers only when done); one float and one string,
    each replaced whole, so no lock is needed.
    """

    def __init__(self):
        self.percent = 0.0
        self.text = ""

    def report(self, percent: float, text: str) -> None:
        self.percent, self.text = float(percent), text


def out_of_fold_probabilities(data, layers, settings, folds: int = 3, epochs: int | None = None, state=None,
                              on_progress: Callable[[float, str], None] | None = None) -> LabelScores:
    """Score every training image with a model trained on the other folds only (needs TensorFlow).

    Each of ``folds`` retrains uses the given layers and settings (``epochs``
    epochs when given, else the settings' own), without validation or early
    stopping, and predicts the fold it did not see. Fewer epochs score worse:
    on the planted set of ``benchmarks/data_quality.py`` retrains of 3 epochs
    got 61 % of their held-out images right against 83 % with 8, and ranked
    fewer wrong labels first (``docs/data-quality.md``).

    Raises:
        Cancelled: ``state`` asked to stop (between batches).
    """
    from .errors import Cancelled
    from .inspection import predict_in_chunks
    from .training import TrainingListener, train

    parts = stratified_folds(data.train_index, data.labels, folds, settings.seed)
    retrain = dataclasses.replace(settings, epochs=max(1, epochs or settings.epochs), restore_best=False)
    probs = np.zeros((len(data.labels), data.num_classes), np.float32)

    class Progress(TrainingListener):
        fold = 0

        def on_batch(self, report):
            if on_progress is not None:
                done = (report.epoch - 1 + report.batch / report.steps) / report.epochs
                on_progress(100.0 * (self.fold + done) / folds, f"Retrain {self.fold + 1} of {folds}")

    listener = Progress()
    for f, held_out in enumerate(parts):
        listener.fold = f
        rest = np.sort(np.concatenate([p for g, p in enumerate(parts) if g != f]))
        fold_data = dataclasses.replace(data, train_index=rest, val_index=np.zeros(0, np.int64))
        result = train(fold_data, layers, retrain, listener, state)
        if result.cancelled:
            raise Cancelled()
        # the held-out fold a chunk at a time (an on-disk one is never read whole, nor all of it as float32)
        probs[held_out] = predict_in_chunks(lambda x: _predict(result.model, x, settings.batch_size),
                                            data.rows(held_out), data.num_classes)
    rows = np.sort(np.concatenate(parts))
    note = (f"{len(rows)} training images scored by {folds} retrains ({retrain.epochs} epoch(s) each) "
            "that did not see them")
    return LabelScores(rows, probs[rows], np.full(len(rows), KFOLD, dtype=object), [note])


def _predict(model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities of uint8 images from a cnndesk model (softmax output, pixel scaling inside)."""
    out = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------------------
# fixes

def move_to_class(path: str | os.PathLike, root: str | os.PathLike, class_name: str) -> Path:
    """Move the image file ``path`` into the class folder ``root/class_name``; returns where it went.

    The folder is made when missing. An existing file is never replaced: the
    moved file then gets ``-1``, ``-2``… before its suffix. Nothing is deleted.

    Raises:
        UserError: the file is gone, or the move failed (with the reason).
    """
    return _place_in_class(path, root, class_name, os.rename, "move")


def copy_to_class(path: str | os.PathLike, root: str | os.PathLike, class_name: str) -> Path:
    """Copy the image file ``path`` into the folder ``root/class_name``, as :func:`move_to_class` moves it."""
    import shutil

    return _place_in_class(path, root, class_name, shutil.copy2, "copy")


def _place_in_class(path, root, class_name: str, place, verb: str) -> Path:
    src = Path(path)
    if not src.is_file():
        raise UserError(f"{src} is no longer there; read the dataset again.")
    folder = Path(root) / class_name
    target = folder / src.name
    n = 0
    while target.exists() or target.is_symlink():
        n += 1
        target = folder / f"{src.stem}-{n}{src.suffix}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        place(src, target)
    except OSError as e:
        raise UserError(f"Could not {verb} {src.name} to {folder}: {e.strerror or e}.") from e
    return target


def move_back(moved_to: str | os.PathLike, original: str | os.PathLike) -> None:
    """Undo :func:`move_to_class`: put the file back where it was (never over another file).

    Raises:
        UserError: the moved file is gone, or its old place is taken.
    """
    src, dst = Path(moved_to), Path(original)
    if not src.is_file():
        raise UserError(f"{src} is no longer there, so it cannot be moved back.")
    if dst.exists():
        raise UserError(f"{dst} exists again, so {src.name} cannot be moved back over it.")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.rename(src, dst)
    except OSError as e:
        raise UserError(f"Could not move {src.name} back to {dst.parent}: {e.strerror or e}.") from e


def remove_copy(copy: str | os.PathLike) -> None:
    """Undo :func:`copy_to_class`: delete the copy (already gone: nothing to do).

    Raises:
        UserError: it could not be deleted.
    """
    try:
        Path(copy).unlink(missing_ok=True)
    except OSError as e:
        raise UserError(f"Could not delete the copy {Path(copy).name}: {e.strerror or e}.") from e


EXCLUDE, MOVE, COPY = "exclude", "move", "copy"


@dataclass(frozen=True)
class Change:
    """One fix: an exclusion (kept in the project), a move on disk (from ``path`` to ``moved_to``) or a copy
    (of ``path``, to ``moved_to``)."""

    kind: str  # EXCLUDE, MOVE or COPY
    path: str
    moved_to: str | None = None
    from_class: str = ""
    to_class: str = ""

    def describe(self) -> str:
        name = Path(self.path).name
        if self.kind == MOVE:
            return f"Moved {name} from {self.from_class} to {self.to_class}"
        if self.kind == COPY:
            return f"Copied {name} to {self.to_class}"
        return f"Excluded {name} ({self.from_class})"


class ChangeLog:
    """The fixes made in this session, oldest first; any of them can be undone."""

    def __init__(self):
        self.changes: list[Change] = []

    def add(self, change: Change) -> None:
        self.changes.append(change)

    def undo(self, change: Change, excluded: set[str]) -> set[str]:
        """Revert ``change`` (a move goes back on disk, a copy is deleted) and forget it; returns the exclusions
        after it.

        Raises:
            UserError: a move that cannot be reverted (the log keeps it).
        """
        if change.kind == MOVE:
            move_back(change.moved_to, change.path)
        elif change.kind == COPY:
            remove_copy(change.moved_to)
        self.changes.remove(change)
        return set(excluded) - {change.path} if change.kind == EXCLUDE else set(excluded)
