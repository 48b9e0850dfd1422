"""``cnndesk-cli check DATA``: duplicates, cross-class copies and split leaks of a dataset folder.

It reads the folder as ``train`` would (same image size, colour, split and seed),
prints the counts and every duplicate group, and says what the leak-free split did.
``--json`` prints one object with the counts and the groups instead. No
TensorFlow is loaded. Finding likely mislabelled images needs a trained model;
the app's Evaluation tab does that.
"""

from __future__ import annotations

import argparse
import os
import sys

from .support import emit_json, fraction, image_size, seed


def add_parser(sub) -> argparse.ArgumentParser:
    """The ``check`` command (its options read as ``train``'s do)."""
    from ..core.data.copies import DEFAULT_DISTANCE, MAX_DISTANCE

    def distance(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_DISTANCE}") from None
        if not 0 <= v <= MAX_DISTANCE:
            raise argparse.ArgumentTypeError(f"must be a whole number from 0 to {MAX_DISTANCE}")
        return v

    c = sub.add_parser("check", help="find duplicate images, copies across classes and train/validation leaks")
    c.add_argument("dataset", help="folder with one subfolder of images per class")
    c.add_argument("--distance", type=distance, default=DEFAULT_DISTANCE,
                   help=f"largest hash distance (bits of 64) at which images are compared as pictures to find "
                        f"copies (default {DEFAULT_DISTANCE})")
    c.add_argument("--image-size", type=image_size, default=(64, 64), metavar="N|HxW")
    c.add_argument("--color", choices=["rgb", "grayscale"], default="rgb")
    c.add_argument("--val-split", type=fraction, default=0.2)
    c.add_argument("--seed", type=seed, default=1337)
    c.add_argument("--follow-outside-links", action="store_true",
                   help="also read class folders and files that are links out of the dataset folder")
    c.add_argument("--json", action="store_true", help="one JSON object with the counts and the groups")
    return c


def cmd_check(args) -> int:
    from ..core.data.dataset import DatasetConfig, load_dataset
    from ..core.data.split import split_indices
    from ..core.data.images import Preprocessing
    from ..core.data.copies import find_duplicates
    from ..core.data.scanning import printable

    config = DatasetConfig(Preprocessing(args.image_size, args.color), args.val_split, args.seed,
                           duplicate_distance=args.distance)
    data = load_dataset(args.dataset, config, follow_outside_links=args.follow_outside_links)
    report = find_duplicates(data.images, data.labels, data.pairs, args.distance, data.val_index)
    # what a plain stratified split would have leaked: the leak-free split has none by construction
    _, plain_val = split_indices(data.labels, args.val_split, args.seed)
    plain_leaks = find_duplicates(data.images, data.labels, data.pairs, args.distance, plain_val).counts()["leaks"]
    if args.json:
        out = report.to_json(data.paths, data.labels, data.class_names, data.val_index)
        out.update(images=len(data.labels), split=data.split_note, leaks_without_grouping=plain_leaks)
        emit_json(out)
        return 0
    c = report.counts()
    print(f"{len(data.labels)} images in {data.num_classes} classes; {report.summary()}")
    print(f"Split: {len(data.train_index)} for training, {len(data.val_index)} for validation; {data.split_note} "
          f"(a plain stratified split would have put {plain_leaks} group(s) on both sides).")
    in_val = set(data.val_index.tolist())
    for n, g in enumerate(report.groups, 1):
        print(f"group {n} ({g.kind}, distance {g.distance}{', leak' if g.leak else ''}):")
        for i in g.members:
            rel = os.path.relpath(data.paths[i], data.root)
            side = "validation" if i in in_val else "training"
            print(f"  {printable(data.class_names[data.labels[i]])}\t{side}\t{printable(rel)}")
    if c["groups"] == 0:
        return 0
    print(f"{c['extra_copies']} extra copies; open the dataset in cnndesk to exclude or move them.", file=sys.stderr)
    return 0
