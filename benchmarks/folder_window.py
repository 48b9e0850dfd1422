"""The window's folder classification against a plain ``model.predict`` loop, on 1,000 real photo patches.

Trains the seed preset for a few epochs on the ``patches`` dataset (64 px colour crops of six scikit-image
photos, ``small_data.py``) with ``cnndesk-cli train`` in a child process (which also measures the run's
temperature and novelty statistics), opens the project in the main window (offscreen), and then:

- drops a folder of 1,000 other real photo patches (crops of twelve other scikit-image pictures,
  ``put_to_work.other_photos``, written as PNG) on the viewer, and times the Folder tab's classification
  from the drop to the last row in the table (listing, decoding, calibrated probabilities, novelty scores,
  thumbnails and the table included), while a 10 ms timer on the GUI thread measures the longest stall;
- runs, as a job in the same engine thread with the same model, a plain loop over the same files: decode
  each (cnndesk's reader) and call ``model.predict`` a batch of 64 at a time;
- alternates the two ``--repeats`` times and prints the best images/s of each and their ratio;
- classifies ``--count`` files (hard links to the 1,000, each decoded) through the window and prints the
  resident memory a quarter of the way in and at the end, and the bytes a row the rows hold (the state keeps
  them as columns: the path, the top classes, their confidences and the flags; the table reads them through
  an index array and decodes the thumbnails of the rows it shows only; the files themselves stream).

While the window classifies, it also prints what could stall the GUI thread: the longest time it spent on one
batch of rows (the state write and everything that draws it) and the longest garbage collection.

Needs the ``bench`` extra (scikit-image). About 3 minutes on 2 busy cores.

    .venv/bin/python benchmarks/folder_window.py [--repeats 3] [--count 5000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from copies_scale import cpu  # noqa: E402
from put_to_work import _rss_mb, other_photos, write_flat  # noqa: E402
from small_data import write_folders  # noqa: E402

BATCH = 64


def plain_loop(worker, files) -> float:
    """An engine job: decode every file with cnndesk's reader and ``model.predict`` them a batch at a time, as a
    plain script would; the seconds it took (the first call is traced before the clock starts)."""
    from cnndesk.core.data.images import decode_image

    model, pre = worker.model, worker.inspector.preprocessing
    model.predict(np.zeros((BATCH,) + pre.input_shape, np.float32), batch_size=BATCH, verbose=0)
    t0 = time.perf_counter()
    for start in range(0, len(files), BATCH):
        x = np.stack([decode_image(f, pre) for f in files[start:start + BATCH]]).astype(np.float32)
        model.predict(x, batch_size=BATCH, verbose=0)
    return time.perf_counter() - t0


def row_bytes(result) -> float:
    """The bytes a row that a ``FolderResult``'s columns hold (their arrays as filled, the paths, the errors)."""
    c = result.columns
    n = max(result.count, 1)
    arrays = sum(a[:n].nbytes for a in (c.top, c.probs, c.flags, c.unlikeness))
    paths = sum(sys.getsizeof(p) + 8 for p in c.paths)
    errors = sum(sys.getsizeof(e) + 100 for e in c.errors.values())
    return (arrays + paths + errors) / n


