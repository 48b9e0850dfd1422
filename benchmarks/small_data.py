"""Held-out accuracy on small real datasets: cnndesk's defaults against a plain Keras script.

Builds a few small datasets of real images from data that ships inside
packages (nothing is downloaded), writes each into a temporary folder in the
class-folder layout (``root/<class>/*.png``), keeps a stratified held-out test
set apart, and trains on the rest two ways:

  cnndesk  what ``cnndesk-cli train DATA --image-size N --color C --seed S``
           does: ``load_dataset`` (80/20 train/validation split), ``preset("seed")``
           and ``train`` with every other setting at its default (10 epochs, but
           at least 300 optimizer steps for a new model, early stopping,
           keep-the-best-epoch, Adam 1e-3, batch 32); ``--min-steps 0`` gives
           the defaults before the minimum of steps (exactly 10 epochs)
  plain    the same seed model in a plain Keras script: Adam, 10 epochs, batch
           32, no callbacks, trained on exactly the images cnndesk trains on
           (cnndesk's 80 %; the other 20 % only reported as validation, like
           ``image_dataset_from_directory(validation_split=0.2)`` would)

and prints the held-out accuracy of both side by side, with the epoch whose
weights cnndesk kept and why its training stopped. Every dataset is trained
with several seeds (the seed of the weights, the shuffle and the
train/validation split; the held-out split stays fixed); the table shows the
mean, the lowest/highest run and the spread (highest - lowest), and says
whether each dataset meets the goal of docs/small-folders.md (spread at most
0.15, mean at least plain Keras's - 0.03).

Datasets (train+validation / held-out):
  digits    scikit-learn's 8x8 handwritten digits, 10 classes, 32 px grey (1438 / 359)
  digits30  30 of those per class, 32 px grey (240 / 60): "30 photos per class"
  faces     scikit-image's LFW subset: face / non-face crops, 32 px grey (160 / 40)
  patches   64 px colour patches cut from six photos shipped with scikit-image
            (astronaut, chelsea, coffee, rocket, immunohistochemistry, hubble
            deep field), one class per photo (114 / 30)
  textures  the 64 non-overlapping 64 px tiles of scikit-image's brick, grass
            and gravel pictures, 3 classes, 64 px (153 / 39)

Needs the ``bench`` extra (scikit-learn, scikit-image).

With ``--ensemble N`` each seed also trains what ``cnndesk-cli train --repeats N --keep ensemble``
does (N models with the seeds seed, seed+1, …, averaged into one: ``core.training.repeats``), and a
second table gives the ensemble's held-out accuracy beside the single model's.

Usage:
    .venv/bin/python benchmarks/small_data.py [--datasets digits,digits30,faces,patches,textures]
        [--seeds 1,2,3,4,5] [--split-seeds 7] [--epochs 10] [--min-steps 300] [--ensemble 5] [--json]

About 30 minutes on 2 busy shared CPU cores with the default five seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

DATASETS = ("digits", "digits30", "faces", "patches", "textures")
#: image size and colour mode each dataset is trained at
FORMAT = {"digits": (32, "grayscale"), "digits30": (32, "grayscale"), "faces": (32, "grayscale"),
          "patches": (64, "rgb"), "textures": (64, "rgb")}
TEST_SHARE = 0.2
SPLIT_SEED = 7  # the held-out split; fixed so every run is judged on the same images


# ---------------------------------------------------------------------------
# datasets: (list of uint8 images, labels, class names)

def _digits(per_class: int | None):
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images * (255 / 16)).round().astype(np.uint8)
    labels = d.target.astype(int)
    if per_class is not None:
        rng = np.random.default_rng(0)
        keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), per_class, replace=False)
                                       for c in range(10)]))
        images, labels = images[keep], labels[keep]
    return list(images), labels, [str(c) for c in range(10)]


def _faces():
    from skimage import data

    x = data.lfw_subset()  # 100 faces then 100 non-faces, 25x25 floats in 0..1
    images = [(im * 255).round().astype(np.uint8) for im in x]
    labels = np.array([0] * 100 + [1] * 100)
    return images, labels, ["face", "not_face"]


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field")


def _patches(per_class: int = 24, size: int = 64):
    """Random crops of each photo (side 64-160 px, scaled to 64): which photo is it from?"""
    return photo_patches(per_class, size, crop_seed=0)


def photo_patches(per_class: int, size: int = 64, crop_seed: int = 0):
    """``per_class`` random crops of each of the six photos, drawn with ``crop_seed`` (the dataset's are seed 0;
    another seed gives new crops of the same photos, e.g. a larger held-out set)."""
    from skimage import data

    rng = np.random.default_rng(crop_seed)
    images, labels = [], []
    for c, name in enumerate(PHOTOS):
        photo = getattr(data, name)()[..., :3]
        h, w = photo.shape[:2]
        for _ in range(per_class):
            side = int(rng.integers(size, min(160, h, w) + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = Image.fromarray(photo[y:y + side, x:x + side]).resize((size, size), Image.BILINEAR)
            images.append(np.asarray(crop))
            labels.append(c)
    return images, np.array(labels), list(PHOTOS)


TEXTURES = ("brick", "grass", "gravel")


def _textures(size: int = 64):
    """The 64 non-overlapping 64 px tiles of each of scikit-image's brick, grass and gravel pictures (512 px grey)."""
    from skimage import data

    images, labels = [], []
    for c, name in enumerate(TEXTURES):
        picture = getattr(data, name)()
        h, w = picture.shape[:2]
        for y in range(0, h - size + 1, size):
            for x in range(0, w - size + 1, size):
                images.append(np.ascontiguousarray(picture[y:y + size, x:x + size]))
                labels.append(c)
    return images, np.array(labels), list(TEXTURES)


