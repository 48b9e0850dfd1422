"""Training throughput and peak memory: cnndesk's core against plain Keras scripts.

Trains the "seed" preset on the same folder of JPEGs (10 classes of coloured
shapes/patterns, 224x224, generated once and reused) with the same epochs,
batch size 32, Adam 1e-3 and an 80/20 split, three ways, each in its own
process so that peak memory is per variant:

  cnndesk  cnndesk.core.data.dataset.load_dataset (decode once into a uint8 cache)
           + cnndesk.core.training.fitting.train
  naive    keras.utils.image_dataset_from_directory(validation_split=0.2,
           subset="both") + model.fit, as a beginner writes it
  tuned    the same plus the Keras/TF guide's .cache().prefetch(tf.data.AUTOTUNE)

Images/s of an epoch = training images / epoch wall time (validation
included), the definition cnndesk's own reports use; "epochs 2+" is the
training images of epochs 2..N over their total time. Because other
processes on a small shared machine distort wall time, each process also
records its own CPU time per epoch (images per CPU-second) and how busy the
rest of the machine was while it trained ("others" column: share of all cores
used by other processes); with --repeat N every variant runs N times in
rotating order and the ratios use each variant's best run.

Usage:
    .venv/bin/python benchmarks/train_throughput.py [--epochs 3] [--per-class 200] [--repeat 1]
        [--data DIR] [--variants cnndesk,naive,tuned] [--batch-size 32] [--image-size 224]
        [--source-size 224]

One default run (3 variants x 3 epochs x 1600 training images at 224x224)
takes about 3-4 minutes on 2 idle CPU cores (--repeat 2: 7-8 minutes); the
first run also writes the 2000 JPEGs (~5 s).
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

def _proc_status(key: str) -> int:
    """A VmXXX line of /proc/self/status in bytes; 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM), in bytes."""
    peak = _proc_status("VmHWM")
    if peak:
        return peak
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _system_busy_seconds() -> float | None:
    """CPU-seconds all processes have spent not idle since boot (from /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Clock:
    """Wall time, this process's CPU time and the machine's busy time, from ``start`` on."""

    def start(self):
        self.wall0, self.cpu0, self.busy0 = time.perf_counter(), time.process_time(), _system_busy_seconds()
        self.last_cpu = self.cpu0
        return self

    def cpu_lap(self) -> float:
        now = time.process_time()
        lap, self.last_cpu = now - self.last_cpu, now
        return lap

    def others_share(self) -> float | None:
        """Share of all cores used by other processes since ``start``."""
        busy = _system_busy_seconds()
        if busy is None or self.busy0 is None:
            return None
        wall = time.perf_counter() - self.wall0
        own = time.process_time() - self.cpu0
        return max(0.0, (busy - self.busy0 - own) / (wall * (os.cpu_count() or 1)))


def _row(epoch: int, seconds: float, cpu: float, n_train: int, val_accuracy) -> dict:
    print(f"    epoch {epoch}: {n_train / seconds:7.1f} images/s ({seconds:.1f} s wall, {cpu:.1f} s CPU)", flush=True)
    return {"epoch": epoch, "seconds": seconds, "cpu_s": cpu, "images_per_s": n_train / seconds,
            "val_accuracy": None if val_accuracy is None else float(val_accuracy)}


def run_cnndesk(data: Path, epochs: int, batch_size: int, size: int) -> dict:
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.training.progress import TrainingListener
    from cnndesk.core.training.fitting import train

    t0, c0 = time.perf_counter(), time.process_time()
    loaded = load_dataset(data, DatasetConfig(Preprocessing((size, size), "rgb"), val_split=VAL_SPLIT, seed=SEED))
    load_s, load_cpu = time.perf_counter() - t0, time.process_time() - c0
    rss_after_load = peak_rss_bytes()
    print(f"    load_dataset: {len(loaded.labels)} images decoded in {load_s:.1f} s "
          f"({len(loaded.labels) / load_s:.0f} images/s)", flush=True)
    n_train = int(len(loaded.train_index))
    rows = []
    clock = Clock()

    class Collect(TrainingListener):
        def on_epoch(self, r):
            # r.images_per_s is cnndesk's own figure: n_train / r.seconds
            rows.append(_row(r.epoch, r.seconds, clock.cpu_lap(), n_train, r.val_accuracy))

    settings = TrainingSettings(epochs=epochs, batch_size=batch_size, patience=0, seed=SEED)
    clock.start()
    train(loaded, preset("seed"), settings, listener=Collect())
    return {"load_s": load_s, "load_cpu_s": load_cpu, "fit_s": time.perf_counter() - clock.wall0,
            "others": clock.others_share(), "epochs": rows, "n_train": n_train,
            "n_val": int(len(loaded.val_index)), "peak_rss_after_load": rss_after_load}


def run_plain(data: Path, epochs: int, batch_size: int, size: int, tuned: bool) -> dict:
    """The beginner's script (with the guide's cache/prefetch when ``tuned``)."""
    import keras
    import tensorflow as tf

    from cnndesk.core.model.architecture import build_model, preset

    keras.utils.set_random_seed(SEED)
    t0, c0 = time.perf_counter(), time.process_time()
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        data, validation_split=VAL_SPLIT, subset="both", seed=SEED, image_size=(size, size),
        batch_size=batch_size, label_mode="categorical", verbose=False)
    n_train, n_val = len(train_ds.file_paths), len(val_ds.file_paths)
    if tuned:
        train_ds = train_ds.cache().prefetch(tf.data.AUTOTUNE)
        val_ds = val_ds.cache().prefetch(tf.data.AUTOTUNE)
    load_s, load_cpu = time.perf_counter() - t0, time.process_time() - c0
    model = build_model(preset("seed"), (size, size, 3), n_classes(data))  # the same Sequential
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    clock = Clock()

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append(_row(epoch + 1, time.perf_counter() - self._t, clock.cpu_lap(), n_train,
                                  (logs or {}).get("val_accuracy")))

    timer = EpochTimer()
    clock.start()
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=[timer], verbose=0)
    return {"load_s": load_s, "load_cpu_s": load_cpu, "fit_s": time.perf_counter() - clock.wall0,
            "others": clock.others_share(), "epochs": timer.rows, "n_train": n_train, "n_val": n_val}


