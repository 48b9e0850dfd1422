"""A map of the dataset: every image placed by what the current model sees.

:func:`dataset_map` runs the model once over every image of a dataset, a chunk
at a time (an on-disk cache is never read whole), keeping the penultimate
features and the predicted class (:class:`~.trust.ModelHeads`, the one pass the
trust measurements use). :func:`embed` reduces the features to two dimensions:
PCA to at most :data:`PCA_DIMS`, then t-SNE (scikit-learn, docs/dependencies.md
says why). Images the model sees alike land close together; an image among
another class's images is worth a look.

The :class:`DatasetMap` keeps, for every dataset row, its place, its label, the
model's prediction, its side of the split (training, validation, excluded) and
what may be wrong with it (:data:`COPY`, :data:`LEAK`, :data:`DOUBT`,
:data:`WRONG`). It writes itself as CSV (:meth:`DatasetMap.write_csv`) and as a
PNG picture drawn with Pillow (:func:`write_png`); the app draws it with Qt.

The forward pass needs TensorFlow and the reduction scikit-learn: both are
imported by the functions that use them, so that the app's window can import
this module's names without importing TensorFlow outside the engine thread.
"""

from __future__ import annotations

import csv
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data.copies import DEFAULT_DISTANCE, find_duplicates
from ..data.scanning import printable
from ..errors import Cancelled, UserError
from ..fsutil import open_replacing
from ..tasks import TaskState

TRAINING, VALIDATION, EXCLUDED = 0, 1, 2
#: the side of the split each ``DatasetMap.sides`` value stands for
SIDES = ("training", "validation", "excluded")

#: what may be wrong with an image: bits of ``DatasetMap.flags``
COPY, LEAK, DOUBT, WRONG = 1, 2, 4, 8
#: each flag's name, in the order the legend and the CSV give them
FLAG_NAMES = {COPY: "copy", LEAK: "leak", DOUBT: "likely mislabelled", WRONG: "misclassified"}

#: the features are reduced to this many dimensions by PCA before t-SNE (its usual first step)
PCA_DIMS = 50
#: t-SNE's iterations (scikit-learn's default is 1000; the map settles well before, docs/data-quality.md)
TSNE_ITERATIONS = 500
#: t-SNE's perplexity, lowered for small datasets (it must stay below the number of images)
PERPLEXITY = 30.0
#: t-SNE places at most this many images (a random sample); each of the others goes where its nearest sampled
#: images (in the PCA space) went, weighted by nearness. t-SNE's time grows faster than the images' number
#: (docs/data-quality.md), this keeps a map of 100,000 images within about the time of one of 5,000
TSNE_MOST = 5000
#: how many of the sampled images place one that was not sampled
PLACING_NEIGHBOURS = 5
#: how long t-SNE takes per image, roughly (seconds, measured: docs/data-quality.md); only the progress uses it
TSNE_SECONDS_PER_IMAGE = 0.004
#: the share of the progress bar that the forward pass takes; t-SNE the rest
FEATURES_SHARE = 40.0
#: t-SNE's threads: half the cores. With every core, on a machine already busy, its OpenMP threads wait on each
#: other: 1,000 images took 80 s on 2 busy cores with 2 threads and 7 s with 1 (docs/data-quality.md)
TSNE_THREADS = max(1, (os.cpu_count() or 2) // 2)
#: how often the cancel flag is read while t-SNE runs (seconds)
POLL_SECONDS = 0.05

#: class colours (RGB), the same in the app and in the PNG: distinguishable, and readable on white
CLASS_COLOURS = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]
#: the colour of each highlight's ring (RGB)
FLAG_COLOURS = {COPY: (0, 0, 0), LEAK: (230, 0, 0), DOUBT: (255, 170, 0), WRONG: (120, 0, 160)}


