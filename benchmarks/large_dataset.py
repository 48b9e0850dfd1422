"""Datasets larger than the memory limit: preparation speed, training speed and peak memory.

Generates N images of 96x96 with the built-in sample generator (four classes
of coloured shapes, PNG, written once into the temp folder and reused; the
first N of the largest folder serve every smaller size), then, each in a
child process of its own so that its peak memory is its own:

  disk N      loads the first N images with a memory limit of 1 MB (so the
              on-disk cache is used), preparing the cache in a fresh folder,
              and trains the "seed" preset on them; prints preparation
              images/s, training images/s of epochs 2+ and the peak RSS
              (``ru_maxrss``), next to the RSS once TensorFlow is imported and
              a model built (TensorFlow's own footprint).
  gui N       the same through the app's window (``--gui``, below).
  compare N   the in-memory path against the on-disk path on a subset that
              fits (the first N images): trains memory, disk, memory, disk in
              one process (alternating, so that a machine whose load changes
              treats both alike) and prints each run's images/s of epochs 2+.

Images/s of an epoch = training images / epoch wall time (validation
included), as cnndesk's own reports count it.

Usage:
    .venv/bin/python benchmarks/large_dataset.py                        # 10k, 30k, 100k; compare on 10k
    .venv/bin/python benchmarks/large_dataset.py --sizes 10000,30000 --epochs 3
    .venv/bin/python benchmarks/large_dataset.py --count 2000 --sizes 2000 --subset 2000 --epochs 2   # a quick look
    .venv/bin/python benchmarks/large_dataset.py --pipeline-only --sizes 10000,30000   # the input side alone
    .venv/bin/python benchmarks/large_dataset.py --in-memory --sizes 10000 --subset 0    # the same sizes in memory
    .venv/bin/python benchmarks/large_dataset.py --gui --sizes 10000,100000 --epochs 1   # through the app's window

``--gui`` drives the app's main window offscreen as a user would: "Memory for
images" set to 1 MB, the folder read (so prepared on disk), Train pressed, then
the viewer's evaluation of the validation split; it prints preparation and
training images/s, the RSS after each step and the peak, the evaluation's time,
and the longest gap of a 10 ms timer on the GUI thread while training.

Targets (issue 20): peak RSS flat in the dataset size (within TensorFlow's own
footprint + 1 GiB); training from disk at least 0.9x the in-memory speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 96
MARKER = ".cnndesk-large-benchmark"


def default_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"cnndesk-large-{SIZE}px"


def _write_part(args: tuple[str, str, int, int, int]) -> None:
    import numpy as np

    from cnndesk.core.data.samples import draw_sample

    folder, kind, ci, start, stop = args
    rng = np.random.default_rng([11, ci, start])
    out = Path(folder) / kind
    for i in range(start, stop):
        draw_sample(kind, rng, SIZE).save(out / f"{kind}_{i:06d}.png", compress_level=1)


def ensure_images(folder: Path, count: int, workers: int) -> None:
    """``count`` images spread over the four sample classes; the folder is reused when it holds at least that."""
    from cnndesk.core.data.samples import SAMPLE_CLASSES

    marker = folder / MARKER
    if marker.exists() and int(marker.read_text()) >= count:
        return
    shutil.rmtree(folder, ignore_errors=True)
    per_class = -(-count // len(SAMPLE_CLASSES))
    for kind in SAMPLE_CLASSES:
        (folder / kind).mkdir(parents=True)
    step = 2000
    jobs = [(str(folder), kind, ci, start, min(start + step, per_class))
            for ci, kind in enumerate(SAMPLE_CLASSES) for start in range(0, per_class, step)]
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_write_part, jobs))
    marker.write_text(str(per_class * len(SAMPLE_CLASSES)))
    print(f"wrote {per_class * len(SAMPLE_CLASSES):,} images of {SIZE}x{SIZE} in {time.perf_counter() - t:.0f} s",
          file=sys.stderr)


def subset_folder(source: Path, count: int) -> Path:
    """A folder of hard links to the first ``count`` images (a quarter per class): each size its own dataset."""
    from cnndesk.core.data.samples import SAMPLE_CLASSES

    folder = source.parent / f"{source.name}-first-{count}"
    marker = folder / MARKER
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    per_class = count // len(SAMPLE_CLASSES)
    for kind in SAMPLE_CLASSES:
        (folder / kind).mkdir(parents=True)
        for i in range(per_class):
            name = f"{kind}_{i:06d}.png"
            os.link(source / kind / name, folder / kind / name)  # not a symlink: links out of a dataset are not read
    marker.write_text(str(count))
    return folder


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


# ---------------------------------------------------------------------------
# the children

def _train(data, epochs: int, batch: int) -> list[float]:
    """Images/s of each epoch of one training run of the seed preset."""
    from cnndesk.core.model.architecture import preset, TrainingSettings
    from cnndesk.core.training.progress import TrainingListener
    from cnndesk.core.training.fitting import train

    speeds = []

    class Listener(TrainingListener):
        def on_epoch(self, report):
            speeds.append(report.images_per_s)

    settings = TrainingSettings(epochs=epochs, batch_size=batch, patience=0, seed=1, device="cpu")
    train(data, preset("seed"), settings, Listener())
    return speeds


def _stream(data, epochs: int, batch: int) -> list[float]:
    """Images/s of each pass over the training pipeline alone (no model): what the input side can deliver."""
    from cnndesk.core.data.pipeline import make_tf_dataset, release_tf_dataset

    ds = make_tf_dataset(data.images, data.labels, data.num_classes, batch, training=True, seed=1,
                         index=data.train_index)
    speeds = []
    for _ in range(epochs):
        t, n = time.perf_counter(), 0
        for x, _y in ds:
            n += int(x.shape[0])
        speeds.append(n / (time.perf_counter() - t))
    release_tf_dataset(ds)
    return speeds


def _later(speeds: list[float]) -> float:
    later = speeds[1:] or speeds
    return len(later) / sum(1 / s for s in later)  # total images over total time, each epoch the same size


def child_disk(folder: Path, epochs: int, batch: int, image_size: int, run, in_memory: bool = False) -> dict:
    import keras  # noqa: F401  (TensorFlow's own footprint, before any data)
    from cnndesk.core.model.architecture import build_model, preset
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.cache_plan import CacheSettings
    from cnndesk.core.data.images import Preprocessing

    pre = Preprocessing((image_size, image_size), "rgb")
    build_model(preset("seed"), pre.input_shape, 4)
    baseline = peak_rss_mb()
    cache_dir = Path(tempfile.mkdtemp(prefix="cnndesk-large-cache-"))
    try:
        t = time.perf_counter()
        data = load_dataset(folder, DatasetConfig(pre, seed=1),
                            cache=CacheSettings(memory_limit=2**40 if in_memory else 10**6, folder=cache_dir))
        prep = time.perf_counter() - t
        assert data.on_disk != in_memory
        after_prep = peak_rss_mb()
        speeds = run(data, epochs, batch)
        return {"images": len(data.labels), "cache_bytes": data.storage.bytes, "shards": data.storage.shards,
                "path": "memory" if in_memory else "disk",
                "prepare_images_per_s": len(data.labels) / prep, "epochs": speeds, "train_images_per_s": _later(speeds),
                "rss_tf_mb": baseline, "rss_after_prepare_mb": after_prep, "peak_rss_mb": peak_rss_mb()}
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def child_compare(folder: Path, epochs: int, batch: int, image_size: int, rounds: int, run) -> dict:
    from cnndesk.core.data.dataset import DatasetConfig, load_dataset
    from cnndesk.core.data.cache_plan import CacheSettings
    from cnndesk.core.data.images import Preprocessing

    pre = Preprocessing((image_size, image_size), "rgb")
    cache_dir = Path(tempfile.mkdtemp(prefix="cnndesk-large-cache-"))
    try:
        config = DatasetConfig(pre, seed=1)
        memory = load_dataset(folder, config, cache=CacheSettings(memory_limit=2**40))
        disk = load_dataset(folder, config, cache=CacheSettings(memory_limit=10**6, folder=cache_dir))
        assert disk.on_disk and not memory.on_disk
        runs = {"memory": [], "disk": []}
        for _ in range(rounds):
            for name, data in (("memory", memory), ("disk", disk)):
                runs[name].append(_later(run(data, epochs, batch)))
        return {"images": len(memory.labels), **runs}
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)


def child_gui(folder: Path, epochs: int, image_size: int) -> dict:
    """The app's main window, offscreen, as a user would drive it: a 1 MB "Memory for images", the folder read,
    ``epochs`` epochs trained, then the validation split evaluated in the viewer; peak RSS, and the longest gap of
    a 10 ms timer on the GUI thread from the first batch to the end of training."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from _qt import GapMeter, wait_until
    from cnndesk.core.cpu_kernels import use_onednn_kernels
    from cnndesk.core.data.cache_plan import CACHE_DIR_ENV
    from cnndesk.ui.main_window import MainWindow

    use_onednn_kernels()  # as the app starts
    app = QApplication.instance() or QApplication([])
    work = Path(tempfile.mkdtemp(prefix="cnndesk-large-gui-"))
    os.environ[CACHE_DIR_ENV] = str(work / "cache")
    try:
        window = MainWindow(settings=QSettings(str(work / "settings.ini"), QSettings.IniFormat),
                            sample_dir=work / "sample")
        errors: list[str] = []
        window.show_error = lambda title, message: errors.append(f"{title}: {message}")
        window.engine.failed.connect(lambda name, message: errors.append(f"{name}: {message}"))
        window.show()
        panel = window.dataset_panel
        wait_until(lambda: (window.engine.is_ready and window.state.data is not None) or bool(errors), 600,
                   "TensorFlow and the built-in sample")
        panel.memory_limit.setValue(1)  # MB: every dataset goes to the on-disk cache
        panel.image_size.setCurrentText(str(image_size))
        baseline = peak_rss_mb()
        t = time.perf_counter()
        panel.load_folder(str(folder))
        wait_until(lambda: (window.state.data is not None and window.state.data.root == folder.resolve()) or bool(errors),
                   3600, "the dataset")
        if errors:
            raise SystemExit(errors[-1])
        prepare = time.perf_counter() - t
        data = window.state.data
        assert data.on_disk, "the window kept the images in memory"
        after_prepare = peak_rss_mb()
        window.model_panel.epochs.setValue(epochs)
        speeds: list[float] = []
        batches: list[int] = []
        reported = window.training._on_report  # the train job's reports reach TrainingControl through it

        def on_report(report) -> None:
            if hasattr(report, "batch"):
                batches.append(1)
            elif hasattr(report, "images_per_s"):
                speeds.append(report.images_per_s)
            reported(report)

        window.training._on_report = on_report
        wait_until(window.train_action.isEnabled, 600, "Train to be enabled")
        window.train_action.trigger()
        wait_until(lambda: bool(batches) or not window.state.training, 7200, "the first batch")
        gaps = GapMeter()  # from the first batch on: the press and the first step's tracing are not what is asked about
        wait_until(lambda: not window.state.training, 7200, "training")
        gaps.timer.stop()
        if errors or not speeds:
            raise SystemExit(errors[-1] if errors else "training failed")
        after_training = peak_rss_mb()
        t = time.perf_counter()
        window.viewer_panel.evaluate()
        wait_until(lambda: window.viewer_panel.evaluation_view.evaluation is not None or bool(errors), 3600,
                   "the evaluation")
        evaluated = time.perf_counter() - t
        window.shutdown()
        app.processEvents()  # the shutdown's last events, before the numbers are taken
        return {"images": len(data.labels), "path": "gui", "cache_bytes": data.storage.bytes,
                "shards": data.storage.shards, "prepare_images_per_s": len(data.labels) / prepare,
                "epochs": speeds, "train_images_per_s": _later(speeds), "rss_tf_mb": baseline,
                "rss_after_prepare_mb": after_prepare, "rss_after_training_mb": after_training,
                "peak_rss_mb": peak_rss_mb(), "evaluate_s": evaluated, "val_images": len(data.val_index),
                "longest_stall_ms": gaps.longest}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_child(*argv: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    if proc.returncode != 0:
        raise SystemExit(f"child {argv} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="images to generate (the largest size)")
    ap.add_argument("--sizes", default="10000,30000,100000", help="dataset sizes for peak RSS, comma-separated")
    ap.add_argument("--subset", type=int, default=10_000, help="images of the in-memory comparison (0: none)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2, help="alternating memory/disk rounds of the comparison")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=SIZE, help="the size the model takes")
    ap.add_argument("--folder", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes writing the images")
    ap.add_argument("--pipeline-only", action="store_true",
                    help="no model: time passes over the training input pipeline alone (for a loaded machine, "
                         "where training would take hours; peak RSS then shows the data side's memory)")
    ap.add_argument("--in-memory", action="store_true",
                    help="the peak RSS table with the in-memory path instead (for comparison)")
    ap.add_argument("--gui", action="store_true",
                    help="the peak RSS table from the app's window instead (offscreen): read, train, evaluate")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        kind, folder = args.child[0], Path(args.child[1])
        run = _stream if args.pipeline_only else _train
        if kind == "gui":
            out = child_gui(folder, args.epochs, args.image_size)
        elif kind == "disk":
            out = child_disk(folder, args.epochs, args.batch_size, args.image_size, run, args.in_memory)
        else:
            out = child_compare(folder, args.epochs, args.batch_size, args.image_size, args.rounds, run)
        print(json.dumps(out))
        return

    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    source = args.folder or default_folder()
    ensure_images(source, max(args.count, *sizes, args.subset), args.workers)
    common = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--image-size",
              str(args.image_size), *(["--pipeline-only"] if args.pipeline_only else []),
              *(["--in-memory"] if args.in_memory else [])]
    if args.gui:
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; the app's window (offscreen), images "
              f"{SIZE}x{SIZE} PNG at {args.image_size}x{args.image_size}, {args.epochs} epochs of the default model, "
              "on-disk cache")
        print_table("gui", GUI_COLUMNS, source, sizes, common)
        return
    what = "input pipeline alone, no model" if args.pipeline_only else "seed preset"
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; images {SIZE}x{SIZE} PNG, model input "
          f"{args.image_size}x{args.image_size}, batch {args.batch_size}, {args.epochs} epochs, {what}, CPU")
    if args.subset:
        compare_sizes(source, args, common)
    if sizes:
        print_table("disk", DISK_COLUMNS, source, sizes, common)


def compare_sizes(source: Path, args, common: list[str]) -> None:
    compare = run_child("compare", str(subset_folder(source, args.subset)), *common, "--rounds", str(args.rounds))
    mem, disk = compare["memory"], compare["disk"]
    what = "input pipeline" if args.pipeline_only else "training"
    print(f"\n{what} images/s, epochs 2+, {compare['images']:,} images, alternating runs in one process:")
    print(f"  in memory: {', '.join(f'{v:.0f}' for v in mem)}")
    print(f"  on disk:   {', '.join(f'{v:.0f}' for v in disk)}")
    print(f"  disk / memory: {max(disk) / max(mem):.2f} (best of each), "
          f"{sum(disk) / sum(mem):.2f} (mean of each)")


def _mb(key: str):
    return lambda r: f"{r[key]:.0f}MB"


#: the columns of each table: header, width, the cell from a child's result
DISK_COLUMNS = [
    ("images", 8, lambda r: f"{r['images']:,}"), ("path", 6, lambda r: r["path"]),
    ("cache", 9, lambda r: f"{r['cache_bytes'] / 1e9:.2f}GB"), ("shards", 6, lambda r: str(r["shards"])),
    ("prepare img/s", 13, lambda r: f"{r['prepare_images_per_s']:.0f}"),
    ("img/s 2+", 11, lambda r: f"{r['train_images_per_s']:.0f}"),
    ("RSS TF+model", 12, _mb("rss_tf_mb")), ("RSS after prep", 14, _mb("rss_after_prepare_mb")),
    ("peak RSS", 9, _mb("peak_rss_mb")),
]
GUI_COLUMNS = [
    ("images", 8, lambda r: f"{r['images']:,}"), ("prepare img/s", 13, lambda r: f"{r['prepare_images_per_s']:.0f}"),
    ("img/s 2+", 9, lambda r: f"{r['train_images_per_s']:.0f}"), ("RSS TF", 8, _mb("rss_tf_mb")),
    ("after prep", 10, _mb("rss_after_prepare_mb")), ("after train", 11, _mb("rss_after_training_mb")),
    ("peak RSS", 9, _mb("peak_rss_mb")), ("evaluate", 14, lambda r: f"{r['evaluate_s']:.0f} s/{r['val_images']:,}"),
    ("longest stall", 13, lambda r: f"{r['longest_stall_ms']:.0f} ms"),
]


def print_table(kind: str, columns, source: Path, sizes: list[int], common: list[str]) -> None:
    """One row per dataset size, each from a child process of ``kind`` ("disk" or "gui")."""
    print("\n" + " ".join(f"{header:>{width}}" for header, width, _ in columns))
    for n in sizes:
        r = run_child(kind, str(subset_folder(source, n)), *common)
        print(" ".join(f"{cell(r):>{width}}" for _, width, cell in columns), flush=True)

if __name__ == "__main__":
    main()
