"""Training throughput and peak memory: cnndesk's core against plain Keras scripts.

Trains the "seed" preset on the same folder of JPEGs (10 classes of coloured
shapes/patterns, 224x224, generated once and reused) with the same epochs,
batch size 32, Adam 1e-3 and an 80/20 split, three ways, each in its own
process so that peak memory is per variant:

  cnndesk  cnndesk.core.dataset.load_dataset (decode once into a uint8 cache)
           + cnndesk.core.training.train
  naive    keras.utils.image_dataset_from_directory(validation_split=0.2,
           subset="both") + model.fit, as a beginner writes it
  tuned    the same plus the Keras/TF guide's .cache().prefetch(tf.data.AUTOTUNE)

Images/s of an epoch = training images / epoch wall time (validation
included), the definition cnndesk's own reports use. "epochs 2+" is the
training images of epochs 2..N over their total time.

Usage:
    .venv/bin/python benchmarks/train_throughput.py [--epochs 3] [--per-class 200]
        [--data DIR] [--variants cnndesk,naive,tuned] [--batch-size 32] [--image-size 224]

A full default run (3 variants x 3 epochs x 1600 training images) takes
about 6-8 minutes on 2 CPU cores; the first run also writes the 2000 JPEGs
(~20 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

VARIANTS = ("cnndesk", "naive", "tuned")
SEED = 1337
VAL_SPLIT = 0.2


# ---------------------------------------------------------------------------
# measurement helpers (children)

def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM), in bytes."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def current_rss_bytes() -> int:
    """Resident set size now (VmRSS), in bytes; 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _epoch_timer(n_train: int):
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            s = time.perf_counter() - self._t
            self.rows.append({"epoch": epoch + 1, "seconds": s, "images_per_s": n_train / s,
                              "val_accuracy": float((logs or {}).get("val_accuracy", float("nan")))})
            print(f"    epoch {epoch + 1}: {n_train / s:7.1f} images/s ({s:.1f} s)", flush=True)

    return EpochTimer()


def run_cnndesk(data: Path, epochs: int, batch_size: int, size: int) -> dict:
    from cnndesk.core.architecture import TrainingSettings, preset
    from cnndesk.core.dataset import DatasetConfig, Preprocessing, load_dataset
    from cnndesk.core.training import TrainingListener, train

    t0 = time.perf_counter()
    loaded = load_dataset(data, DatasetConfig(Preprocessing((size, size), "rgb"), val_split=VAL_SPLIT, seed=SEED))
    load_s = time.perf_counter() - t0
    rss_after_load = peak_rss_bytes()
    print(f"    load_dataset: {len(loaded.labels)} images decoded in {load_s:.1f} s "
          f"({len(loaded.labels) / load_s:.0f} images/s)", flush=True)

    rows = []

    class Collect(TrainingListener):
        def on_epoch(self, r):
            rows.append({"epoch": r.epoch, "seconds": r.seconds, "images_per_s": r.images_per_s,
                         "val_accuracy": r.val_accuracy})
            print(f"    epoch {r.epoch}: {r.images_per_s:7.1f} images/s ({r.seconds:.1f} s)", flush=True)

    settings = TrainingSettings(epochs=epochs, batch_size=batch_size, patience=0, seed=SEED)
    t1 = time.perf_counter()
    train(loaded, preset("seed"), settings, listener=Collect())
    fit_s = time.perf_counter() - t1
    return {"load_s": load_s, "fit_s": fit_s, "epochs": rows, "n_train": int(len(loaded.train_index)),
            "n_val": int(len(loaded.val_index)), "peak_rss_after_load": rss_after_load,
            "cache_bytes": int(loaded.images.nbytes)}


def run_plain(data: Path, epochs: int, batch_size: int, size: int, tuned: bool) -> dict:
    """The beginner's script (with the guide's cache/prefetch when ``tuned``)."""
    import keras
    import tensorflow as tf

    from cnndesk.core.architecture import build_model, preset

    keras.utils.set_random_seed(SEED)
    t0 = time.perf_counter()
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        data, validation_split=VAL_SPLIT, subset="both", seed=SEED, image_size=(size, size),
        batch_size=batch_size, label_mode="categorical", verbose=False)
    n_train, n_val = len(train_ds.file_paths), len(val_ds.file_paths)
    if tuned:
        train_ds = train_ds.cache().prefetch(tf.data.AUTOTUNE)
        val_ds = val_ds.cache().prefetch(tf.data.AUTOTUNE)
    load_s = time.perf_counter() - t0
    model = build_model(preset("seed"), (size, size, 3), n_classes(data))  # the same Sequential
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    timer = _epoch_timer(n_train)
    t1 = time.perf_counter()
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[timer], verbose=0)
    fit_s = time.perf_counter() - t1
    return {"load_s": load_s, "fit_s": fit_s, "epochs": timer.rows, "n_train": n_train, "n_val": n_val}


def n_classes(data: Path) -> int:
    return sum(1 for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))


def child(args) -> None:
    t0 = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow  # noqa: F401  (import time is counted in total_s only)

    import_s = time.perf_counter() - t0
    rss_after_import = current_rss_bytes()
    data = Path(args.data)
    if args.child == "cnndesk":
        result = run_cnndesk(data, args.epochs, args.batch_size, args.image_size)
    else:
        result = run_plain(data, args.epochs, args.batch_size, args.image_size, tuned=args.child == "tuned")
    result.update(variant=args.child, import_s=import_s, total_s=time.perf_counter() - t0,
                  peak_rss=peak_rss_bytes(), rss_after_import=rss_after_import)
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------------
# parent: run each variant in its own process, then compare