def class_colour(index: int) -> tuple[int, int, int]:
    """The colour of class ``index``: the ten of :data:`CLASS_COLOURS`, then darker and lighter turns of them."""
    base = CLASS_COLOURS[index % len(CLASS_COLOURS)]
    turn = index // len(CLASS_COLOURS)
    if turn == 0:
        return base
    factor = (0.6, 1.35)[(turn - 1) % 2]
    return tuple(min(255, int(c * factor)) for c in base)


@dataclass
class DatasetMap:
    """Every dataset row placed on a plane, with its label, prediction, side and highlights.

    All arrays have one entry per dataset row, in the dataset's order; ``paths`` and ``class_names`` are the
    dataset's, so that the map names its own rows.
    """

    xy: np.ndarray  # (N, 2) float32
    labels: np.ndarray  # (N,) int
    predicted: np.ndarray  # (N,) int: the model's class
    sides: np.ndarray  # (N,) uint8: TRAINING, VALIDATION or EXCLUDED
    flags: np.ndarray  # (N,) uint8: COPY | LEAK | DOUBT | WRONG
    notes: list[str] = field(default_factory=list)  # sentences: how it was made, what was highlighted
    paths: Sequence[str] = ()  # each row's file
    class_names: Sequence[str] = ()  # the names of the labels' classes

    def __len__(self) -> int:
        return len(self.labels)

    def rows_with(self, flag: int) -> np.ndarray:
        """The rows that carry ``flag``."""
        return np.flatnonzero(self.flags & flag)

    def counts(self) -> dict[str, int]:
        """How many images carry each highlight (by ``FLAG_NAMES``)."""
        return {name: int(np.count_nonzero(self.flags & flag)) for flag, name in FLAG_NAMES.items()}

    def summary(self) -> str:
        """One sentence: how many images, and how many carry each highlight."""
        c = self.counts()
        marked = ", ".join(f"{n} {name}" for name, n in c.items() if n) or "nothing highlighted"
        return f"{len(self):,} images: {marked}."

    def describe(self, row: int, paths: Sequence[str], class_names: Sequence[str]) -> str:
        """A line for ``row``: its file name, label, side, prediction when it differs, its highlights."""
        label, predicted = int(self.labels[row]), int(self.predicted[row])
        parts = [os.path.basename(paths[row]), printable(class_names[label]), SIDES[int(self.sides[row])]]
        if predicted != label:
            parts.append(f"predicted {printable(class_names[predicted])}")
        parts += [name for flag, name in FLAG_NAMES.items() if self.flags[row] & flag and flag != WRONG]
        return " · ".join(parts)

    def write_csv(self, path: str | os.PathLike, paths: Sequence[str], class_names: Sequence[str]) -> None:
        """One row per image: file, class, split, x, y, predicted class and a 0/1 column per highlight (the file
        appears whole or not at all, ``fsutil``)."""
        with open_replacing(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["path", "class", "split", "x", "y", "predicted"] +
                         [name.replace(" ", "_") for name in FLAG_NAMES.values()])
            for row in range(len(self)):
                out.writerow([paths[row], class_names[int(self.labels[row])], SIDES[int(self.sides[row])],
                              f"{self.xy[row, 0]:.5g}", f"{self.xy[row, 1]:.5g}",
                              class_names[int(self.predicted[row])]] +
                             [int(bool(self.flags[row] & flag)) for flag in FLAG_NAMES])


def split_sides(data, total: int | None = None) -> np.ndarray:
    """TRAINING, VALIDATION or EXCLUDED for each row of ``data`` (rows in neither split are excluded)."""
    n = len(data.labels) if total is None else total
    sides = np.full(n, EXCLUDED, np.uint8)
    sides[np.asarray(data.train_index, dtype=np.int64)] = TRAINING
    sides[np.asarray(data.val_index, dtype=np.int64)] = VALIDATION
    return sides