def n_classes(data: Path) -> int:
    return sum(1 for p in data.iterdir() if p.is_dir() and not p.name.startswith("."))


def child(args) -> None:
    t0 = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.child == "cnndesk":
        from cnndesk.core.cpu_kernels import use_onednn_kernels

        use_onednn_kernels()  # as cnndesk's app and CLI start: before TensorFlow is imported
    import tensorflow  # noqa: F401  (import time is counted in total_s only)

    import_s = time.perf_counter() - t0
    rss_after_import = _proc_status("VmRSS")
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

def later_rate(r: dict, key: str = "seconds") -> float | None:
    """Training images per second (wall, or per CPU-second with key="cpu_s") over epochs 2+."""
    rest = r["epochs"][1:]
    if not rest:
        return None
    return r["n_train"] * len(rest) / sum(e[key] for e in rest)


def first_rate(r: dict, key: str = "seconds", with_load: bool = False) -> float:
    e = r["epochs"][0]
    extra = (r["load_s"] if key == "seconds" else r["load_cpu_s"]) if with_load else 0.0
    return r["n_train"] / (e[key] + extra)


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:5.2f}x" if a and b else "  n/a"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="dataset folder (written there if missing; default: a folder in the temp dir)")
    p.add_argument("--per-class", type=int, default=200, help="images per class (10 classes). Default 200")
    p.add_argument("--epochs", type=int, default=3, help="epochs per variant. Default 3")
    p.add_argument("--repeat", type=int, default=1, help="runs per variant, rotating the order; best run counts")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224, help="training image size. Default 224")
    p.add_argument("--source-size", type=int, help="size of the JPEG files (default: --image-size); larger, "
                   "like camera photos, makes every variant resize and the plain ones decode more each epoch")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of " + ",".join(VARIANTS))
    p.add_argument("--json", help="also write all results to this JSON file")
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0

    from _data import CLASSES, ensure_dataset

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants:
        p.error(f"choose variants from {', '.join(VARIANTS)}")
    if args.epochs < 1 or args.repeat < 1 or args.per_class < 5:
        p.error("--epochs and --repeat must be at least 1, --per-class at least 5")
    t_all = time.perf_counter()
    source = args.source_size or args.image_size
    data = ensure_dataset(args.data, args.per_class, source)
    print(f"dataset: {data} ({len(CLASSES)} classes x {args.per_class} JPEGs, {source}x{source}), "
          f"ready in {time.perf_counter() - t_all:.1f} s")
    print(f"settings: seed preset at {args.image_size}x{args.image_size} RGB, {args.epochs} epochs, "
          f"batch {args.batch_size}, Adam 1e-3, validation split "
          f"{VAL_SPLIT}, {os.cpu_count()} CPU cores, {args.repeat} run(s) per variant\n")

    runs: dict[str, list[dict]] = {v: [] for v in variants}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeat):
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for v in order:
                print(f"[{v}, run {rep + 1}]", flush=True)
                out = Path(tmp) / f"{v}-{rep}.json"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", v, "--result", str(out),
                       "--data", str(data), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                       "--image-size", str(args.image_size)]
                done = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True)
                if done.returncode != 0 or not out.exists():
                    print(f"  {v} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
                    continue
                r = json.loads(out.read_text())
                runs[v].append(r)
                print(f"    fit {r['fit_s']:.1f} s, process {r['total_s']:.1f} s, peak RSS {mib(r['peak_rss'])}, "
                      f"other processes used {pct(r['others'])} of the CPU meanwhile\n", flush=True)

    best = {v: max(rs, key=lambda r: later_rate(r) or first_rate(r)) for v, rs in runs.items() if rs}
    if not best:
        return 1
    n_images = len(CLASSES) * args.per_class
    cache = n_images * args.image_size * args.image_size * 3
    print("=" * 112)
    print("per-epoch training throughput, images/s (wall; epoch time includes validation)")
    for v, rs in runs.items():
        for i, r in enumerate(rs):
            eps = "  ".join(f"e{e['epoch']}: {e['images_per_s']:6.1f}" for e in r["epochs"])
            print(f"  {v:8s} run {i + 1}: {eps}   (others used {pct(r['others'])} of the CPU)")
    print(f"\nsummary ({'best of ' + str(args.repeat) + ' runs by epochs 2+' if args.repeat > 1 else 'one run'})")
    head = (f"{'variant':8s} {'load s':>6s} {'epoch 1':>8s} {'e1+load':>8s} {'epochs 2+':>9s} {'2+ /CPU-s':>10s} "
            f"{'fit s':>6s} {'process s':>9s} {'peak RSS':>10s} {'above TF':>10s} {'val acc':>7s} {'others':>6s}")
    print(head)
    print("-" * len(head))
    for v, r in best.items():
        acc = r["epochs"][-1]["val_accuracy"]
        print(f"{v:8s} {r['load_s']:6.1f} {first_rate(r):8.1f} {first_rate(r, with_load=True):8.1f} "
              f"{later_rate(r) or 0:9.1f} {later_rate(r, 'cpu_s') or 0:10.1f} {r['fit_s']:6.1f} {r['total_s']:9.1f} "
              f"{mib(r['peak_rss']):>10s} {mib(r['peak_rss'] - r['rss_after_import']):>10s} "
              f"{acc if acc is not None else float('nan'):7.3f} {pct(r['others']):>6s}")
    print("  e1+load: epoch 1 with the load/decode step counted in it; 2+ /CPU-s: images per CPU-second of this\n"
          "  process (robust to other load); above TF: peak RSS minus RSS right after importing TensorFlow;\n"
          "  others: share of all cores used by other processes during fit (high = wall figures disturbed)")
    print(f"\nuint8 cache of all images: {n_images} x {args.image_size} x {args.image_size} x 3 = {mib(cache)}"
          + (f"; cnndesk's peak RSS right after load_dataset: {mib(best['cnndesk']['peak_rss_after_load'])}"
             if "cnndesk" in best else ""))
    if "cnndesk" in best:
        c = best["cnndesk"]
        print("\nratios cnndesk/plain (higher = cnndesk faster):")
        for other in ("naive", "tuned"):
            if other not in best:
                continue
            o = best[other]
            print(f"  cnndesk/{other:5s} epoch 1: {ratio(first_rate(c), first_rate(o))} "
                  f"(with load: {ratio(first_rate(c, with_load=True), first_rate(o, with_load=True))})  "
                  f"epochs 2+: {ratio(later_rate(c), later_rate(o))} wall, "
                  f"{ratio(later_rate(c, 'cpu_s'), later_rate(o, 'cpu_s'))} per CPU-second   "
                  f"peak RSS: {c['peak_rss'] / o['peak_rss']:.2f}x")
        print("targets: cnndesk epochs 2+ at least as fast as tuned (>= 1.00x) and well ahead of naive")
        for other in ("tuned", "naive"):
            if other in best and later_rate(c) and later_rate(best[other]):
                w = later_rate(c) / later_rate(best[other])
                cpu = later_rate(c, "cpu_s") / later_rate(best[other], "cpu_s")
                verdict = ("MET" if w >= 1.0 else "NOT MET") if other == "tuned" else ""
                print(f"  vs {other}: {w:.2f}x wall, {cpu:.2f}x per CPU-second {verdict}")
    print(f"\ntotal benchmark time {time.perf_counter() - t_all:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
