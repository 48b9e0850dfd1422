"""Likely-mislabelled images on real pictures with planted wrong labels: precision and recall of the first candidates.

Real pictures are written as class folders into a temporary folder, then 5 % of the
files (seeded, spread over the classes as they come) are moved into another class
folder, chosen at random among the others. cnndesk's own path then runs as the app
runs it (the Evaluation tab's "Likely mislabelled" with "Score training images too"):

  1. ``load_dataset`` (the default 20 % validation per class, copies kept together),
     ``train`` of the seed preset with the default settings (10 epochs, early stopping,
     keep-the-best) and the run's seed: the current model;
  2. the validation images scored by that model (``Inspector.chunked_probabilities``),
     the training images by ``out_of_fold_probabilities`` (3 retrains of the settings'
     epochs, as the panel's default), merged, ranked by ``LabelScores.doubts``;

and prints, for the first 10, 25 and 50 candidates and as many as were moved, the precision
(share of them that are moved files) and the recall (share of the moved files among them; at
most 10/25/50 of the planted number), for each seed and their mean.

Cases:
  digits  scikit-learn's 1,797 handwritten 8x8 digits (UCI), upscaled to 32 px PNGs
          (bilinear), read at 32 px grey as ``small_data.py`` trains them; 90 moved.
  tiles   the six scikit-image photos of ``copies_real.py`` cut into non-overlapping
          tiles (``--tile``, 48 px: 554 tiles), which photo a tile is from, read at 48 px
          RGB; 28 moved.

Needs the ``bench`` extra (scikit-learn, scikit-image) and TensorFlow.

Usage:
    .venv/bin/python benchmarks/mislabel_real.py [--case digits,tiles] [--seeds 1,2,3] [--share 0.05]
        [--folds 3] [--retrain-epochs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE), str(HERE.parent / "tests")]

import numpy as np  # noqa: E402

from copies_real import photo_tiles, write_digits  # noqa: E402
from copies_scale import cpu  # noqa: E402

TOPS = (10, 25, 50)
#: image size and colour mode each case is read at
FORMAT = {"digits": (32, "grayscale"), "tiles": (48, "rgb")}


def write_case(name: str, root: Path, tile: int) -> None:
    if name == "digits":
        write_digits(root, side=32)
    elif name == "tiles":
        photo_tiles(root, tile)
    else:
        raise SystemExit(f"unknown case {name!r}; choose from {', '.join(FORMAT)}")


def plant_wrong_labels(root: Path, share: float, seed: int) -> set[str]:
    """Move ``share`` of the files into another class folder (seeded); the moved files' new paths."""
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = sorted(f for c in classes for f in (root / c).iterdir())
    moved = set()
    for k in rng.choice(len(files), int(round(share * len(files))), replace=False):
        f = files[k]
        others = [c for c in classes if c != f.parent.name]
        target = root / others[int(rng.integers(len(others)))] / f"moved_{f.name}"
        shutil.move(f, target)
        moved.add(str(target))
    return moved


def precision_recall(doubts, paths, moved: set[str], top: int) -> tuple[float, float]:
    named = {paths[d.row] for d in doubts[:top]}
    hits = len(named & moved)
    return (hits / len(named) if named else 1.0), hits / len(moved)