def highlights(data, predicted: np.ndarray, distance: int = DEFAULT_DISTANCE,
               doubtful_rows: Sequence[int] = ()) -> np.ndarray:
    """The flags of every row of ``data``: copies and leaks (its duplicate groups at ``distance``, excluded rows
    left out), ``doubtful_rows`` (likely mislabelled, from label scores) and the rows whose ``predicted`` class
    is not their label."""
    labels = np.asarray(data.labels)
    flags = np.zeros(len(labels), np.uint8)
    if getattr(data, "pairs", None) is not None and len(data.pairs):
        left_out = np.flatnonzero(split_sides(data, len(labels)) == EXCLUDED)
        report = find_duplicates(data.images, labels, data.pairs, distance, data.val_index, left_out)
        for group in report.groups:
            members = np.asarray(group.members, dtype=np.int64)
            flags[members] |= COPY
            if group.leak:
                flags[members] |= LEAK
    if len(doubtful_rows):
        flags[np.asarray(list(doubtful_rows), dtype=np.int64)] |= DOUBT
    flags[np.asarray(predicted) != labels] |= WRONG
    return flags


def model_view(heads, data, state: TaskState | None = None, share: float = 100.0):
    """(features (N, dims) float32, predicted (N,) int) of every row of ``data``, ``EVALUATION_CHUNK`` rows at a
    time, from ``heads`` (a :class:`~.trust.ModelHeads`); progress up to ``share`` percent.

    Raises:
        Cancelled: ``state`` asked to stop (between chunks).
    """
    from ..model.inspection import EVALUATION_CHUNK

    rows = np.arange(len(data.labels))
    images = data.rows(rows)
    features, predicted = [], []
    for start in range(0, len(rows), EVALUATION_CHUNK):
        if state is not None and state.is_interruption_requested():
            raise Cancelled()
        signals, z = heads(images[start:start + EVALUATION_CHUNK])
        features.append(signals[0].astype(np.float32, copy=False))  # the penultimate features
        predicted.append(z.argmax(axis=1))
        if state is not None:
            state.set_progress_value(share * min(start + EVALUATION_CHUNK, len(rows)) / max(len(rows), 1))
    if not features:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    return np.concatenate(features), np.concatenate(predicted).astype(np.int64)


