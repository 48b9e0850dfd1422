"""A dataset with known faults, and how well the finder of :mod:`cnndesk.core.data.copies` finds them.

:func:`write_planted_dataset` writes the built-in sample's coloured shapes (learnable, and far
apart in hash space) and then plants, each a known number of times:

- exact duplicates: a file copied byte for byte into its own class;
- near duplicates: an image shrunk to 80 % and saved again as a JPEG of quality 70, in its own class;
- cross-class copies: a file copied into another class's folder;
- swapped labels: a file moved into another class's folder (the only copy).

The near duplicates are the split leaks: a plain stratified split puts some of their pairs on
both sides. :func:`duplicate_scores` and :func:`label_scores` give precision and recall of what
the finder reports against what was planted; the benchmark ``benchmarks/data_quality.py`` and the
tests share them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from cnndesk.core.data.samples import draw_sample, SAMPLE_CLASSES


@dataclass
class Planted:
    """What was planted, as file paths (str)."""

    root: Path
    exact: list[tuple[str, str]] = field(default_factory=list)
    near: list[tuple[str, str]] = field(default_factory=list)
    cross_class: list[tuple[str, str]] = field(default_factory=list)
    swapped: dict[str, str] = field(default_factory=dict)  # file -> the class it really shows

    def duplicate_pairs(self) -> set[frozenset[str]]:
        return {frozenset(p) for p in self.exact + self.near + self.cross_class}


def write_planted_dataset(root: Path, per_class: int = 40, size: int = 64, classes=SAMPLE_CLASSES, exact: int = 3,
                          near: int = 6, cross_class: int = 3, swapped: int = 4, seed: int = 5) -> Planted:
    """Write the dataset into ``root/<class>/`` and return what was planted (the same every time)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    files: dict[str, list[Path]] = {}
    for ci, kind in enumerate(classes):
        d = root / kind
        d.mkdir(parents=True, exist_ok=True)
        files[kind] = []
        for i in range(per_class):
            p = d / f"{kind}_{i:03d}.png"
            draw_sample(kind, rng, size).save(p)
            files[kind].append(p)
    planted = Planted(root)
    originals = [(k, p) for k in classes for p in files[k]]
    order = rng.permutation(len(originals))
    picks = iter(originals[i] for i in order)

    for n in range(exact):
        kind, p = next(picks)
        copy = p.with_name(f"{p.stem}_copy.png")
        shutil.copyfile(p, copy)
        planted.exact.append((str(p), str(copy)))
    for n in range(near):
        kind, p = next(picks)
        with Image.open(p) as im:
            small = im.convert("RGB").resize((int(im.width * 0.8), int(im.height * 0.8)), Image.BILINEAR)
        copy = p.with_name(f"{p.stem}_resized.jpg")
        small.save(copy, quality=70)
        planted.near.append((str(p), str(copy)))
    for n in range(cross_class):
        kind, p = next(picks)
        other = classes[(classes.index(kind) + 1 + n) % len(classes)]
        copy = root / other / f"{p.stem}_also.png"
        shutil.copyfile(p, copy)
        planted.cross_class.append((str(p), str(copy)))
    for n in range(swapped):
        kind, p = next(picks)
        other = classes[(classes.index(kind) + 1 + n) % len(classes)]
        moved = root / other / f"{p.stem}_swapped.png"
        p.rename(moved)
        planted.swapped[str(moved)] = kind
    return planted


def precision_recall(found: set, truth: set) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), (hit / len(truth) if truth else 1.0)


def found_pairs(report, paths) -> set[frozenset[str]]:
    """Every pair of files that share a duplicate group of ``report``."""
    return {frozenset((paths[i], paths[j])) for g in report.groups for i, j in combinations(g.members, 2)}


def duplicate_scores(report, paths, planted: Planted) -> tuple[float, float]:
    """Pair precision and recall of the duplicate groups against the planted copies."""
    return precision_recall(found_pairs(report, paths), planted.duplicate_pairs())


def label_scores(doubts, paths, planted: Planted, top: int) -> tuple[float, float]:
    """Precision and recall of the ``top`` first label doubts against the swapped files.

    A cross-class copy is a wrong label too (one of its two files is filed in the wrong class),
    so naming either file of such a pair counts as a hit, and the pair is not required.
    """
    named = {paths[d.row] for d in doubts[:top]}
    copies = {p for pair in planted.cross_class for p in pair}
    truth = set(planted.swapped)
    hits = named & (truth | copies)
    precision = len(hits) / len(named) if named else 1.0
    recall = len(named & truth) / len(truth) if truth else 1.0
    return precision, recall
