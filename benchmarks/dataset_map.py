"""What a map of the dataset (the Map tab, ``cnndesk-cli map``) costs at 1,000 and 10,000 images.

The benchmark's 10 classes of shapes (``_data.draw``, 32 px, made in memory), the seed preset
trained for 3 epochs on the first 1,000; then for each size the map's two steps, timed apart:
the forward pass that reads the penultimate features (``dataset_map.model_view``) and the
reduction to 2-D (``dataset_map.embed``: PCA, then t-SNE of at most ``TSNE_MOST`` images, the
others placed beside their nearest). Wall-clock seconds and the process's CPU seconds (all its
threads) are printed with the load average, since the machine is shared. ``--most`` changes the
t-SNE sample (``--most 0``: t-SNE on every image), ``--threads`` t-SNE's threads.

Also prints how well the map keeps what the model sees: the share of images whose nearest
neighbour has the same predicted class, on the map and in the features themselves.

Usage:
    .venv/bin/python benchmarks/dataset_map.py [--sizes 1000,10000] [--most 5000] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402


def _dataset(n: int, size: int = 32):
    from _data import CLASSES, draw

    from cnndesk.core.data.dataset import LoadedDataset
    from cnndesk.core.data.images import Preprocessing

    rng = np.random.default_rng(0)
    labels = np.arange(n) % len(CLASSES)
    images = np.stack([np.asarray(draw(CLASSES[c], rng, size)) for c in labels])
    val = np.arange(n)[np.arange(n) % 5 == 0]
    train = np.setdiff1d(np.arange(n), val)
    return LoadedDataset(Path("/bench"), list(CLASSES), Preprocessing((size, size)), images, labels.astype(np.int32),
                         [f"/bench/{CLASSES[c]}/{i:06d}.png" for i, c in enumerate(labels)], [], train, val)


def _nearest_agreement(xy: np.ndarray, predicted: np.ndarray, sample: int = 2000) -> float:
    rows = np.random.default_rng(0).choice(len(xy), min(sample, len(xy)), replace=False)
    d = ((xy[rows, None] - xy[None]) ** 2).sum(-1)
    d[np.arange(len(rows)), rows] = np.inf
    return float(np.mean(predicted[d.argmin(axis=1)] == predicted[rows]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--most", type=int, default=None, help="t-SNE sample size (0: every image)")
    ap.add_argument("--threads", type=int, default=None, help="t-SNE's threads")
    args = ap.parse_args()

    from cnndesk.core.library_warnings import import_tensorflow

    import_tensorflow()
    import cnndesk.core.work.dataset_map as dm
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.training.fitting import train
    from cnndesk.core.work.trust import ModelHeads

    if args.most is not None:
        dm.TSNE_MOST = args.most or 10 ** 9
    if args.threads is not None:
        dm.TSNE_THREADS = args.threads
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"cores {os.cpu_count()}, t-SNE threads {dm.TSNE_THREADS}, t-SNE sample {dm.TSNE_MOST}, "
          f"{dm.TSNE_ITERATIONS} iterations")
    model = train(_dataset(1000), preset("seed"), TrainingSettings(epochs=3, batch_size=32, seed=1)).model
    for n in sizes:
        data = _dataset(n)
        heads = ModelHeads(model, data.preprocessing)
        load = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), time.process_time()
        features, predicted = dm.model_view(heads, data)
        w1, c1 = time.perf_counter(), time.process_time()
        xy = dm.embed(features)
        w2, c2 = time.perf_counter(), time.process_time()
        print(f"{n:>6} images: features {w1 - w0:6.1f} s wall ({c1 - c0:6.1f} s CPU), "
              f"placing {w2 - w1:6.1f} s wall ({c2 - c1:6.1f} s CPU), total {w2 - w0:6.1f} s; "
              f"nearest neighbour of the same predicted class: on the map {_nearest_agreement(xy, predicted):.1%}, "
              f"in the features {_nearest_agreement(features, predicted):.1%}; "
              f"load average {load:.1f} -> {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
