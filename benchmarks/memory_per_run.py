"""Memory per training run over a long session, through the engine thread.

Starts the GUI's engine (offscreen Qt, the one thread that owns TensorFlow),
then trains the "seed" preset again and again on a tiny generated dataset,
exactly as the main window does: a ``train`` job, then (as the viewer does
when a new model arrives) a prediction and an ``inspect`` job (activation
maps and Grad-CAM) for one image. After each run it reads the process's
resident memory (RSS) and prints it; at the end it fits a line through the
runs after the warm-up and prints MB per run (least squares and the median of
pairwise slopes, which a single noisy point cannot move).

For comparison it runs plain Keras in a child process: ``build model;
compile; fit`` in a loop, the same model, data and epochs, no cnndesk code.

    .venv/bin/python benchmarks/memory_per_run.py                 # 12 runs + 3 warm-up, ~1 min
    .venv/bin/python benchmarks/memory_per_run.py --cancel        # each run stopped after its first batch
    .venv/bin/python benchmarks/memory_per_run.py --runs 30 --no-keras
    .venv/bin/python benchmarks/memory_per_run.py --detail        # + Python heap, gc objects, TF graphs
    .venv/bin/python benchmarks/memory_per_run.py --no-reuse      # every run traces a new model (as before)
    .venv/bin/python benchmarks/memory_per_run.py --no-reuse --trim   # + malloc_trim(0) after each run

Target (issue 12): under 2 MB per run through the engine.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGET_MB = 2.0


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux ``/proc``; ``resource`` peak elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)


def slopes(values: list[float]) -> tuple[float, float]:
    """(least-squares slope, median of pairwise slopes) of ``values`` over their index."""
    n = len(values)
    if n < 2:
        return 0.0, 0.0
    xs = range(n)
    mx, my = (n - 1) / 2, statistics.fmean(values)
    lsq = sum((x - mx) * (y - my) for x, y in zip(xs, values)) / sum((x - mx) ** 2 for x in xs)
    pairs = [(values[j] - values[i]) / (j - i) for i in range(n) for j in range(i + 1, n)]
    return lsq, statistics.median(pairs)


def make_data(folder: Path, size: int, per_class: int):
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.images import Preprocessing
    from cnndesk.core.data.samples import write_sample_dataset

    root = write_sample_dataset(folder / "shapes", per_class=per_class)
    return load_dataset(root, DatasetConfig(preprocessing=Preprocessing((size, size))), workers=2)


# ---------------------------------------------------------------------------
# through the engine


def engine_runs(args) -> list[dict]:
    from PySide6.QtWidgets import QApplication

    from _qt import wait_until

    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.ui.engine import Engine
    from cnndesk.ui.engine_worker import EngineWorker

    app = QApplication.instance() or QApplication(sys.argv)  # noqa: F841 (kept alive)
    tmp = Path(tempfile.mkdtemp(prefix="cnndesk-memory-bench-"))
    data = make_data(tmp, args.size, args.per_class)
    layers = preset("seed")
    settings = TrainingSettings(epochs=args.epochs, batch_size=16, patience=0)
    image = data.images[0]

    engine = Engine()
    engine.start()

    def wait(cond, timeout=300.0):
        wait_until(cond, timeout)

    running = {}  # the job now running, for Stop

    def job(method, **kwargs):
        box = {}
        running["job"] = engine.submit(method, on_done=lambda r: box.setdefault("ok", r),
                                       on_error=lambda m: box.setdefault("error", m), **kwargs)
        wait(lambda: box)
        if "error" in box:
            raise SystemExit(f"{method.__name__} failed: {box['error']}")
        return box["ok"]

    wait(lambda: engine.is_ready)
    engine.worker.reuse_models = not args.no_reuse  # read by the next train job
    if args.detail:
        job(EngineWorker.memory_probe_start)  # tracemalloc starts in the engine thread (see probe below)
    rows = []
    for run in range(args.warmup + args.runs):
        # with --cancel, Stop as the job reports its first batch (through its own channel)
        stop = (lambda report: engine.cancel(running["job"])) if args.cancel else None
        result = job(EngineWorker.train, data=data, layers=layers, settings=settings, run=f"run-{run}",
                     on_report=stop).result
        if args.cancel:
            assert result.cancelled, "the run was meant to be cancelled"
        # what the viewer asks of a new model: classify the strip, then look inside the current image
        job(EngineWorker.predict_arrays, images=[image], labels=["strip"])
        job(EngineWorker.inspect, image=image)
        gc.collect()
        if args.trim:
            job(EngineWorker.malloc_trim)
        row = {"run": run + 1, "rss_mb": rss_mb()}
        if args.detail:
            row.update(job(EngineWorker.memory_probe))
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            _print_row(row, args.warmup)
    engine.shutdown()
    return rows


def _print_row(row: dict, warmup: int) -> None:
    tag = " (warm-up)" if row["run"] <= warmup else ""
    extra = "".join(f"  {k} {v}" for k, v in row.items() if k not in ("run", "rss_mb"))
    print(f"  run {row['run']:3d}  RSS {row['rss_mb']:8.1f} MB{extra}{tag}", flush=True)


# ---------------------------------------------------------------------------
# plain Keras, in a child process

KERAS_REFERENCE = r"""
import gc, json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, sys.argv[1])
import numpy as np
import keras
from memory_per_run import rss_mb
size, epochs, n, total = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rng = np.random.default_rng(0)
x = rng.integers(0, 255, (n, size, size, 3)).astype("float32")
y = keras.utils.to_categorical(rng.integers(0, 4, n), 4)
for run in range(total):
    model = keras.Sequential([
        keras.Input((size, size, 3)), keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(10, 3, activation="relu"), keras.layers.Conv2D(10, 3, activation="relu"),
        keras.layers.MaxPooling2D(2), keras.layers.Conv2D(10, 3, activation="relu"),
        keras.layers.Conv2D(10, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=16, epochs=epochs, validation_split=0.2, verbose=0)
    gc.collect()
    print(json.dumps({"run": run + 1, "rss_mb": rss_mb()}), flush=True)
"""


def keras_runs(args) -> list[dict]:
    n = 4 * args.per_class
    out = subprocess.run([sys.executable, "-c", KERAS_REFERENCE, str(Path(__file__).parent), str(args.size),
                          str(args.epochs), str(n), str(args.warmup + args.runs)],
                         check=True, capture_output=True, text=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def summary(name: str, rows: list[dict], warmup: int) -> float:
    values = [r["rss_mb"] for r in rows[warmup:]]
    lsq, med = slopes(values)
    print(f"  {name:<34} {len(values)} runs after {warmup} warm-up: {lsq:+6.2f} MB/run (least squares), "
          f"{med:+6.2f} MB/run (median slope); RSS {values[0]:.0f} -> {values[-1]:.0f} MB")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=12, help="measured runs (default 12)")
    ap.add_argument("--warmup", type=int, default=3, help="runs before the measured ones (default 3)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    ap.add_argument("--per-class", type=int, default=16, help="images per class, 4 classes (default 16)")
    ap.add_argument("--cancel", action="store_true", help="stop each run after its first batch")
    ap.add_argument("--no-keras", action="store_true", help="skip the plain-Keras reference")
    ap.add_argument("--detail", action="store_true", help="also Python heap, gc objects and TF graphs")
    ap.add_argument("--no-reuse", action="store_true", help="a new model (and new traces) for every run")
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) after each run (glibc)")
    ap.add_argument("--json", action="store_true", help="one JSON line per run")
    args = ap.parse_args()
    _install_probe()

    mode = "cancelled after the first batch" if args.cancel else f"{args.epochs} epoch(s)"
    print(f"memory per training run through the engine: seed preset, {args.size}px, 4 x {args.per_class} images, "
          f"{mode}, models {'rebuilt' if args.no_reuse else 'reused'}{', malloc_trim' if args.trim else ''}, "
          f"MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', 'unset')}")
    rows = engine_runs(args)
    keras_rows = [] if args.no_keras or args.cancel else keras_runs(args)
    print("summary:")
    ours = summary("cnndesk engine", rows, args.warmup)
    if keras_rows:
        ref = summary("plain Keras (build, compile, fit)", keras_rows, args.warmup)
        if ref > 0:
            print(f"  cnndesk grows {max(ours, 0.0) / ref:.2f}x as much per run as plain Keras "
                  f"({ours:+.2f} vs {ref:+.2f} MB/run, median slopes)")
    print(f"  target < {TARGET_MB} MB/run: {'ok' if ours < TARGET_MB else 'MISSED'}")


def _install_probe() -> None:
    """Add diagnostic jobs to the engine: they run in its thread, where TensorFlow lives."""
    import tracemalloc

    from cnndesk.ui.engine_worker import EngineWorker

    def memory_probe_start(self):
        tracemalloc.start(1)

    def memory_probe(self):
        gc.collect()
        current, _ = tracemalloc.get_traced_memory()
        objects = gc.get_objects()
        counts: dict[str, int] = {}
        for o in objects:
            name = type(o).__name__
            counts[name] = counts.get(name, 0) + 1
        return {"py_heap_mb": round(current / 2**20, 2), "gc_objects": len(objects),
                "functions": counts.get("Function", 0), "concrete": counts.get("ConcreteFunction", 0),
                "graphs": counts.get("FuncGraph", 0), "models": counts.get("Sequential", 0)
                + counts.get("Functional", 0)}

    def malloc_trim(self):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)

    EngineWorker.memory_probe_start = memory_probe_start
    EngineWorker.malloc_trim = malloc_trim
    EngineWorker.memory_probe = memory_probe


if __name__ == "__main__":
    main()