def linked(sources: list[Path], folder: Path, count: int) -> Path:
    """``folder`` holding ``count`` hard links to ``sources``, in turn."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        target = folder / f"{i:06d}.png"
        if not target.exists():
            os.link(sources[i % len(sources)], target)
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--count", type=int, default=5000, help="files classified through the window for memory")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()

    base = Path(tempfile.gettempdir()) / "cnndesk-folder-window"
    train_dir, _ = write_folders("patches", base)
    photos = base / "photos"
    if not photos.is_dir() or len(list(photos.glob("*.png"))) < 1000:
        write_flat(other_photos(n=1008), photos, limit=1000)
    files = sorted(photos.glob("*.png"))[:1000]
    warm = linked(files[:BATCH], base / "warm", BATCH)
    project = base / f"project-{a.epochs}"
    if not (project / "project.json").is_file():
        subprocess.run([sys.executable, "-m", "cnndesk.cli", "train", str(train_dir), "--project", str(project),
                        "--image-size", "64", "--color", "rgb", "--epochs", str(a.epochs), "--seed", "1"],
                       check=True, stdout=subprocess.DEVNULL)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from _qt import drop_file, GapMeter, wait_until
    from cnndesk.core.work.classify_folder import RUNNING

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("cnndesk-folder-window")
    from cnndesk.ui.main_window import MainWindow

    w = MainWindow(settings=QSettings(str(base / "s.ini"), QSettings.IniFormat), sample_dir=base / "sample")
    w.show()
    wait_until(lambda: w.engine.is_ready, what="TensorFlow")
    w.open_project(str(project), confirm=False)
    wait_until(lambda: w.state.has_model and not w.state.busy, what="the project")
    run = next(r for r in w.state.runs if r.id == w.state.model.run)
    assert run.trust, "the run carries no trust statistics"
    view = w.viewer_panel.folder_view

    def window_run(folder: Path, marks=()) -> tuple[float, float, float, dict]:
        """(seconds from the drop to the last row shown, the job's own seconds, longest stall ms, RSS marks)."""
        rss = {}

        def mark(_names):
            result = w.state.folder_result
            for m in marks:
                if m not in rss and result is not None and len(result.rows) >= m:
                    rss[m] = _rss_mb()

        w.state.observe(mark, "folder_result")
        handled = []  # seconds the GUI thread spent on each batch of rows (the state write and what draws it)
        on_rows = w.folder_work._on_rows

        def timed(report):
            t0 = time.perf_counter()
            on_rows(report)
            handled.append(time.perf_counter() - t0)

        w.folder_work._on_rows = timed  # the job takes the handler when it is submitted, at the drop
        collections.clear()
        meter = GapMeter()
        dropped = drop_file(w.viewer_panel, folder)
        wait_until(lambda: w.state.folder_result is not None and w.state.folder_result.status != RUNNING
                   and not view.cancel_button.isVisible(), what="the folder")
        shown = time.perf_counter() - dropped
        meter.timer.stop()
        del w.folder_work._on_rows
        handlers.append(max(handled) * 1000)
        collected.append(max(collections, default=0.0) * 1000)
        result = w.state.folder_result
        assert result.status == "done" and len(result.rows) == result.total, result.message
        assert view.table.model().rowCount() == result.total
        return shown, result.seconds, meter.longest, rss

    plain_stalls: list[float] = []

    def plain_run() -> float:
        answer = []
        meter = GapMeter()
        w.engine.submit(plain_loop, files, on_done=answer.append)
        wait_until(lambda: bool(answer), what="the plain loop")
        meter.timer.stop()
        plain_stalls.append(meter.longest)
        return answer[0]

    handlers: list[float] = []  # the longest batch handler of each run, ms
    collected: list[float] = []  # the longest garbage collection of each run, ms
    collections: list[float] = []  # the garbage collections of the run under way, s
    generations: list[tuple[float, int]] = []  # every collection: (s, generation)
    started = []

    def on_gc(phase, info):
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            collections.append(time.perf_counter() - started[0])
            generations.append((collections[-1], info["generation"]))

    gc.callbacks.append(on_gc)
    idle = GapMeter()
    from _qt import pause

    pause(5000)
    idle_gap = idle.longest  # the machine's own stalls: the window idle, nothing running
    idle.timer.stop()
    window_run(warm)  # the model's heads traced, as the plain loop traces predict before its clock
    rates = {"window": [], "plain": []}
    stalls = []
    load = os.getloadavg()[0]
    for _ in range(a.repeats):
        rates["plain"].append(len(files) / plain_run())
        shown, seconds, stall, _ = window_run(photos)
        rates["window"].append(len(files) / shown)
        stalls.append(stall)
    memory = None
    if a.count:
        many = linked(files, base / f"photos-x{a.count}", a.count)
        before = _rss_mb()
        shown, _, stall, rss = window_run(many, (a.count // 4, a.count))
        memory = (before, rss[a.count // 4], rss[a.count], a.count / shown, stall, row_bytes(w.state.folder_result))

    best_w, best_p = max(rates["window"]), max(rates["plain"])
    print(f"CPU: {cpu()}; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"1,000 real photo patches (64 px PNG), seed model trained {a.epochs} epochs with trust statistics:")
    print(f"  window, drop -> last row shown: best {best_w:.0f} images/s "
          f"(runs: {', '.join(f'{r:.0f}' for r in rates['window'])})")
    print(f"  plain decode + model.predict loop: best {best_p:.0f} images/s "
          f"(runs: {', '.join(f'{r:.0f}' for r in rates['plain'])})")
    print(f"  ratio window / plain: {best_w / best_p:.2f} (target >= 0.9)")
    print(f"  longest GUI stall while classifying: {max(stalls):.0f} ms (runs: "
          f"{', '.join(f'{s:.0f}' for s in stalls)}; target < 50 ms); the idle window's longest over 5 s: "
          f"{idle_gap:.0f} ms; while the plain loop ran in the engine: {max(plain_stalls):.0f} ms; the longest batch "
          f"of rows took the GUI thread {max(handlers[1:]):.1f} ms (runs: "
          f"{', '.join(f'{h:.1f}' for h in handlers[1:])}); the longest garbage collection "
          f"{max(collected[1:]):.1f} ms")
    for g in range(3):
        times = [t for t, gen in generations if gen == g]
        if times:
            print(f"  garbage collections of generation {g}: {len(times)}, longest {max(times) * 1000:.1f} ms, "
                  f"median {sorted(times)[len(times) // 2] * 1000:.2f} ms")
    if memory:
        before, quarter, end, rate, stall, kept = memory
        print(f"{a.count:,} files through the window at {rate:.0f} images/s, longest stall {stall:.0f} ms "
              f"(longest batch of rows {handlers[-1]:.1f} ms): RSS {before:.0f} MB before, {quarter:.0f} MB a quarter "
              f"in, {end:.0f} MB at the end ({(end - quarter) / (a.count * 3 / 4) * 1024:.2f} kB per row by RSS; the "
              f"rows' columns hold {kept:.0f} bytes a row, paths included)")
    w.state.modified = False
    w.close()
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
