"""The train/validation split: stratified, and fair when the dataset holds copies.

:func:`split_indices` gives each class its share of validation images;
:func:`leak_free_split` does the same for a dataset with duplicate groups
(:mod:`.copies`), keeping every group on one side so that validation never
sees a near-copy of a training image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UserError
from .copies import DuplicateGroup

def split_indices(labels: np.ndarray, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic stratified split: each class keeps ``val_split`` for validation.

    Every class with at least 2 images gets at least one validation and one
    training image when ``val_split`` > 0.
    """
    if not 0.0 <= val_split < 1.0:
        raise UserError(f"The validation split must be between 0 and 1 (got {val_split}).")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rng.shuffle(members)
        k = int(round(len(members) * val_split))
        if val_split > 0 and len(members) >= 2:
            k = min(max(k, 1), len(members) - 1)
        val.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))



#: the most a class's validation share may differ from the share asked for (a fraction) before the split says so
SHARE_SLACK = 0.02


@dataclass(frozen=True)
class Split:
    """A train/validation split that keeps every duplicate group on one side."""

    train: np.ndarray
    val: np.ndarray
    kept_together: int  # groups a plain stratified split would have put on both sides
    excluded: int  # rows in neither split (excluded by the user)
    asked: float = 0.0  # the validation share asked for
    uneven: tuple[tuple[int, float], ...] = ()  # (class, its validation share) where the groups kept it off the share

    def summary(self, class_names: Sequence[str] | None = None) -> str:
        """What the split did about duplicates and exclusions, for the split line of the panel and the CLI."""
        parts = []
        if self.kept_together:
            parts.append(f"{self.kept_together} near-duplicate group(s) kept on one side, so validation sees no "
                         "near-copy of a training image")
        else:
            parts.append("no near-duplicate group spans training and validation")
        if self.uneven:
            def name(c: int) -> str:
                return class_names[c] if class_names is not None else f"class {c}"

            classes = ", ".join(f"{name(c)}: {100 * share:.0f} % in validation" for c, share in self.uneven)
            parts.append(f"keeping copies together left some classes more than {100 * SHARE_SLACK:.0f} points from "
                         f"the {100 * self.asked:.0f} % asked for ({classes})")
        if self.excluded:
            parts.append(f"{self.excluded} image(s) excluded")
        return "; ".join(parts)


def leak_free_split(labels: np.ndarray, groups: Sequence[DuplicateGroup], val_split: float, seed: int,
                    excluded_rows: Sequence[int] = ()) -> Split:
    """A stratified split (:func:`.dataset.split_indices`) of the rows not excluded, with every group on one side,
    and every class as close to its share as the groups allow.

    The stratified split gives each class its number of validation images. A group
    that it put on both sides goes whole to the side that keeps its classes' numbers
    closest (the side that held most of it on a tie); then each class that has too
    many or too few validation images swaps images in no group between the sides
    (seeded), and where those are too few, whole groups of that class alone. A class
    still more than ``SHARE_SLACK`` from the share asked for is listed in
    ``Split.uneven`` and in its summary (unless the stratified split left it there:
    a class of 7 images cannot have 20 % of them in validation). Without groups and exclusions the split is
    exactly ``split_indices(labels, val_split, seed)``.
    """
    labels = np.asarray(labels)
    keep = np.ones(len(labels), bool)
    if len(excluded_rows):
        keep[np.asarray(list(excluded_rows), dtype=np.int64)] = False
    rows = np.flatnonzero(keep)
    train_pos, val_pos = split_indices(labels[rows], val_split, seed) if len(rows) else ([], [])
    side = np.full(len(labels), -1, np.int8)  # -1 excluded, 0 train, 1 validation
    side[rows[np.asarray(train_pos, dtype=np.int64)]] = 0
    side[rows[np.asarray(val_pos, dtype=np.int64)]] = 1
    classes = int(labels.max()) + 1 if len(labels) else 0
    target = np.bincount(labels[side == 1], minlength=classes)
    grouped = np.zeros(len(labels), bool)
    units = [m for m in (np.array([r for r in g.members if side[r] >= 0], dtype=np.int64) for g in groups)
             if len(m) > 1]
    moved = 0
    for members in sorted(units, key=len, reverse=True):
        grouped[members] = True
        sides = side[members]
        if sides.all() or not sides.any():
            continue
        in_val = np.bincount(labels[side == 1], minlength=classes)

        def cost(to: int) -> tuple[int, bool]:
            change = np.bincount(labels[members], weights=to - sides.astype(np.int64), minlength=classes)
            return int(np.abs(in_val + change - target).sum()), to != (2 * sides.sum() > len(members))

        side[members] = min((0, 1), key=cost)
        moved += 1
    if moved:
        _even_out(side, labels, target, grouped, units, np.random.default_rng(seed))
    counts = np.bincount(labels[side >= 0], minlength=classes)
    in_val = np.bincount(labels[side == 1], minlength=classes)
    uneven = [(int(c), float(in_val[c] / counts[c])) for c in np.flatnonzero(counts)
              if in_val[c] != target[c] and abs(in_val[c] / counts[c] - val_split) > SHARE_SLACK + 1e-9]
    return Split(np.flatnonzero(side == 0), np.flatnonzero(side == 1), moved, int((side < 0).sum()), val_split,
                 tuple(uneven))


def _even_out(side: np.ndarray, labels: np.ndarray, target: np.ndarray, grouped: np.ndarray,
              units: list[np.ndarray], rng: np.random.Generator) -> None:
    """Bring each class's number of validation rows to ``target``: first by moving rows in no group between the
    sides, then whole groups of that class alone (the one that closes the gap most first); ``side`` is changed."""
    for c in np.flatnonzero(target >= 0):
        of_class = labels == c
        gap = int(target[c] - (side[of_class] == 1).sum())
        if gap:
            free = np.flatnonzero(of_class & ~grouped & (side == (0 if gap > 0 else 1)))
            side[rng.permutation(free)[:abs(gap)]] = 1 if gap > 0 else 0
        own = [m for m in units if (labels[m] == c).all()]
        while True:
            gap = int(target[c] - (side[of_class] == 1).sum())
            movable = [m for m in own if side[m[0]] == (0 if gap > 0 else 1) and len(m) < 2 * abs(gap)]
            if not gap or not movable:
                break
            best = min(movable, key=lambda m: (abs(abs(gap) - len(m)), len(m)))
            side[best] = 1 if gap > 0 else 0
