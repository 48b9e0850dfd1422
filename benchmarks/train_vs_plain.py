"""cnndesk's training epochs against the best plain Keras script, in one session, alternating.

The plain script is what an expert writes for the "seed" CNN on a small CPU:
``image_dataset_from_directory`` (80/20 split), every image decoded once into
a uint8 in-memory cache held by ``tf.data``, reshuffled every epoch, batched,
prefetched with autotune off, pixels scaled inside the model (``Rescaling``),
RMSprop, categorical cross-entropy. cnndesk is ``load_dataset`` + ``train``
with the app's defaults (Adam 1e-3, keep-the-best, early stopping off so that
both run every epoch). Both train the same Sequential on the same folder.

Runs alternate (plain, cnndesk, then cnndesk, plain, ...) in one session, so
both see the same machine load; each run is a child process started the way
its program starts: the plain script with the environment as it is, cnndesk
through its start-up choice of CPU kernels (``cnndesk.core.cpu_kernels``, made
before TensorFlow is imported, process-wide, so the two cannot share one
process). Each run's first epoch (tracing, cache filling) is left out and the
medians of epochs 2+ are compared. The ratio is
cnndesk's epoch time over the plain script's (below 1: cnndesk is faster; the
target of issue 17 is 0.83 or less, i.e. at least 1.2x faster). Epoch times
include the validation pass in both. CPU seconds of this process per epoch are
printed too: on a shared machine they move less with other load than wall time.

The first lines name the CPU and the flags that decide its speed (``avx2``,
``avx512f``, ``avx512_vnni``, ``avx512_bf16``, ``amx_bf16``); each size's
summary says in which precision cnndesk trained (``--precision``, default
"auto": bfloat16 mixed precision on a CPU with native bfloat16, float32
elsewhere) and in which the plain script did (``--plain-precision``, default
float32, TensorFlow's default; "bfloat16" gives it Keras's ``mixed_bfloat16``
policy with a float32 softmax layer, the best a plain script can do on a CPU
with native bfloat16).

Usage:
    .venv/bin/python benchmarks/train_vs_plain.py [--size 128,224] [--rounds 3] [--epochs 3]
        [--per-class 120] [--batch-size 32] [--precision auto|float32|bfloat16] [--plain-precision float32|bfloat16]

On the project's 2-core machine shared with other jobs (load 7-13), two
rounds of 2 epochs at 128 px took about 20 minutes and one round at 224 px
about 17; most of it is the plain script's epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

SEED = 1337
VAL_SPLIT = 0.2


class EpochClock:
    """Wall and CPU seconds of each epoch, and the last validation accuracy."""

    def __init__(self):
        self.seconds: list[float] = []
        self.cpu: list[float] = []
        self.val_accuracy: list[float] = []
        self.peak_rss_mib = float("nan")  # of the run's process
        self.precision = "float32"  # what the run trained in, with cnndesk's reason

    def begin(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def end(self, val_accuracy) -> None:
        self.seconds.append(time.perf_counter() - self._wall)
        self.cpu.append(time.process_time() - self._cpu)
        self.val_accuracy.append(float("nan") if val_accuracy is None else float(val_accuracy))


def plain_run(data: Path, size: int, epochs: int, batch_size: int, precision: str = "float32") -> EpochClock:
    """The best plain Keras script for this model, written out in full."""
    import keras
    import tensorflow as tf

    if precision == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    keras.utils.set_random_seed(SEED)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        data, validation_split=VAL_SPLIT, subset="both", seed=SEED, image_size=(size, size),
        batch_size=batch_size, label_mode="categorical", verbose=False)
    n_train, n_classes = len(train_ds.file_paths), len(train_ds.class_names)
    no_autotune = tf.data.Options()
    no_autotune.autotune.enabled = False

    def decoded_once(ds):
        # one image at a time, as uint8 (a quarter of float32's memory), kept after the first pass
        return ds.unbatch().map(lambda x, y: (tf.cast(x, tf.uint8), y)).cache()

    train_ds = (decoded_once(train_ds).shuffle(n_train, seed=SEED, reshuffle_each_iteration=True)
                .batch(batch_size).prefetch(2).with_options(no_autotune))
    val_ds = decoded_once(val_ds).batch(batch_size).prefetch(2).with_options(no_autotune)

    layers = keras.layers
    model = keras.Sequential([
        keras.Input((size, size, 3)),
        layers.Rescaling(1 / 255),
        layers.Conv2D(10, 3, activation="relu"), layers.Conv2D(10, 3, activation="relu"), layers.MaxPool2D(),
        layers.Conv2D(10, 3, activation="relu"), layers.Conv2D(10, 3, activation="relu"), layers.MaxPool2D(),
        layers.Flatten(), layers.Dense(n_classes, activation="softmax", dtype="float32"),
    ])
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    clock = EpochClock()

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.begin()

        def on_epoch_end(self, epoch, logs=None):
            clock.end((logs or {}).get("val_accuracy"))

    model.fit(train_ds, validation_data=val_ds, epochs=epochs, verbose=0, callbacks=[Timer()])
    return clock


def cnndesk_run(loaded, epochs: int, batch_size: int, precision: str = "auto") -> EpochClock:
    """cnndesk's core as the app and the CLI call it (defaults; every epoch runs)."""
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.training.progress import TrainingListener
    from cnndesk.core.training.fitting import train

    clock = EpochClock()

    class Listener(TrainingListener):
        def on_epoch(self, report):
            # ``seconds`` is cnndesk's own epoch time (from its first batch's start, validation included)
            clock.seconds.append(report.seconds)
            clock.cpu.append(time.process_time() - clock._cpu)
            clock._cpu = time.process_time()
            clock.val_accuracy.append(float("nan") if report.val_accuracy is None else report.val_accuracy)

        def on_message(self, text):
            if text.startswith("precision: "):
                clock.precision = text[len("precision: "):]

    clock._cpu = time.process_time()
    settings = TrainingSettings(epochs=epochs, batch_size=batch_size, patience=0, seed=SEED, precision=precision)
    train(loaded, preset("seed"), settings, listener=Listener())
    return clock


