"""What finding copies costs at 10,000, 30,000 and 100,000 images: seconds and peak memory, step by step.

Two kinds of images, made in memory (nothing is read from disk), each with 1 % of them
copied with one of the edits of ``tests/lookalikes.py`` (JPEG 55, resized, brightened,
cropped, blurred, re-saved):

  digits   handwritten-like stroke digits (``lookalikes.stroke_digits``), 28 px grey as RGB:
           the worst case, thousands of look-alikes whose hashes are close
  photos   photo-like textures cut into 32 px tiles (``lookalikes.texture``): hashes spread out

For each size it times what ``load_dataset`` does after decoding (hashes and thumbnails in
one pass, the indexed pair search with the pictures compared) and what the split does
(``find_duplicates``, ``leak_free_split``), and reports the peak memory that Python
allocated for them (``tracemalloc``, the images themselves not counted), the candidate
pairs the index proposed, the pairs of copies found, how many of the planted ones they
hold, and the groups. For reference it also times the pair search
of cnndesk before the index (every pair of hashes compared, a block of rows at a time) on the
same hashes, up to ``--all-pairs-up-to`` images.

Usage:
    .venv/bin/python benchmarks/copies_scale.py [--sizes 10000,30000,100000] [--kinds digits,photos]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests")]

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def cpu() -> str:
    """The CPU model and the number of cores this process may use."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{model}, {cores} core(s) available"


def _with_copies(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """``images`` with 1 % of them replaced by an edited copy of another (edits in turn), as decoded at their size;
    their labels, and the planted pairs."""
    from cnndesk.core.data.images import decode_image, Preprocessing
    from lookalikes import EDITS, edited_copy

    n = len(images)
    side = images.shape[1]
    pre = Preprocessing((side, side))
    picks = rng.choice(n, 2 * (n // 100), replace=False)
    for k, (source, target) in enumerate(zip(picks[::2], picks[1::2])):
        images[target] = decode_image(np.asarray(edited_copy(images[source], EDITS[k % len(EDITS)])), pre)
        labels[target] = labels[source]
    return images, labels, {(int(min(p)), int(max(p))) for p in zip(picks[::2], picks[1::2])}


def digits(n: int, seed: int = 0):
    from lookalikes import stroke_digits

    grey, labels = stroke_digits(-(-n // 10), seed=seed)
    images = np.repeat(grey[:n, :, :, None], 3, axis=3)
    return _with_copies(images, labels[:n].copy(), np.random.default_rng(seed))


def photos(n: int, seed: int = 0, tile: int = 32):
    from lookalikes import texture

    rng = np.random.default_rng(seed)
    per = 4  # tiles a side of each picture
    images = np.empty((n, tile, tile, 3), np.uint8)
    labels = np.empty(n, np.int64)
    k = 0
    while k < n:
        picture = texture(rng, per * tile, per * tile)
        for r in range(per):
            for c in range(per):
                if k < n:
                    images[k] = picture[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile]
                    labels[k] = (k // (per * per)) % 10
                    k += 1
    return _with_copies(images, labels, rng)


KINDS = {"digits": digits, "photos": photos}


def all_pairs(hashes: np.ndarray, max_distance: int, block: int = 1 << 22) -> int:
    """The pair search before the index: every pair of hashes compared, a block of rows at a time."""
    from cnndesk.core.data.copies import hamming

    n, found = len(hashes), 0
    step = max(1, block // max(n, 1))
    for start in range(0, n, step):
        d = hamming(hashes[start:start + step, None], hashes[None, start:])
        i, j = np.nonzero(d <= max_distance)
        found += int((j > i).sum())
    return found


def measure(kind: str, n: int, all_pairs_up_to: int) -> None:
    from cnndesk.core.data.dataset import _hashes_and_thumbnails
    from cnndesk.core.data.copies import candidate_pairs, find_duplicates, MAX_DISTANCE, similar_pairs
    from cnndesk.core.data.split import leak_free_split

    t = time.perf_counter()
    images, labels, planted = KINDS[kind](n)
    made = time.perf_counter() - t
    tracemalloc.start()
    t = time.perf_counter()
    hashes, thumbnails = _hashes_and_thumbnails(images)
    hashing = time.perf_counter() - t
    t = time.perf_counter()
    pairs = similar_pairs(hashes, thumbnails=thumbnails)
    search = time.perf_counter() - t
    t = time.perf_counter()
    groups = find_duplicates(images, labels, pairs).groups
    split = leak_free_split(labels, groups, 0.2, 1337)
    grouping = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    candidates = sum(len(b) for b in candidate_pairs(hashes, MAX_DISTANCE))
    found = len(planted & set(map(tuple, pairs[:, :2].tolist())))
    line = (f"  {kind:>6} {n:>7} {hashing:8.1f} {search:9.1f} {grouping:7.1f} {peak / 2**20:8.0f} "
            f"{candidates:>11} {len(pairs):>6} {found:>5}/{len(planted):<5} "
            f"{len(groups):>6} {max((len(g.members) for g in groups), default=0):>4}")
    if n <= all_pairs_up_to:
        t = time.perf_counter()
        all_pairs(hashes, MAX_DISTANCE)
        line += f" {time.perf_counter() - t:10.1f}"
    else:
        line += f" {'-':>10}"
    print(line + f"   (made in {made:.0f} s; validation {len(split.val)} of {n})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--kinds", default="digits,photos")
    parser.add_argument("--all-pairs-up-to", type=int, default=30000,
                        help="time the search without the index up to this many images (default 30000)")
    args = parser.parse_args()
    print(f"CPU: {cpu()}; NumPy {np.__version__}")
    print(f"  {'kind':>6} {'images':>7} {'hash s':>8} {'search s':>9} {'group s':>7} {'peak MB':>8} "
          f"{'candidates':>11} {'pairs':>6} {'planted found':>11} {'groups':>6} {'max':>4} {'all-pairs s':>10}")
    for kind in args.kinds.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            measure(kind, n, args.all_pairs_up_to)


if __name__ == "__main__":
    main()