def run(name: str, root: Path, moved: set[str], seed: int, folds: int, retrain_epochs: int | None,
        save: Path | None = None) -> dict:
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.model.inspection import Inspector
    from cnndesk.core.quality.label_scores import LabelScores, out_of_fold_probabilities, VALIDATION
    from cnndesk.core.training.fitting import train

    size, color = FORMAT[name]
    data = load_dataset(root, DatasetConfig(Preprocessing((size, size), color), seed=seed))
    settings = TrainingSettings(seed=seed)
    t = time.perf_counter()
    result = train(data, preset("seed"), settings)
    trained = time.perf_counter() - t
    inspector = Inspector(result.model, data.class_names, data.preprocessing)
    probs = inspector.chunked_probabilities(data.rows(data.val_index))
    scores = LabelScores(np.asarray(data.val_index), probs, np.full(len(data.val_index), VALIDATION, object))
    t = time.perf_counter()
    kfold = out_of_fold_probabilities(data, preset("seed"), settings, folds, retrain_epochs)
    retrains = time.perf_counter() - t
    scores = scores.merged(kfold)
    doubts = scores.doubts(data.labels)
    moved_val = sum(data.paths[r] in moved for r in data.val_index)
    held_out = kfold.probabilities.argmax(1) == data.labels[kfold.rows]
    row = {"seed": seed, "images": len(data.labels), "val_accuracy": result.final_val_accuracy,
           "kfold_accuracy": float(held_out.mean()), "epochs_run": len(result.history),
           "candidates": len(doubts), "moved": len(moved), "moved_in_val": moved_val,
           "seconds": (trained, retrains)}
    for top in TOPS:
        row[top] = precision_recall(doubts, data.paths, moved, top)
    row["all"] = precision_recall(doubts, data.paths, moved, len(moved))
    if save is not None:  # the scores, to try other rankings on them without training again
        save.mkdir(parents=True, exist_ok=True)
        np.savez(save / f"{name}-{seed}.npz", rows=scores.rows, probabilities=scores.probabilities,
                 scored_by=scores.scored_by.astype(str), labels=data.labels,
                 moved=np.array([p in moved for p in data.paths]))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="digits,tiles", help="comma-separated: " + ", ".join(FORMAT))
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated: the planted noise, split and training")
    parser.add_argument("--share", type=float, default=0.05, help="share of the files moved to a wrong class")
    parser.add_argument("--folds", type=int, default=3, help="retrains for the training images (the panel's: 3)")
    parser.add_argument("--retrain-epochs", type=int, default=None,
                        help="epochs of each retrain (the app's: the training settings' epochs, 10)")
    parser.add_argument("--save", type=Path, help="a folder to write each run's scores into (npz)")
    parser.add_argument("--tile", type=int, default=48, help="side of the photo tiles in px")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"CPU: {cpu()}; NumPy {np.__version__}")
    for name in args.case.split(","):
        rows = []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp) / name
                write_case(name, root, args.tile)
                moved = plant_wrong_labels(root, args.share, seed)
                row = run(name, root, moved, seed, args.folds, args.retrain_epochs, args.save)
            rows.append(row)
            print(f"{name} seed {seed}: {row['images']} images, {row['moved']} moved ({row['moved_in_val']} in "
                  f"validation); model {row['epochs_run']} epochs, validation accuracy {row['val_accuracy']:.3f}; "
                  f"retrains' held-out accuracy {row['kfold_accuracy']:.3f}; {row['candidates']} candidates; "
                  + "; ".join(f"first {t if t != 'all' else len(moved)}: precision {row[t][0]:.2f} recall "
                              f"{row[t][1]:.2f}" for t in TOPS + ("all",))
                  + f" ({row['seconds'][0]:.0f} s + {row['seconds'][1]:.0f} s)", flush=True)
        size, color = FORMAT[name]
        print(f"\n{name} ({rows[0]['images']} images at {size} px {color}, {rows[0]['moved']} moved to a wrong "
              f"class), mean over seeds {','.join(map(str, seeds))}:")
        print("| first | precision | recall |")
        print("|---|---|---|")
        for top in TOPS + ("all",):
            p = [r[top][0] for r in rows]
            rc = [r[top][1] for r in rows]
            print(f"| {top if top != 'all' else rows[0]['moved']} | {np.mean(p):.2f} ({min(p):.2f}-{max(p):.2f}) | {np.mean(rc):.2f} "
                  f"({min(rc):.2f}-{max(rc):.2f}) |")
        print(f"candidates {np.mean([r['candidates'] for r in rows]):.0f}; validation accuracy "
              f"{np.mean([r['val_accuracy'] for r in rows]):.3f}; retrains' held-out accuracy "
              f"{np.mean([r['kfold_accuracy'] for r in rows]):.3f}\n", flush=True)


if __name__ == "__main__":
    main()
