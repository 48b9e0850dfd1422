"""How well the temperature fitted on the validation split calibrates held-out real images, small folders included.

Trains the seed preset at the CLI's defaults (``small_data.py``'s settings:
at least 300 optimizer steps) on small real folders, with several seeds, and
keeps each model's logits on its validation split and on held-out images
(``core.work.trust.ModelHeads``: the scores the softmax is applied to; for an
ensemble the logarithm of its averaged probabilities). Then, for each way of
choosing the temperature, it prints the held-out expected calibration error
and log-loss, mean over the seeds:

- ``none``: T = 1, the probabilities as the model gives them;
- ``plain``: the T that minimises the validation log-loss (Guo et al. 2017);
- ``map m``: the most probable T under a prior on log T centred at 0 (T = 1)
  worth ``m`` validation images (``core.model.calibration.fit_temperature``'s
  ``prior_images``);
- ``cnndesk``: what the app keeps (``calibration_report``): the MAP of
  ``PRIOR_IMAGES``, and T = 1 under ``MIN_IMAGES`` validation images.

Folders (train+validation / held-out): ``patches`` (114 / 30 crops of six
photos, plus 360 new crops of the same photos as a larger held-out set),
``faces`` (160 / 40), ``digits30`` (240 / 60), ``digits`` (1438 / 359), ``tiny`` (36 crops of the six
photos, 6 a class: 7 validation images; held out: the 360 new crops), and
``ensemble``: Train ×3 kept as an ensemble on ``patches``.

The logits are saved in ``--cache`` so that ``--only-report`` compares ways of
fitting without training again. About 20-40 minutes on 2 busy cores.

    .venv/bin/python benchmarks/calibration_fit.py [--folders patches,faces,digits30,tiny,ensemble]
        [--seeds 1,2,3] [--cache /tmp/cnndesk-calibration] [--only-report]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from small_data import FORMAT, cpu_name, photo_patches, write_folders  # noqa: E402

FOLDERS = ("patches", "faces", "digits30", "digits", "tiny", "ensemble")
#: the datasets each folder is cut from
SOURCE = {"patches": "patches", "faces": "faces", "digits30": "digits30", "digits": "digits", "tiny": "patches",
          "ensemble": "patches"}
#: new crops of the six photos per class, a larger held-out set for the photo folders
EXTRA_PER_CLASS = 60
TINY_PER_CLASS = 6
PRIORS = (0, 5, 10, 20, 40, 80)


def _write(images, labels, classes, folder: Path) -> Path:
    for i, (im, y) in enumerate(zip(images, labels)):
        d = folder / classes[y]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.asarray(im)).save(d / f"{i:05d}.png")
    return folder


def folders(name: str, base: Path) -> tuple[Path, list[Path]]:
    """(train folder, held-out folders) of one of ``FOLDERS``."""
    train_dir, test_dir = write_folders(SOURCE[name], base)
    held = [test_dir]
    if SOURCE[name] == "patches":
        extra = base / "patches-new-crops"
        if not extra.exists():
            _write(*photo_patches(EXTRA_PER_CLASS, crop_seed=99), extra)
        held = [test_dir, extra] if name != "tiny" else [extra]
    if name == "tiny":
        tiny = base / "patches-tiny"
        if not tiny.exists():
            for d in sorted(p for p in train_dir.iterdir() if p.is_dir()):
                (tiny / d.name).mkdir(parents=True)
                for f in sorted(d.glob("*.png"))[:TINY_PER_CLASS]:
                    shutil.copy(f, tiny / d.name / f.name)
        train_dir = tiny
    return train_dir, held


def collect(name: str, seed: int, base: Path) -> dict:
    """Train one model (or Train ×3 kept as an ensemble) and give its validation and held-out logits and labels."""
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.model.architecture import TrainingSettings, preset
    from cnndesk.core.training.fitting import train
    from cnndesk.core.training.progress import TrainingListener
    from cnndesk.core.training.repeats import train_repeats
    from cnndesk.core.work.trust import ModelHeads

    train_dir, held = folders(name, base)
    size, color = FORMAT[SOURCE[name]]
    config = DatasetConfig(Preprocessing((size, size), color), seed=seed)
    data = load_dataset(train_dir, config)
    t0 = time.perf_counter()
    if name == "ensemble":
        model = train_repeats(data, preset("seed"), TrainingSettings(seed=seed), config, 3, keep="ensemble",
                              listener=TrainingListener()).model
    else:
        model = train(data, preset("seed"), TrainingSettings(seed=seed)).model
    seconds = time.perf_counter() - t0
    heads = ModelHeads(model, data.preprocessing)
    val = np.asarray(data.val_index)
    out = {"val_logits": heads(data.rows(val)[0:len(val)])[1],
           "val_labels": np.asarray(data.labels)[data.val_index], "seconds": seconds}
    logits, labels = [], []
    for folder in held:
        test = load_dataset(folder, DatasetConfig(data.preprocessing, val_split=0.0))
        assert test.class_names == data.class_names
        logits.append(heads(test.rows(np.arange(len(test.labels)))[0:len(test.labels)])[1])
        labels.append(np.asarray(test.labels))
    out["held_logits"], out["held_labels"] = np.concatenate(logits), np.concatenate(labels)
    return out


def report(cache: Path, names, seeds) -> None:
    from cnndesk.core.model.calibration import (calibration_report, expected_calibration_error, fit_temperature,
                                                log_loss, MIN_IMAGES, PRIOR_IMAGES, softmax)

    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print("held-out ECE / log-loss, mean over seeds " + ",".join(map(str, seeds)) + " (T per seed in brackets); "
          f"cnndesk: the MAP of a prior worth {PRIOR_IMAGES} images, none under {MIN_IMAGES} validation images")
    for name in names:
        runs = [np.load(cache / f"{name}-{s}.npz") for s in seeds if (cache / f"{name}-{s}.npz").exists()]
        if not runs:
            continue
        r0 = runs[0]
        print(f"\n## {name}: {len(r0['val_labels'])} validation images, {len(r0['held_labels'])} held out, "
              f"{len(runs)} seeds; held-out accuracy "
              + ", ".join(f"{(r['held_logits'].argmax(1) == r['held_labels']).mean():.3f}" for r in runs))
        ways = [("none", None)] + [("plain" if m == 0 else f"map {m}", m) for m in PRIORS] + [("cnndesk", "app")]
        for label, m in ways:
            eces, losses, ts = [], [], []
            for r in runs:
                if m == "app":  # what the app keeps: the MAP of PRIOR_IMAGES, none under MIN_IMAGES
                    t = calibration_report(r["val_logits"], r["val_labels"])["temperature"]
                else:
                    t = 1.0 if m is None else fit_temperature(r["val_logits"], r["val_labels"], prior_images=m)
                eces.append(expected_calibration_error(softmax(r["held_logits"], t), r["held_labels"]))
                losses.append(log_loss(r["held_logits"], r["held_labels"], t))
                ts.append(t)
            print(f"{label:>8}: ECE {np.mean(eces):6.1%} (" + " ".join(f"{e:.1%}" for e in eces)
                  + f")  log-loss {np.mean(losses):.3f}  T [" + " ".join(f"{t:.2f}" for t in ts) + "]")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folders", default=",".join(FOLDERS))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "cnndesk-calibration"))
    ap.add_argument("--only-report", action="store_true")
    a = ap.parse_args()
    names, seeds = a.folders.split(","), [int(s) for s in a.seeds.split(",")]
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if not a.only_report:
        base = Path(tempfile.gettempdir()) / "cnndesk-calibration-folders"
        for name in names:
            for seed in seeds:
                path = cache / f"{name}-{seed}.npz"
                if path.exists():
                    continue
                out = collect(name, seed, base)
                np.savez(path, **out)
                print(f"{name} seed {seed}: trained in {out['seconds']:.0f} s", file=sys.stderr, flush=True)
    report(cache, names, seeds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