def child(args) -> None:
    """One run in this process; its epochs go to stdout as one JSON line."""
    if args.child == "cnndesk":
        from cnndesk.core.cpu_kernels import use_onednn_kernels

        use_onednn_kernels()  # as cnndesk's app and CLI do at start-up
    from _data import ensure_dataset

    from cnndesk.core.library_warnings import hide_library_warnings

    hide_library_warnings()
    data = ensure_dataset(None, args.per_class, args.size, quiet=True)
    if args.child == "plain":
        clock = plain_run(data, args.size, args.epochs, args.batch_size, args.plain_precision)
        clock.precision = args.plain_precision + (" (mixed_bfloat16 policy)" if args.plain_precision == "bfloat16" else "")
    else:
        from cnndesk.core.data.dataset import DatasetConfig, load_dataset
        from cnndesk.core.data.images import Preprocessing

        config = DatasetConfig(Preprocessing((args.size, args.size), "rgb"), val_split=VAL_SPLIT, seed=SEED)
        clock = cnndesk_run(load_dataset(data, config), args.epochs, args.batch_size, args.precision)
    print("RESULT " + json.dumps({"seconds": clock.seconds, "cpu": clock.cpu, "val_accuracy": clock.val_accuracy,
                                  "peak_rss_mib": peak_rss_mib(), "precision": clock.precision}), flush=True)


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux ``VmHWM``; elsewhere ``ru_maxrss``), in MiB."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def one_run(name: str, size: int, args) -> EpochClock:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--size", str(size),
           "--epochs", str(args.epochs), "--per-class", str(args.per_class), "--batch-size", str(args.batch_size),
           "--precision", args.precision, "--plain-precision", args.plain_precision]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"the {name} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    clock = EpochClock()
    for key, value in json.loads(line[len("RESULT "):]).items():
        setattr(clock, key, value)
    return clock