def make_dataset(name: str):
    if name == "digits":
        return _digits(None)
    if name == "digits30":
        return _digits(30)
    if name == "faces":
        return _faces()
    if name == "patches":
        return _patches()
    if name == "textures":
        return _textures()
    raise SystemExit(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)}")


def held_out_split(labels: np.ndarray, split_seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train+validation rows, held-out rows), fixed by ``split_seed``: cnndesk's own split."""
    from cnndesk.core.data.split import split_indices

    return split_indices(labels, TEST_SHARE, split_seed)


def write_folders(name: str, base: Path, split_seed: int = SPLIT_SEED) -> tuple[Path, Path]:
    """Write the dataset as ``base/name/train/<class>/*.png`` and ``base/name/test/<class>/*.png``."""
    images, labels, classes = make_dataset(name)
    rest, test = held_out_split(labels, split_seed)
    out = base / f"{name}-split{split_seed}"
    for part, rows in (("train", rest), ("test", test)):
        for i in rows:
            d = out / part / classes[labels[i]]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[i]).save(d / f"{i:05d}.png")
    return out / "train", out / "test"


# ---------------------------------------------------------------------------
# training

def _config(name: str, seed: int):
    from cnndesk.core.data.dataset import DatasetConfig
    from cnndesk.core.data.images import Preprocessing

    size, color = FORMAT[name]
    # what the CLI builds from --image-size/--color/--seed with every other option at its default
    return DatasetConfig(Preprocessing((size, size), color), seed=seed)


def _accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    probs = np.asarray(model(x.astype(np.float32), training=False))
    return float((probs.argmax(1) == y).mean())


def _settings(epochs: int, seed: int, min_steps: int | None):
    """cnndesk's settings for one run: the app's minimum of steps unless ``min_steps`` is given."""
    from cnndesk.core.model.architecture import TrainingSettings

    settings = TrainingSettings(epochs=epochs, seed=seed)
    if min_steps is not None:
        settings.min_steps = min_steps
    return settings


def run_cnndesk(train_dir: Path, test_dir: Path, name: str, seed: int, epochs: int, min_steps: int | None = None) -> dict:
    from cnndesk.core.model.architecture import preset
    from cnndesk.core.data.dataset import load_dataset
    from cnndesk.core.training.fitting import train

    config = _config(name, seed)
    data = load_dataset(train_dir, config)
    test = load_dataset(test_dir, config.__class__(config.preprocessing, val_split=0.0))
    assert test.class_names == data.class_names
    t0 = time.perf_counter()
    result = train(data, preset("seed"), _settings(epochs, seed, min_steps))
    row = {"held_out": _accuracy(result.model, test.images, test.labels), "epochs_run": len(result.history),
           "kept_epoch": result.best_epoch, "seconds": time.perf_counter() - t0,
           "n_train": len(data.train_index), "n_val": len(data.val_index), "n_test": len(test.labels)}
    for key in ("stop_reason", "stop_message", "kept_message", "chance_message"):
        if hasattr(result, key):  # reported by the versions that say why they stopped
            row[key] = getattr(result, key)
    if not hasattr(result, "stop_reason"):
        row["stop_reason"] = "early stopping" if result.stopped_early else "all epochs"
    return row


