"""What finding duplicates costs beside reading a dataset, and how well the finders find planted faults.

1. Overhead. A planted dataset (``tests/planted_data.py``: the sample's shapes plus exact,
   resized-JPEG and cross-class copies and swapped labels; 256 px files) is read with
   ``load_dataset`` at each image size; per round the script times the whole read, then the hashes
   and thumbnails (one pass, as ``load_dataset`` makes them) and the pair search with the pictures
   compared (``similar_pairs``) on the cache it made, and reports the medians over the rounds and
   their share of the read without them. Rounds alternate the sizes in one process, so a machine
   shared with other work slows all alike.
2. The pair search alone (the index of hash bands, no pictures) on random hashes of 10,000 and
   40,000 images. ``benchmarks/copies_scale.py`` measures the whole search on up to 100,000 images.
3. Duplicate finder: pair precision and recall against the planted copies at each hash distance.
4. Mislabel finder (unless ``--no-train``): trains the seed preset on the planted dataset on
   the CPU, scores the validation images with it and the training images with k
   retrains (``out_of_fold_probabilities``), and gives precision and recall of the first
   candidates against the swapped files (a cross-class copy named counts as a hit: one of its
   two files carries a wrong label).

Usage:
    .venv/bin/python benchmarks/data_quality.py [--per-class 150] [--rounds 3] [--no-train]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]  # the planted dataset is the tests' own

import numpy as np  # noqa: E402


def overhead(root: Path, source_size: int, sizes: list[int], rounds: int) -> None:
    from cnndesk.core.data.dataset import _hashes_and_thumbnails, DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.data.copies import similar_pairs

    times: dict[int, list[tuple[float, float, float]]] = {s: [] for s in sizes}
    n = 0
    for _ in range(rounds):
        for size in sizes:
            t = time.perf_counter()
            data = load_dataset(root, DatasetConfig(preprocessing=Preprocessing((size, size))))
            read = time.perf_counter() - t
            t = time.perf_counter()
            hashes, thumbnails = _hashes_and_thumbnails(data.images)
            hashing = time.perf_counter() - t
            t = time.perf_counter()
            similar_pairs(hashes, thumbnails=thumbnails)
            pairs = time.perf_counter() - t
            times[size].append((read, hashing, pairs))
            n = len(data.labels)
    print(f"1. Reading {n} images ({source_size} px PNG, a few JPEG, on disk), medians of {rounds} alternating "
          "rounds:")
    print(f"   {'size':>7} {'read s':>8} {'hash ms':>8} {'pairs ms':>9} {'hash %':>7} {'hash+pairs %':>13}  "
          "(hash: hashes and thumbnails)")
    for size in sizes:
        read, hashing, pairs = np.median(np.array(times[size]), axis=0)
        base = read - hashing - pairs  # the read as it was before hashing
        print(f"   {size:>4} px {read:8.2f} {hashing * 1000:8.1f} {pairs * 1000:9.1f} {100 * hashing / base:6.1f}% "
              f"{100 * (hashing + pairs) / base:12.1f}%")


def pair_search() -> None:
    from cnndesk.core.data.copies import similar_pairs

    print("2. Pair search alone (index of hash bands, no pictures compared), random hashes:")
    rng = np.random.default_rng(0)
    for n in (10_000, 40_000):
        hashes = rng.integers(0, 2**63, n, dtype=np.uint64)
        t = time.perf_counter()
        similar_pairs(hashes)
        print(f"   {n:>6} images: {time.perf_counter() - t:6.2f} s")


def duplicate_precision(root: Path, planted) -> None:
    from cnndesk.core.data.dataset import load_dataset
    from cnndesk.core.data.copies import DEFAULT_DISTANCE, find_duplicates, MAX_DISTANCE
    from planted_data import duplicate_scores

    data = load_dataset(root)
    print(f"3. Duplicate finder on {len(data.labels)} images, {len(planted.duplicate_pairs())} planted pairs "
          f"({len(planted.exact)} exact, {len(planted.near)} resized JPEG, {len(planted.cross_class)} cross-class):")
    print(f"   {'distance':>8} {'groups':>7} {'precision':>10} {'recall':>7}")
    for d in range(0, MAX_DISTANCE + 1, 2):
        report = find_duplicates(data.images, data.labels, data.pairs, d)
        p, r = duplicate_scores(report, data.paths, planted)
        mark = "  (default)" if d == DEFAULT_DISTANCE else ""
        print(f"   {d:>8} {len(report.groups):>7} {p:10.2f} {r:7.2f}{mark}")


def mislabel_precision(root: Path, planted, folds: int, epochs: int, retrain_epochs: int) -> None:
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.data.dataset import load_dataset
    from cnndesk.core.model.inspection import Inspector
    from cnndesk.core.quality.label_scores import LabelScores, out_of_fold_probabilities, VALIDATION
    from cnndesk.core.training.fitting import train
    from planted_data import label_scores

    data = load_dataset(root)
    settings = TrainingSettings(epochs=epochs, batch_size=16, learning_rate=0.003)
    t = time.perf_counter()
    result = train(data, preset("seed"), settings)
    trained = time.perf_counter() - t
    probs = Inspector(result.model, data.class_names, data.preprocessing).probabilities(data.images[data.val_index])
    scores = LabelScores(data.val_index, probs, np.full(len(data.val_index), VALIDATION, object))
    t = time.perf_counter()
    scores = scores.merged(out_of_fold_probabilities(data, preset("seed"), settings, folds, retrain_epochs))
    retrains = time.perf_counter() - t
    doubts = scores.doubts(data.labels)
    wrong = len(planted.swapped)
    print(f"4. Mislabel finder: seed preset, {epochs} epochs ({trained:.0f} s), validation accuracy "
          f"{result.final_val_accuracy:.2f}; {folds} retrains of {retrain_epochs} epochs for the training "
          f"images ({retrains:.0f} s); "
          f"{len(doubts)} candidates; {wrong} swapped labels planted")
    print(f"   {'first':>6} {'precision':>10} {'recall':>7}")
    for top in (wrong, 2 * wrong, 4 * wrong):
        p, r = label_scores(doubts, data.paths, planted, top)
        print(f"   {top:>6} {p:10.2f} {r:7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--source-size", type=int, default=256, help="side of the image files read in part 1")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--retrain-epochs", type=int, default=8,
                        help="epochs of each retrain (the app's: the training settings' epochs)")
    parser.add_argument("--labels-only", action="store_true", help="only the mislabel finder")
    parser.add_argument("--no-train", action="store_true", help="skip the mislabel finder (needs TensorFlow)")
    args = parser.parse_args()
    from planted_data import write_planted_dataset

    with tempfile.TemporaryDirectory() as tmp:
        if not args.labels_only:
            large = write_planted_dataset(Path(tmp) / "large", per_class=args.per_class, size=args.source_size)
            overhead(large.root, args.source_size, [64, 224], args.rounds)
        planted = write_planted_dataset(Path(tmp) / "planted", per_class=args.per_class, exact=10, near=20,
                                        cross_class=10, swapped=12)
        if not args.labels_only:
            pair_search()
            duplicate_precision(planted.root, planted)
        if not args.no_train:
            mislabel_precision(planted.root, planted, args.folds, args.epochs, args.retrain_epochs)


if __name__ == "__main__":
    main()
