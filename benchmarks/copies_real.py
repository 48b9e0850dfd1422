"""Copies and look-alikes in real pictures: what the copy finder finds, misses and wrongly pairs, and the split.

Two datasets are written as class folders into a temporary folder and read as
``cnndesk-cli check`` reads them (``load_dataset`` at 64 px RGB, the default
split of 20 % per class), then grouped at the default settings:

  tiles   six photos that ship with scikit-image (astronaut, coffee, chelsea,
          rocket, camera, immunohistochemistry), one class each, cut into
          non-overlapping 96 px tiles saved as JPEG (quality 90): neighbouring
          tiles of a photo look alike but are not copies. 18 copies of chosen
          tiles are added, three of each edit: re-saved as JPEG of quality 55,
          resized to 77 px, brightened by 12 %, cropped by 3 % (top-left) and
          scaled back, blurred (Gaussian, sigma 0.8), re-saved as PNG. One copy
          of each edit (6 in all) goes under another class.
  digits  scikit-learn's 1,797 real handwritten 8x8 digits (UCI; MNIST itself is
          not available offline), 16 grey levels scaled to 0..255 and upscaled
          to 28 px (bilinear, as MNIST's size), one class per digit. No copies
          were planted: every group is a false one (unless two scans have the
          same pixels).
  strokes 5,000 handwritten-like digits drawn from strokes with a random slant,
          size, position, width and wobble (``tests/lookalikes.py``), 28 px, 500
          per digit: the size of the MNIST sample of the issue. No copies.

For each it prints the copies found, missed (with their edit) and the false
pairs (two files in one group that are not a planted copy), the group sizes,
and for each class the share of its images that the split put in validation.

Needs the ``bench`` extra (scikit-learn, scikit-image).

Usage:
    .venv/bin/python benchmarks/copies_real.py [--case tiles,digits] [--size 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from itertools import combinations
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]  # the stroke digits are the tests' own

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
TILE = 96


def _plant(root: Path, tiles: list[tuple[str, Path]], classes: list[str], copies: int, other_class: int,
           rng: np.random.Generator) -> dict[frozenset[str], str]:
    """Copies of ``copies`` chosen tiles (class, file), the edits in turn; the first ``other_class`` go under
    another class. Returns each planted pair (two paths) with its edit."""
    from lookalikes import EDITS, edited_copy

    planted = {}
    for n, k in enumerate(rng.choice(len(tiles), copies, replace=False)):
        name, path = tiles[k]
        edit = EDITS[n % len(EDITS)]
        cls = classes[(classes.index(name) + 1 + n % (len(classes) - 1)) % len(classes)] if n < other_class else name
        with Image.open(path) as decoded:  # the copies are made of the file, as a person would
            copy = edited_copy(np.asarray(decoded.convert("RGB")), edit)
        target = root / cls / f"{path.stem}_{edit}{'.jpg' if edit == 'jpeg55' else '.png'}"
        copy.save(target, **({"quality": 55} if edit == "jpeg55" else {}))
        planted[frozenset((str(path), str(target)))] = edit + (" (other class)" if cls != name else "")
    return planted


def _write_tiles(root: Path, pictures: dict[str, np.ndarray], tile: int = TILE) -> list[tuple[str, Path]]:
    """Cut each picture into non-overlapping ``tile`` px tiles, saved as JPEG (quality 90) under its name."""
    tiles = []
    for name, photo in pictures.items():
        (root / name).mkdir(parents=True)
        for y in range(0, photo.shape[0] - tile + 1, tile):
            for x in range(0, photo.shape[1] - tile + 1, tile):
                path = root / name / f"{name}_{y // tile}_{x // tile}.jpg"
                Image.fromarray(np.ascontiguousarray(photo[y:y + tile, x:x + tile, :3])).save(path, quality=90)
                tiles.append((name, path))
    return tiles


def photo_tiles(root: Path, tile: int = TILE) -> list[tuple[str, Path]]:
    """The six photos (RGB) cut into non-overlapping ``tile`` px tiles in one folder each; (class, file) of each."""
    import skimage.data

    pictures = {}
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        pictures[name] = np.stack([photo] * 3, axis=-1) if photo.ndim == 2 else photo
    return _write_tiles(root, pictures, tile)


def write_tiles(root: Path, seed: int = 3) -> dict[frozenset[str], str]:
    """The photo tiles with 18 planted copies, 3 of each edit, one of each under another class."""
    return _plant(root, photo_tiles(root), list(PHOTOS), 18, 6, np.random.default_rng(seed))


def write_textures(root: Path, seed: int = 4) -> dict[frozenset[str], str]:
    """Photo-like textures (``tests/lookalikes.py``), 8 pictures of 4x4 tiles, with 36 copies, 6 of each edit."""
    from lookalikes import texture

    rng = np.random.default_rng(seed)
    pictures = {f"t{k}": texture(rng, 4 * TILE, 4 * TILE) for k in range(8)}
    return _plant(root, _write_tiles(root, pictures), list(pictures), 36, 6, rng)


def write_digits(root: Path, side: int = 28) -> dict[frozenset[str], str]:
    """The UCI digits as ``side`` px PNGs in folders 0..9; no copies planted."""
    from sklearn.datasets import load_digits

    d = load_digits()
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(d.images, d.target)):
        grey = Image.fromarray((image * (255 / 16)).round().astype(np.uint8))
        grey.resize((side, side), Image.BILINEAR).save(root / str(label) / f"{i:04d}.png")
    return {}


def write_strokes(root: Path, per_class: int = 500) -> dict[frozenset[str], str]:
    """5,000 handwritten-like stroke digits (``tests/lookalikes.py``), 28 px, in folders 0..9; no copies."""
    from lookalikes import stroke_digits

    images, labels = stroke_digits(per_class, seed=3)
    for c in range(10):
        (root / str(c)).mkdir(parents=True)
    for i, (image, label) in enumerate(zip(images, labels)):
        Image.fromarray(image).save(root / str(label) / f"{i:04d}.png")
    return {}


CASES = {"tiles": write_tiles, "textures": write_textures, "digits": write_digits, "strokes": write_strokes}


def measure(name: str, root: Path, planted: dict[frozenset[str], str], size: int) -> None:
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.data.copies import find_duplicates

    config = DatasetConfig(Preprocessing((size, size)))
    data = load_dataset(root, config)
    report = find_duplicates(data.images, data.labels, data.pairs, config.duplicate_distance, data.val_index)
    found = {frozenset((data.paths[i], data.paths[j])) for g in report.groups for i, j in combinations(g.members, 2)}
    hits = [p for p in planted if p in found]
    cross = [p for p in planted if "other class" in planted[p]]
    false = found - set(planted)
    sizes = sorted((len(g.members) for g in report.groups), reverse=True)
    grouped = sum(sizes)
    print(f"{name}: {len(data.labels)} images in {data.num_classes} classes, read at {size} px")
    if planted:
        print(f"  planted copies found {len(hits)} of {len(planted)} (cross-class {sum(p in found for p in cross)} "
              f"of {len(cross)}); false pairs {len(false)}")
        for p in planted:
            if p not in found:
                print(f"    missed: {planted[p]}: {' ~ '.join(sorted(Path(f).name for f in p))}")
    else:
        print(f"  false pairs {len(false)}")
    for p in sorted(false, key=sorted)[:10]:
        print(f"    false: {' ~ '.join(sorted(str(Path(f).relative_to(root)) for f in p))}")
    print(f"  {len(sizes)} group(s), {grouped} images in groups, {report.counts()['extra_copies']} extra copies; "
          f"largest groups: {sizes[:8]}")
    if report.groups:
        big = max(report.groups, key=lambda g: len(g.members))
        labels = Counter(data.class_names[int(data.labels[m])] for m in big.members)
        print(f"  largest group by class: {dict(labels.most_common(6))}")
    ask = config.val_split
    shares = []
    for c, cname in enumerate(data.class_names):
        rows = np.flatnonzero(data.labels == c)
        in_val = np.isin(rows, data.val_index).sum()
        shares.append((cname, len(rows), int(in_val), in_val / len(rows)))
    worst = max(abs(s - ask) for *_, s in shares)
    total = len(data.val_index) / len(data.labels)
    print(f"  split: validation {len(data.val_index)} of {len(data.labels)} ({100 * total:.1f} %, asked "
          f"{100 * ask:.0f} %); per class {', '.join(f'{c} {v}/{n}' for c, n, v, _ in shares)}; "
          f"largest class deviation {100 * worst:.1f} points")
    print(f"  split note: {data.split_note}")


def _table(label: str, kinds: np.ndarray, bits: np.ndarray, s) -> None:
    print(f"  {label:>10} {'pairs':>5} {'bits max':>8} {'coarse min':>10} {'layout min':>10} {'copy min':>9} "
          f"{'colour max':>10} {'tone':>5} {'found':>5}")
    for e in dict.fromkeys(kinds):
        k = kinds == e
        print(f"  {e:>10} {k.sum():5d} {bits[k].max():8d} {s.coarse[k].min():10.4f} {s.layout[k].min():10.4f} "
              f"{s.copy[k].min():9.4f} {s.colour[k].max():10.2f} {int(s.tone[k].sum()):5d} "
              f"{int((s.same() & (bits <= DISTANCE))[k].sum()):5d}")


DISTANCE = 10


def scores(name: str, root: Path, planted: dict[frozenset[str], str], size: int) -> None:
    """How alike copies and the other candidate pairs are, score by score (``quality.pair_scores``).

    With planted copies: every tile that is no copy, against each edit of it (``EDITS`` and
    ``MORE_EDITS`` of ``tests/lookalikes.py``), decoded as the dataset is read. Then the
    candidate pairs of the dataset that are no planted copy: how many pass each score.
    """
    from cnndesk.core.data import copies as q
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import decode_image, Preprocessing
    from lookalikes import EDITS, MORE_EDITS, edited_copy

    pre = Preprocessing((size, size))
    data = load_dataset(root, DatasetConfig(pre))
    print(f"{name}: {len(data.labels)} images read at {size} px")
    if planted:
        copies = {f for pair in planted for f in pair if Path(f).stem.split("_")[-1] in EDITS}
        originals = [p for p in data.paths if p not in copies]
        images, kinds = [], []
        for path in originals:
            with Image.open(path) as im:
                tile = np.asarray(im.convert("RGB"))
            for edit in EDITS + MORE_EDITS:
                images += [decode_image(tile, pre), decode_image(edited_copy(tile, edit), pre)]
                kinds.append(edit)
        images = np.stack(images)
        pairs = np.stack([np.arange(0, len(images), 2), np.arange(1, len(images), 2)], axis=1)
        hashes = q.perceptual_hashes(images)
        bits = q.hamming(hashes[pairs[:, 0]], hashes[pairs[:, 1]]).astype(int)
        s = q.pair_scores(q.picture_thumbnails(images), pairs, search_all=True)
        print(f"  every one of {len(originals)} tiles with each edit ('found': within {DISTANCE} bits and the same "
              "picture):")
        _table("edit", np.array(kinds), bits, s)
    row = {p: i for i, p in enumerate(data.paths)}
    planted_rows = {tuple(sorted(row[f] for f in pair)) for pair in planted}
    found = list(q.candidate_pairs(data.hashes, q.MAX_DISTANCE))
    candidates = np.concatenate(found) if found else np.zeros((0, 3), np.int32)
    others = candidates[[(i, j) not in planted_rows for i, j in candidates[:, :2].tolist()]]
    if len(others):
        s = q.pair_scores(q.chunked_thumbnails(data.images), others)
        coarse = s.coarse >= q.COARSE_MIN
        toned = coarse & s.tone
        layout = toned & (s.layout >= q.LAYOUT_MIN)
        copy = layout & (s.copy >= q.COPY_MIN)
        top = np.sort(s.copy[layout])[::-1][:6]
        print(f"  {len(others)} other pairs within {q.MAX_DISTANCE} bits: pass coarse {coarse.sum()}, and tone "
              f"{toned.sum()}, and layout {layout.sum()}, and copy {copy.sum()}, and colour "
              f"{(copy & (s.colour <= q.COLOUR_TOLERANCE)).sum()}; highest copy scores {np.round(top, 4).tolist()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default=",".join(CASES), help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--size", type=int, default=64, help="the side images are read at (check's default: 64)")
    parser.add_argument("--scores", action="store_true", help="the scores of the copies and of the other candidates")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.case.split(","):
            root = Path(tmp) / name
            planted = CASES[name](root)
            (scores if args.scores else measure)(name, root, planted, args.size)


if __name__ == "__main__":
    main()