def run_ensemble(train_dir: Path, test_dir: Path, name: str, seed: int, epochs: int, count: int,
                 min_steps: int | None = None) -> dict:
    """``train --repeats COUNT --keep ensemble`` with every other setting as ``run_cnndesk``'s."""
    from cnndesk.core.model.architecture import preset
    from cnndesk.core.data.dataset import load_dataset
    from cnndesk.core.training.progress import TrainingListener
    from cnndesk.core.training.repeats import train_repeats

    config = _config(name, seed)
    data = load_dataset(train_dir, config)
    test = load_dataset(test_dir, config.__class__(config.preprocessing, val_split=0.0))
    t0 = time.perf_counter()
    repeats = train_repeats(data, preset("seed"), _settings(epochs, seed, min_steps), config, count,
                            keep="ensemble", listener=TrainingListener())
    members = [_accuracy(m.result.model, test.images, test.labels) for m in repeats.members]
    return {"held_out": _accuracy(repeats.model, test.images, test.labels), "members_held_out": members,
            "seconds": time.perf_counter() - t0}


def run_plain(train_dir: Path, test_dir: Path, name: str, seed: int, epochs: int) -> dict:
    """The plain Keras script: the seed model, Adam, no callbacks, on cnndesk's training rows."""
    import keras

    from cnndesk.core.data.dataset import load_dataset

    config = _config(name, seed)
    data = load_dataset(train_dir, config)  # the same decoded images and the same 80/20 split
    test = load_dataset(test_dir, config.__class__(config.preprocessing, val_split=0.0))
    x, y = data.images[data.train_index], data.labels[data.train_index]
    xv, yv = data.images[data.val_index], data.labels[data.val_index]
    n = data.num_classes
    keras.utils.set_random_seed(seed)
    L = keras.layers
    model = keras.Sequential([
        keras.Input(data.preprocessing.input_shape),
        L.Rescaling(1 / 255),
        L.Conv2D(10, 3, activation="relu"), L.Conv2D(10, 3, activation="relu"), L.MaxPool2D(),
        L.Conv2D(10, 3, activation="relu"), L.Conv2D(10, 3, activation="relu"), L.MaxPool2D(),
        L.Flatten(), L.Dense(n, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(x.astype(np.float32), keras.utils.to_categorical(y, n), batch_size=32, epochs=epochs, shuffle=True,
              validation_data=(xv.astype(np.float32), keras.utils.to_categorical(yv, n)), verbose=0)
    return {"held_out": _accuracy(model, test.images, test.labels), "seconds": time.perf_counter() - t0}


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated training seeds")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--split-seeds", default=str(SPLIT_SEED),
                    help="comma-separated seeds of the held-out split; each adds a set of rows")
    ap.add_argument("--ensemble", type=int, default=0, metavar="N",
                    help="also train an ensemble of N models per seed (train --repeats N --keep ensemble)")
    ap.add_argument("--min-steps", type=int, default=None,
                    help="cnndesk's minimum of optimizer steps for a new model (default: the app's; 0 = off, "
                         "exactly --epochs, as before it existed)")
    ap.add_argument("--json", action="store_true", help="also print one JSON line per run")
    a = ap.parse_args()
    names = [n.strip() for n in a.datasets.split(",") if n.strip()]
    seeds = [int(s) for s in a.seeds.split(",")]
    for n in names:
        if n not in DATASETS:
            raise SystemExit(f"unknown dataset {n!r}; choose from {', '.join(DATASETS)}")

    base = Path(tempfile.mkdtemp(prefix="cnndesk-small-data-"))
    table = []
    ensembles = {}  # dataset -> the ensembles' rows, with --ensemble
    split_seeds = [int(s) for s in a.split_seeds.split(",")]
    for name in names:
        runs = []
        for split_seed in split_seeds:
            train_dir, test_dir = write_folders(name, base, split_seed)
            for seed in seeds:
                c = run_cnndesk(train_dir, test_dir, name, seed, a.epochs, a.min_steps)
                p = run_plain(train_dir, test_dir, name, seed, a.epochs)
                runs.append((c, p))
                if a.json:
                    print(json.dumps({"dataset": name, "split_seed": split_seed, "seed": seed, "cnndesk": c,
                                      "plain": p}), flush=True)
                print(f"{name} split {split_seed} seed {seed}: cnndesk {c['held_out']:.3f} (kept epoch "
                      f"{c['kept_epoch']} of {c['epochs_run']}, {c['stop_reason']}) plain {p['held_out']:.3f}",
                      file=sys.stderr, flush=True)
                if a.ensemble > 1:
                    e = run_ensemble(train_dir, test_dir, name, seed, a.epochs, a.ensemble, a.min_steps)
                    ensembles.setdefault(name, []).append(e)
                    print(f"{name} split {split_seed} seed {seed}: ensemble of {a.ensemble} {e['held_out']:.3f} "
                          f"(its models {' '.join(f'{v:.3f}' for v in e['members_held_out'])})",
                          file=sys.stderr, flush=True)
                    if a.json:
                        print(json.dumps({"dataset": name, "split_seed": split_seed, "seed": seed,
                                          "ensemble": e}), flush=True)
        table.append((name, runs))

    print()
    print("| dataset (train / validation / held-out) | cnndesk defaults: mean (lowest-highest) | spread "
          "| plain Keras: mean (lowest-highest) | spread | difference of means | goal met "
          "| cnndesk: epochs run, kept, early stops |")
    print("|---|---|---|---|---|---|---|---|")
    worst = None
    for name, runs in table:
        c0 = runs[0][0]
        size, color = FORMAT[name]
        cs = np.array([c["held_out"] for c, _ in runs])
        ps = np.array([p["held_out"] for _, p in runs])
        diff = cs.mean() - ps.mean()
        worst = diff if worst is None else min(worst, diff)
        early = sum(c["stop_reason"] == "early_stopping" for c, _ in runs)
        stops = (f"ran {' '.join(str(c['epochs_run']) for c, _ in runs)}; "
                 f"kept {' '.join(str(c['kept_epoch']) for c, _ in runs)}; stopped early in {early} of {len(runs)}")
        spread_c, spread_p = cs.max() - cs.min(), ps.max() - ps.min()
        goal = "yes" if spread_c <= 0.15 + 1e-9 and diff >= -0.03 - 1e-9 else "no"
        print(f"| {name}, {size} px {'grey' if color == 'grayscale' else 'colour'} "
              f"({c0['n_train']} / {c0['n_val']} / {c0['n_test']}) "
              f"| {cs.mean():.3f} ({cs.min():.3f}-{cs.max():.3f}) | {spread_c:.3f} "
              f"| {ps.mean():.3f} ({ps.min():.3f}-{ps.max():.3f}) | {spread_p:.3f} | {diff:+.3f} | {goal} | {stops} |")
    steps = "the app's minimum of steps" if a.min_steps is None else f"--min-steps {a.min_steps}"
    print(f"\nheld-out splits {','.join(map(str, split_seeds))} x training seeds {','.join(map(str, seeds))}, "
          f"{a.epochs} epochs ({steps} for cnndesk); mean (lowest-highest) held-out accuracy. "
          f"Worst difference cnndesk - plain: {worst:+.3f} (target: at least -0.03)")
    if ensembles:
        _print_ensembles(table, ensembles, a.ensemble)
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; load average at the end "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


def _print_ensembles(table, ensembles: dict, count: int) -> None:
    """The second table: the ensemble of ``count`` against one model and plain Keras, mean (lowest-highest)."""
    print()
    print(f"| dataset | cnndesk, one model | ensemble of {count} | plain Keras | ensemble - plain |")
    print("|---|---|---|---|---|")
    for name, runs in table:
        cs = np.array([c["held_out"] for c, _ in runs])
        es = np.array([e["held_out"] for e in ensembles[name]])
        ps = np.array([p["held_out"] for _, p in runs])
        print(f"| {name} | {cs.mean():.3f} ({cs.min():.3f}-{cs.max():.3f}) | {es.mean():.3f} "
              f"({es.min():.3f}-{es.max():.3f}) | {ps.mean():.3f} ({ps.min():.3f}-{ps.max():.3f}) "
              f"| {es.mean() - ps.mean():+.3f} |")
    print(f"spread (highest - lowest) over the seeds: one model, ensemble of {count}: "
          + "; ".join(f"{name} {np.ptp([c['held_out'] for c, _ in runs]):.3f}, "
                      f"{np.ptp([e['held_out'] for e in ensembles[name]]):.3f}" for name, runs in table))


if __name__ == "__main__":
    sys.exit(main())
