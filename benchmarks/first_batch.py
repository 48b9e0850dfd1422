"""Seconds from pressing Train to the first batch on the chart, through the real main window.

Starts ``MainWindow`` offscreen with temporary settings and the built-in
sample dataset (written into a temporary folder), waits until TensorFlow is
loaded in the engine thread and the dataset is read, then presses Train
(``Training > Train``, as F5 does) several times. Each run is stopped after its
first epoch (``--full``: runs to the end). For each press it prints the
seconds from the press to the first batch report reaching the GUI thread,
and where that time went, from the ``StartTimes`` that ``train`` records:

    queue      press -> ``train`` called in the engine thread (signal, job dispatch)
    input      the tf.data input pipelines built
    model      model built, or a pooled one given fresh weights
    compile    compiled, or the pooled model's optimizer reset
    fit setup  Keras ``fit`` up to its first callback
    iterator   the input pipeline's iterator made, up to the first batch's start
    1st step   first batch fetched and trained (with the train step's trace when "traced")
    to GUI     the report handed on, until the GUI thread has it
    2nd step   the second batch, for comparison with the first
    epoch 1    the first epoch's seconds as the log shows them (with the validation step's trace, if any)

    .venv/bin/python benchmarks/first_batch.py                  # 5 presses, ~2 min
    .venv/bin/python benchmarks/first_batch.py --presses 8 --full
    .venv/bin/python benchmarks/first_batch.py --no-reuse       # every run builds and traces a new model
    .venv/bin/python benchmarks/first_batch.py --per-class 30   # a smaller sample
    .venv/bin/python benchmarks/first_batch.py --no-stock       # without the spares the engine traces while idle
    .venv/bin/python benchmarks/first_batch.py --right-after    # each press as soon as the run before has ended

The app stocks its model pool while the engine is idle (``EngineWorker.stock_pool``:
``SPARES_AHEAD`` traced models once TensorFlow and the dataset are ready, or an
edit of the stack has settled, and, 1.5 s after a run, whatever the pool lacks),
so a press on the same layers finds a traced model. The benchmark waits until the
engine is idle before the first press; before each later one it waits until the
engine is idle too, as a person reading the chart would, or with ``--right-after``
only until the window shows the run ended (Train enabled again), as a person
pressing Train again at once would: such a press must not wait for background work
either. ``--no-stock`` shows what a press costs without the spares.

"cpu" is the CPU time the whole process used from the press to the first
batch (on a machine shared with other work it moves far less than the wall
clock does), "GUI cpu" the part of it the GUI thread used (switching to the
Train tab, painting).

The last two lines are summaries to quote, of wall-clock and of CPU seconds, e.g.
"first batch after Train: 1st 0.62 s, then median 0.52 s (range 0.42-0.81 s, 4 presses)".
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.append(str(Path(__file__).resolve().parent.parent))  # after PYTHONPATH: another checkout can be timed

#: (column title, stage mark that ends it); a column's time runs from the previous column's mark
COLUMNS = [("input", "input pipeline"), ("model", "model"), ("compile", "compile"), ("fit setup", "fit setup"),
           ("iterator", "iterator"), ("1st step", "first step")]


def wait(app, condition, what: str, timeout_s: float = 300.0) -> None:
    """Run the Qt event loop until ``condition()`` holds.

    It sleeps between events as the application's own loop does: a loop that
    polled would take CPU time and the GIL from the engine thread it measures.
    """
    from PySide6.QtCore import QEventLoop, QTimer

    deadline = time.monotonic() + timeout_s
    tick = QTimer()
    tick.start(50)  # wakes the loop now and then to look at the clock
    try:
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")
            app.processEvents(QEventLoop.AllEvents | QEventLoop.WaitForMoreEvents)
    finally:
        tick.stop()


def open_window(app, work: Path, per_class: int, stock: bool = True):
    """The main window with TensorFlow loaded and the sample dataset read, nothing else pending."""
    from PySide6.QtCore import QSettings

    from cnndesk.core.data.samples import write_sample_dataset
    from cnndesk.ui.main_window import MainWindow

    sample = work / "sample"
    write_sample_dataset(sample, per_class=per_class)
    window = MainWindow(settings=QSettings(str(work / "settings.ini"), QSettings.IniFormat), sample_dir=sample)
    window.engine.worker.stock_spares = stock  # before the engine is ready, when the first spare is stocked
    errors: list[str] = []
    window.show_error = lambda title, message: errors.append(f"{title}: {message}")
    window.engine.failed.connect(lambda name, message: errors.append(f"{name}: {message}"))
    window.show()
    wait(app, lambda: (window.engine.is_ready and window.state.data is not None) or bool(errors),
         "TensorFlow and the dataset")
    if errors:
        window.shutdown()
        raise SystemExit(f"error: {errors[-1]}")
    wait(app, lambda: window.engine.pending() == 0, "the engine to be idle")
    return window


def press_train(app, window, full: bool) -> dict:
    """Press Train once; return the press-to-GUI seconds and the engine's ``StartTimes``."""
    seen: dict = {}

    def on_batch(report) -> None:
        seen.setdefault("first_batch", time.perf_counter())
        seen.setdefault("first_batch_cpu", time.process_time())
        seen.setdefault("first_batch_gui_cpu", time.thread_time())

    def on_epoch(report) -> None:
        seen.setdefault("epoch_seconds", report.seconds)
        if not full:
            window.training.stop()

    trained, reported = window.training._on_trained, window.training._on_report

    def on_trained(answer) -> None:
        result = getattr(answer, "result", answer)  # the engine's Trained answer (a TrainResult before it)
        seen["times"] = getattr(result, "start_times", None)  # None: a version of cnndesk that does not record them
        trained(answer)

    def on_report(report) -> None:
        if hasattr(report, "batch"):
            on_batch(report)
        elif hasattr(report, "seconds"):
            on_epoch(report)
        reported(report)

    # TrainingControl passes both to the train job when Train is pressed (its reports come through the job)
    window.training._on_trained, window.training._on_report = on_trained, on_report
    try:
        wait(app, window.train_action.isEnabled, "Train to be enabled")
        pressed, pressed_cpu, pressed_gui_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        window.train_action.trigger()
        wait(app, lambda: "times" in seen or not window.state.training, "the run to end")
    finally:
        del window.training._on_trained, window.training._on_report
    if "times" not in seen or "first_batch" not in seen:
        raise SystemExit("the run failed before its first batch")
    return {"pressed": pressed, "cpu": seen["first_batch_cpu"] - pressed_cpu,
            "gui_cpu": seen["first_batch_gui_cpu"] - pressed_gui_cpu, **seen}