def summary(name: str, runs: list[EpochClock]) -> tuple[float, float]:
    """Print medians and spreads of epochs 2+; return the (wall, CPU) medians."""
    wall = [s for r in runs for s in r.seconds[1:]]
    cpu = [s for r in runs for s in r.cpu[1:]]
    acc = [r.val_accuracy[-1] for r in runs]
    print(f"  {name:8s} epochs 2+: median {statistics.median(wall):6.2f} s wall (range {min(wall):.2f}-{max(wall):.2f}, "
          f"{len(wall)} epochs), {statistics.median(cpu):6.2f} CPU-s; final val accuracy "
          f"{' '.join(f'{a:.3f}' for a in acc)}; peak RSS {max(r.peak_rss_mib for r in runs):,.0f} MiB; "
          f"precision: {', '.join(sorted({r.precision for r in runs}))}")
    return statistics.median(wall), statistics.median(cpu)


def compare(size: int, args) -> float:
    from _data import CLASSES, ensure_dataset

    ensure_dataset(None, args.per_class, size)
    n_train = sum(round(args.per_class * (1 - VAL_SPLIT)) for _ in CLASSES)
    print(f"\n{size}x{size}: {len(CLASSES)} classes x {args.per_class} JPEGs ({n_train} training), "
          f"batch {args.batch_size}, {args.epochs} epochs per run, {args.rounds} rounds", flush=True)
    runs: dict[str, list[EpochClock]] = {"plain": [], "cnndesk": []}
    for r in range(args.rounds):
        order = ("plain", "cnndesk") if r % 2 == 0 else ("cnndesk", "plain")
        for name in order:
            clock = one_run(name, size, args)
            runs[name].append(clock)
            print(f"  round {r + 1} {name:8s} epochs " + "  ".join(f"{s:.2f}" for s in clock.seconds)
                  + f" s (CPU " + "  ".join(f"{c:.2f}" for c in clock.cpu) + f"), load {os.getloadavg()[0]:.1f}",
                  flush=True)
    plain_wall, plain_cpu = summary("plain", runs["plain"])
    ours_wall, ours_cpu = summary("cnndesk", runs["cnndesk"])
    ratio = ours_wall / plain_wall
    precisions = "; ".join(f"{name} in {', '.join(sorted({r.precision for r in rs}))}" for name, rs in runs.items())
    print(f"  precision: {precisions}")
    print(f"  ratio cnndesk/plain epoch time at {size} px: {ratio:.2f} wall ({plain_wall / ours_wall:.2f}x as fast), "
          f"{ours_cpu / plain_cpu:.2f} CPU; target <= 0.83: {'met' if ratio <= 0.83 else 'NOT met'}", flush=True)
    return ratio


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="128,224", help="image sizes to compare, comma-separated. Default 128,224")
    p.add_argument("--rounds", type=int, default=3, help="runs of each, alternating. Default 3")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (the first is not counted). Default 3")
    p.add_argument("--per-class", type=int, default=120, help="JPEGs per class (10 classes). Default 120")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="cnndesk's training precision (its --precision). Default auto")
    p.add_argument("--plain-precision", choices=("float32", "bfloat16"), default="float32",
                   help="the plain script's: bfloat16 sets Keras's mixed_bfloat16 policy. Default float32")
    p.add_argument("--child", choices=("plain", "cnndesk"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.size = int(args.size)
        child(args)
        return 0
    if args.epochs < 2 or args.rounds < 1:
        p.error("--epochs must be at least 2 and --rounds at least 1")
    from cnndesk.core.library_warnings import hide_library_warnings

    hide_library_warnings()

    from cnndesk.core.cpu_kernels import describe_cpu

    print(f"CPU: {describe_cpu()}")
    print(f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f} at the start")
    ratios = {int(s): compare(int(s), args) for s in args.size.split(",")}
    print("\nsummary: " + ", ".join(f"{s} px {r:.2f}" for s, r in ratios.items())
          + " (cnndesk epoch time / best plain script's, medians of epochs 2+)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