def epochs_after_first(r: dict) -> float | None:
    rest = r["epochs"][1:]
    if not rest:
        return None
    return r["n_train"] * len(rest) / sum(e["seconds"] for e in rest)


def fmt_ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:5.2f}x" if a and b else "   n/a"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="dataset folder (written there if missing; default: a folder in the temp dir)")
    p.add_argument("--per-class", type=int, default=200, help="images per class (10 classes). Default 200")
    p.add_argument("--epochs", type=int, default=3, help="epochs per variant. Default 3")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--json", help="also write all results to this JSON file")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0

    from _data import ensure_dataset

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        p.error(f"unknown variant(s) {', '.join(sorted(unknown))}")
    t0 = time.perf_counter()
    data = ensure_dataset(args.data, args.per_class, args.image_size)
    print(f"dataset: {data} (10 classes x {args.per_class} JPEGs, {args.image_size}x{args.image_size}), "
          f"ready in {time.perf_counter() - t0:.1f} s")
    print(f"settings: seed preset, {args.epochs} epochs, batch {args.batch_size}, Adam 1e-3, "
          f"validation split {VAL_SPLIT}, {os.cpu_count()} CPU cores\n")

    results: dict[str, dict] = {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory() as tmp:
        for v in variants:
            print(f"[{v}]", flush=True)
            out = Path(tmp) / f"{v}.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", v, "--result", str(out),
                   "--data", str(data), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                   "--image-size", str(args.image_size)]
            done = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True)
            if done.returncode != 0 or not out.exists():
                print(f"  {v} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
                continue
            results[v] = json.loads(out.read_text())
            r = results[v]
            print(f"    fit {r['fit_s']:.1f} s, process total {r['total_s']:.1f} s, peak RSS {mib(r['peak_rss'])}\n",
                  flush=True)

    if not results:
        return 1
    n_images = 10 * args.per_class
    cache = n_images * args.image_size * args.image_size * 3
    print("=" * 100)
    print("per-epoch training throughput (images/s; epoch time includes validation)")
    for v, r in results.items():
        eps = "  ".join(f"e{e['epoch']}: {e['images_per_s']:6.1f}" for e in r["epochs"])
        print(f"  {v:8s} {eps}")
    print()
    head = (f"{'variant':8s} {'load s':>7s} {'epoch 1':>9s} {'epochs 2+':>10s} {'e1 incl. load':>14s} "
            f"{'fit s':>7s} {'process s':>10s} {'peak RSS':>10s} {'above TF':>10s} {'val acc':>8s}")
    print(head)
    print("-" * len(head))
    for v, r in results.items():
        e1 = r["epochs"][0]["images_per_s"] if r["epochs"] else None
        later = epochs_after_first(r)
        e1_load = r["n_train"] / (r["epochs"][0]["seconds"] + r["load_s"]) if r["epochs"] else None
        acc = r["epochs"][-1]["val_accuracy"] if r["epochs"] else None
        print(f"{v:8s} {r['load_s']:7.1f} {e1 or 0:9.1f} {later or 0:10.1f} {e1_load or 0:14.1f} "
              f"{r['fit_s']:7.1f} {r['total_s']:10.1f} {mib(r['peak_rss']):>10s} "
              f"{mib(r['peak_rss'] - r['rss_after_import']):>10s} {acc if acc is not None else float('nan'):8.3f}")
    print("(above TF = peak RSS minus the RSS right after importing TensorFlow, before any data)")
    print(f"\nuint8 cache of all images: {n_images} x {args.image_size} x {args.image_size} x 3 = {mib(cache)}"
          + (f"; peak RSS per variant is shown above (cnndesk after load_dataset: "
             f"{mib(results['cnndesk']['peak_rss_after_load'])})" if "cnndesk" in results else ""))
    if "cnndesk" in results:
        c = results["cnndesk"]
        c1, c2 = c["epochs"][0]["images_per_s"], epochs_after_first(c)
        c1_load = c["n_train"] / (c["epochs"][0]["seconds"] + c["load_s"])
        print("\nratios (images/s, higher = cnndesk faster):")
        for other in ("naive", "tuned"):
            if other not in results:
                continue
            o = results[other]
            o1, o2 = o["epochs"][0]["images_per_s"], epochs_after_first(o)
            print(f"  cnndesk/{other:5s}  epoch 1: {fmt_ratio(c1, o1)} (with cnndesk's load time counted in epoch 1: "
                  f"{fmt_ratio(c1_load, o1)})   epochs 2+: {fmt_ratio(c2, o2)}   "
                  f"peak RSS: {c['peak_rss'] / o['peak_rss']:.2f}x")
        print("targets: cnndesk epochs 2+ >= tuned (ratio >= 1.00x) and well ahead of naive")
        if "tuned" in results and c2 and epochs_after_first(results["tuned"]):
            ok = c2 >= epochs_after_first(results["tuned"])
            print(f"  cnndesk vs tuned, epochs 2+: {'MET' if ok else 'NOT MET'}")
        if "naive" in results and c2 and epochs_after_first(results["naive"]):
            print(f"  cnndesk vs naive, epochs 2+: {c2 / epochs_after_first(results['naive']):.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