def breakdown(run: dict) -> list[float]:
    """Seconds per column: queue, the engine's stages, to GUI, 2nd step."""
    times = run["times"]
    if times is None:
        return [float("nan")] * (len(COLUMNS) + 3)
    row = [times.at("called") - run["pressed"]]
    previous = times.at("called")
    for _, stage in COLUMNS:
        t = times.at(stage)
        row.append(t - previous)
        previous = t
    row.append(run["first_batch"] - previous)
    second = times.at("second step")
    row.append(second - times.at("reported") if second is not None else float("nan"))
    return row


def summary(totals: list[float]) -> str:
    if len(totals) == 1:
        return f"first batch after Train: {totals[0]:.2f} s (1 press)"
    later = totals[1:]
    return (f"first batch after Train: 1st {totals[0]:.2f} s, then median {statistics.median(later):.2f} s "
            f"(range {min(later):.2f}-{max(later):.2f} s, {len(later)} press{'es' if len(later) > 1 else ''})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presses", type=int, default=5, help="times to press Train (default 5)")
    parser.add_argument("--full", action="store_true", help="let each run train all its epochs")
    parser.add_argument("--per-class", type=int, default=400, help="sample images per class (default 400, the "
                        "built-in sample's size)")
    parser.add_argument("--no-reuse", action="store_true", help="every run builds and traces a new model")
    parser.add_argument("--no-stock", action="store_true", help="no spare model traced while the engine is idle")
    parser.add_argument("--right-after", action="store_true", help="press again as soon as each run has ended, "
                        "without waiting for the engine to be idle")
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([sys.argv[0], "-platform", "offscreen"])
    with tempfile.TemporaryDirectory(prefix="cnndesk-first-batch-") as tmp:
        t0 = time.perf_counter()
        window = open_window(app, Path(tmp), args.per_class, stock=not args.no_stock)
        window.engine.worker.reuse_models = not args.no_reuse
        data = window.state.data
        print(f"window, TensorFlow {window.engine.info.tensorflow} and {len(data.labels)} images "
              f"at {data.preprocessing.input_shape[0]} px ready in {time.perf_counter() - t0:.1f} s; "
              f"{'full runs' if args.full else 'each run stopped after its first epoch'}"
              f"{', no model reuse' if args.no_reuse else ''}{', no spare stocked while idle' if args.no_stock else ''}"
              f"{'; each press right after the run before' if args.right_after else '; each press once the engine is idle'}")
        try:
            from cnndesk.core.cpu_kernels import describe_cpu
        except ImportError:  # an older checkout timed through PYTHONPATH
            from platform import processor as describe_cpu
        print(f"CPU: {describe_cpu()}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
        titles = ["press", "total", "cpu", "GUI cpu", "queue"] + [c for c, _ in COLUMNS] + ["to GUI", "2nd step", "epoch 1", "traced"]
        print("  ".join(f"{t:>9}" for t in titles))
        totals, cpus = [], []
        try:
            for i in range(args.presses):
                run = press_train(app, window, args.full)
                total = run["first_batch"] - run["pressed"]
                totals.append(total)
                cpus.append(run["cpu"])
                cells = [f"{i + 1:>9}", f"{total:9.3f}", f"{run['cpu']:9.3f}", f"{run['gui_cpu']:9.3f}"]
                cells += [f"{v:9.3f}" for v in breakdown(run)] + [f"{run.get('epoch_seconds', float('nan')):9.2f}"]
                traced = "?" if run["times"] is None else "yes" if run["times"].traced else "no"
                print("  ".join(cells + [f"{traced:>9}"]), flush=True)
                if args.right_after:
                    wait(app, lambda: not window.state.training, "the run to finish")
                else:
                    wait(app, lambda: not window.state.training and window.engine.pending() == 0,
                         "the run to finish (and the spares for the next ones)")
        finally:
            window.state.modified = False
            window.close()
            window.shutdown()
            app.processEvents()
    print(summary(totals))
    print(summary(cpus).replace("first batch after Train", "CPU seconds to it"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