def _pca(features: np.ndarray, dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(dims, random_state=seed).fit_transform(features).astype(np.float32)


def embed(features: np.ndarray, state: TaskState | None = None, seed: int = 0, start: float = 0.0) -> np.ndarray:
    """``features`` (N, dims) placed on a plane: (N, 2) float32, by PCA then t-SNE.

    Fewer than 5 images (too few for t-SNE) or features that vary in fewer than
    two directions are placed by PCA alone; beyond :data:`TSNE_MOST` images, t-SNE
    places a sample and the others go beside their nearest sampled images. t-SNE runs in a thread of its own
    while this one reads ``state``'s cancel flag every :data:`POLL_SECONDS` and
    reports progress from ``start`` to 100 % (estimated from the time it takes).
    Cancelled, this returns at once; the t-SNE run finishes in its thread (its
    time bounded by the sample's size, docs/data-quality.md) and its answer is dropped.

    Raises:
        Cancelled: ``state`` asked to stop.
    """
    x = np.asarray(features, dtype=np.float32)
    n = len(x)
    if n == 0:
        return np.zeros((0, 2), np.float32)
    x = x.reshape(n, -1)
    varying = x[:, x.std(axis=0) > 1e-12] if n > 1 else x[:, :0]
    if varying.shape[1] == 0:  # every image looks the same to the model: one point, spread on a circle
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        return np.stack([np.cos(angle), np.sin(angle)], axis=1).astype(np.float32) * (n > 1)
    dims = min(PCA_DIMS, n, varying.shape[1])
    if n < 5 or dims < 2:
        reduced = _pca(varying, min(2, dims), seed)
        return np.pad(reduced, ((0, 0), (0, 2 - reduced.shape[1]))).astype(np.float32)
    reduced = _pca(varying, dims, seed)
    sample = np.arange(n) if n <= TSNE_MOST else np.sort(np.random.default_rng(seed).choice(n, TSNE_MOST, False))
    answer: dict = {}

    def run() -> None:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits

        try:
            with threadpool_limits(TSNE_THREADS, user_api="openmp"):
                tsne = TSNE(2, perplexity=min(PERPLEXITY, (len(sample) - 1) / 3), init="pca", learning_rate="auto",
                            max_iter=TSNE_ITERATIONS, random_state=seed)
                placed = tsne.fit_transform(reduced[sample]).astype(np.float32)
            answer["xy"] = placed if len(sample) == n else _place_the_rest(reduced, sample, placed)
        except Exception as e:  # handed to the waiting thread, raised there
            answer["error"] = e

    if state is not None:
        state.set_status(f"Placing {n:,} images (t-SNE" + (f" of {len(sample):,}, the others beside their nearest)…"
                                                          if len(sample) < n else ")…"))
    worker = threading.Thread(target=run, name="cnndesk-tsne", daemon=True)
    began = time.monotonic()
    expected = max(1.0, len(sample) * TSNE_SECONDS_PER_IMAGE)
    worker.start()
    while worker.is_alive():
        worker.join(POLL_SECONDS)
        if state is not None:
            if state.is_interruption_requested():
                raise Cancelled()
            done = 1.0 - math.exp(-(time.monotonic() - began) / expected)
            state.set_progress_value(start + (99.0 - start) * done)
    if "error" in answer:
        raise answer["error"]
    return answer["xy"]


def _place_the_rest(reduced: np.ndarray, sample: np.ndarray, placed: np.ndarray) -> np.ndarray:
    """Every row of ``reduced`` placed: the ``sample`` rows where t-SNE put them (``placed``), each other row at
    the mean place of its ``PLACING_NEIGHBOURS`` nearest sampled rows, weighted by one over the distance."""
    from sklearn.neighbors import NearestNeighbors

    xy = np.empty((len(reduced), 2), np.float32)
    xy[sample] = placed
    rest = np.setdiff1d(np.arange(len(reduced)), sample)
    distance, nearest = NearestNeighbors(n_neighbors=PLACING_NEIGHBOURS).fit(reduced[sample]).kneighbors(
        reduced[rest])
    weight = 1.0 / (distance + 1e-6)
    xy[rest] = (placed[nearest] * weight[..., None]).sum(axis=1) / weight.sum(axis=1, keepdims=True)
    return xy


def dataset_map(model, data, distance: int = DEFAULT_DISTANCE, doubtful_rows: Sequence[int] = (),
                state: TaskState | None = None, seed: int = 0) -> DatasetMap:
    """The map of ``data`` (a ``LoadedDataset``) as ``model`` sees it.

    Args:
        model: a Keras classifier that takes ``data``'s images.
        data: the dataset, its split and exclusions (rows in neither split are excluded, and still placed).
        distance: the hash distance of its duplicate groups (the Duplicates tab's).
        doubtful_rows: the rows label scores found likely mislabelled (none when not scored).
        state: progress and cancel.
        seed: PCA's and t-SNE's.

    Raises:
        Cancelled: ``state`` asked to stop.
        UserError: the model's classes are not the dataset's.
    """
    from .trust import ModelHeads

    heads = ModelHeads(model, data.preprocessing)
    if heads.classes != max(len(data.class_names), 2):
        raise UserError(f"The model has {heads.classes} classes and the dataset {len(data.class_names)}; "
                        "map the dataset the model was trained on.")
    began = time.perf_counter()
    if state is not None:
        state.set_status(f"Reading what the model sees in {len(data.labels):,} images…")
    features, predicted = model_view(heads, data, state, FEATURES_SHARE)
    seen = time.perf_counter()
    xy = embed(features, state, seed, FEATURES_SHARE)
    placed = time.perf_counter()
    flags = highlights(data, predicted, distance, doubtful_rows)
    notes = [f"{len(xy):,} images placed by the model's penultimate features ({features.shape[1]} numbers each), "
             f"reduced by PCA and t-SNE: {seen - began:.1f} s to read them, {placed - seen:.1f} s to place them."]
    if not len(doubtful_rows):
        notes.append("Likely mislabelled images are marked once they are scored (Evaluation tab).")
    if state is not None:
        state.set_progress_value(100.0)
    return DatasetMap(xy, np.asarray(data.labels).astype(np.int64), predicted, split_sides(data), flags, notes,
                      paths=data.paths, class_names=list(data.class_names))


def write_png(dataset_map: DatasetMap, class_names: Sequence[str], path: str | os.PathLike,
              size: int = 1000) -> None:
    """Draw the map as a PNG, ``size`` pixels square plus a legend: a dot per image in its class's colour,
    filled for training, hollow for validation, grey for excluded; highlights ringed in their colour."""
    from PIL import Image, ImageDraw

    legend_w = 260
    image = Image.new("RGB", (size + legend_w, size), "white")
    draw = ImageDraw.Draw(image)
    xy = _fit(dataset_map.xy, size, margin=24)  # room for a dot and its rings at the edge
    r = 3 if len(dataset_map) > 2000 else 5
    for row in range(len(dataset_map)):
        x, y = xy[row]
        colour = class_colour(int(dataset_map.labels[row]))
        side = int(dataset_map.sides[row])
        box = (x - r, y - r, x + r, y + r)
        if side == TRAINING:
            draw.ellipse(box, fill=colour)
        elif side == VALIDATION:
            draw.ellipse(box, outline=colour, width=2)
        else:
            draw.ellipse(box, outline=(170, 170, 170), width=1)
    for row in np.flatnonzero(dataset_map.flags).tolist():  # the rings over every dot
        x, y = xy[row]
        for ring, flag in enumerate(FLAG_NAMES, 1):
            if dataset_map.flags[row] & flag:
                g = r + 2 * ring
                draw.ellipse((x - g, y - g, x + g, y + g), outline=FLAG_COLOURS[flag], width=1)
    lines = [(class_colour(i), printable(n)) for i, n in enumerate(class_names)]
    y = 14
    for colour, text in lines:
        draw.ellipse((size + 10, y, size + 20, y + 10), fill=colour)
        draw.text((size + 28, y - 1), text, fill=(0, 0, 0))
        y += 18
    y += 8
    for text, style in (("training (filled)", "fill"), ("validation (hollow)", "hollow")):
        if style == "fill":
            draw.ellipse((size + 10, y, size + 20, y + 10), fill=(90, 90, 90))
        else:
            draw.ellipse((size + 10, y, size + 20, y + 10), outline=(90, 90, 90), width=2)
        draw.text((size + 28, y - 1), text, fill=(0, 0, 0))
        y += 18
    for flag, name in FLAG_NAMES.items():
        draw.ellipse((size + 8, y - 2, size + 22, y + 12), outline=FLAG_COLOURS[flag], width=2)
        draw.text((size + 28, y - 1), f"{name} ({int(np.count_nonzero(dataset_map.flags & flag))})", fill=(0, 0, 0))
        y += 18
    with open_replacing(path, "wb") as f:
        image.save(f, "PNG")


def _fit(xy: np.ndarray, size: int, margin: int) -> np.ndarray:
    """``xy`` scaled into a ``size`` square with ``margin`` pixels on every side, centred, y pointing up."""
    xy = np.asarray(xy, dtype=np.float64)
    if not len(xy):
        return xy
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(high - low, 1e-9)
    scale = (size - 2 * margin) / float(span.max())
    out = (xy - low) * scale + margin + (size - 2 * margin - span * scale) / 2
    out[:, 1] = size - out[:, 1]
    return out
