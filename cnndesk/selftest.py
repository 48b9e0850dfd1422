"""``cnndesk --selftest`` / ``cnndesk-cli selftest``: check that this installation works.

Headless (Qt's offscreen platform), in a temporary folder, leaving the
user's settings and files alone. It drives the real main window and its
TensorFlow engine thread through the whole loop a user goes through:

window → TensorFlow → dataset → train one epoch → save → reopen → predict →
activation maps and heat map → export ``.keras`` → open that ``.keras`` →
export LiteRT → close.

Each step prints one line with its time; the first failure prints which step
failed and why, and the run exits 1. It is how an installed bundle is
checked (everything TensorFlow, Keras and Qt load lazily is exercised), and
what a user can run and paste into a bug report.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, TextIO

# generous: a cold start of a frozen TensorFlow on a slow disk takes tens of seconds
STEP_TIMEOUT_S = 300.0


class SelftestFailure(Exception):
    """A step did not do what it should; the message says what was seen."""


class _Run:
    def __init__(self, out: TextIO):
        self.out = out
        self.started = time.perf_counter()

    def step(self, name: str, action: Callable[[], str | None]) -> None:
        t0 = time.perf_counter()
        try:
            detail = action()
        except SelftestFailure as e:
            raise _StepFailed(name, str(e)) from None
        except Exception as e:  # an unexpected error is a failure of this step, reported, not raised
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            raise _StepFailed(name, f"{type(e).__name__}: {e}", "".join(tb)) from None
        dt = time.perf_counter() - t0
        print(f"  ok   {name:<14} {dt:7.2f} s{'   ' + detail if detail else ''}", file=self.out, flush=True)


class _StepFailed(Exception):
    def __init__(self, step: str, message: str, trace: str = ""):
        super().__init__(message)
        self.step, self.message, self.trace = step, message, trace


def _wait(app, condition: Callable[[], bool], what: str, timeout_s: float = STEP_TIMEOUT_S) -> None:
    """Run the Qt event loop until ``condition()`` holds; fail after ``timeout_s``."""
    from PySide6.QtCore import QEventLoop

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SelftestFailure(f"timed out after {timeout_s:.0f} s waiting for {what}")
        app.processEvents(QEventLoop.AllEvents, 50)
        time.sleep(0.005)


def _job(app, window, method, **kwargs):
    """Run one engine job (an ``EngineWorker`` method, in the engine thread as the app does); its result."""
    outcome: dict = {}
    job = window.engine.submit(method, on_done=lambda r: outcome.setdefault("ok", r),
                               on_error=lambda m: outcome.setdefault("error", m), **kwargs)
    if job is None:
        raise SelftestFailure("the engine thread has stopped")
    _wait(app, lambda: bool(outcome), f"the engine's {method.__name__.replace('_', ' ')} job")
    if "error" in outcome:
        raise SelftestFailure(outcome["error"])
    return outcome["ok"]


def _quiet_offscreen_messages(mode, context, message) -> None:
    """Drop the offscreen platform's notes about window features it lacks; pass the rest on."""
    if "does not support" in message:
        return
    sys.stderr.write(message + "\n")


def versions() -> str:
    """One line: cnndesk, Python, Qt and the platform (TensorFlow is added once it is loaded)."""
    from PySide6 import __version__ as pyside_version
    from PySide6.QtCore import qVersion

    from . import __version__

    frozen = " (installed bundle)" if getattr(sys, "frozen", False) else ""
    return (f"cnndesk {__version__}{frozen}, Python {platform.python_version()}, PySide6 {pyside_version} "
            f"(Qt {qVersion()}), {platform.system()} {platform.machine()}")


def run_selftest(out: TextIO | None = None, keep: str | os.PathLike | None = None) -> int:
    """Run every step; return 0 when all pass, 1 at the first failure.

    Args:
        out: where the step lines go. Defaults to ``sys.stdout``.
        keep: a folder to work in and leave behind (for a bug report). Defaults
            to a temporary folder that is removed afterwards.
    """
    out = out or sys.stdout
    # before QApplication exists: headless, whatever display there is
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from PySide6.QtCore import qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    work = Path(keep).expanduser().resolve() if keep else Path(tempfile.mkdtemp(prefix="cnndesk-selftest-"))
    work.mkdir(parents=True, exist_ok=True)
    run = _Run(out)
    print(f"cnndesk selftest: {versions()}", file=out, flush=True)
    print(f"  working in {work}", file=out, flush=True)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "cnndesk", "-platform", "offscreen"])
    previous_handler = qInstallMessageHandler(_quiet_offscreen_messages)
    state: dict = {}
    window = None
    code = 0
    try:
        window = _steps(app, run, work, state)
    except _StepFailed as e:
        code = 1
        print(f"  FAIL {e.step}: {e.message}", file=out, flush=True)
        if e.trace:
            print(e.trace.rstrip(), file=out, flush=True)
    finally:
        window = window or state.get("window")
        if window is not None:
            window.state.modified = False  # nothing to ask about: the project was saved or is a throwaway
            window.close()
            window.shutdown()
            window.deleteLater()
            app.processEvents()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        qInstallMessageHandler(previous_handler)
    total = time.perf_counter() - run.started
    print(f"selftest {'passed' if code == 0 else 'FAILED'} in {total:.1f} s", file=out, flush=True)
    return code


def _steps(app, run: _Run, work: Path, state: dict):
    from PySide6.QtCore import QSettings

    from .core.data.samples import SAMPLE_CLASSES, write_sample_dataset
    from .ui.main_window import MainWindow
    from .ui.engine_worker import EngineWorker

    sample = work / "sample"
    project_dir = work / "project"
    errors: list[str] = []

    def make_window():
        # per_class 12: 48 images, enough for a split; the marker keeps the window from writing the full sample
        write_sample_dataset(sample, per_class=12)
        settings = QSettings(str(work / "settings.ini"), QSettings.IniFormat)
        window = MainWindow(settings=settings, sample_dir=sample)
        window.show_error = lambda title, message: errors.append(f"{title}: {message}")
        state["window"] = window
        window.show()
        _wait(app, window.isVisible, "the main window")
        return f"{window.width()}x{window.height()} on {app.platformName()}"

    run.step("window", make_window)
    window = state["window"]

    def check_errors():
        if errors:
            raise SelftestFailure(errors[-1])

    def tensorflow():
        _wait(app, lambda: window.engine.is_ready or bool(errors), "TensorFlow to load in the engine thread")
        check_errors()
        info = window.engine.info
        return f"TensorFlow {info.tensorflow}, Keras {info.keras}"

    run.step("tensorflow", tensorflow)

    def dataset():
        _wait(app, lambda: window.state.data is not None or bool(errors), "the sample dataset to be read")
        check_errors()
        data = window.state.data
        if sorted(data.class_names) != sorted(SAMPLE_CLASSES):
            raise SelftestFailure(f"expected the sample's classes {sorted(SAMPLE_CLASSES)}, read {data.class_names}")
        return f"{len(data.labels)} images in {data.num_classes} classes"

    run.step("dataset", dataset)

    def train():
        window.model_panel.epochs.setValue(1)
        window.model_panel.min_steps.setValue(0)  # one epoch of the sample, however few steps it makes
        if not window.train_action.isEnabled():
            raise SelftestFailure("Train is disabled although TensorFlow and the dataset are ready")
        window.train_action.trigger()
        _wait(app, lambda: window.state.training or window.state.has_model or bool(errors), "training to start")
        _wait(app, lambda: not window.state.training, "training to finish")
        check_errors()
        if not window.state.has_model or len(window.state.history) != 1:
            raise SelftestFailure(f"expected one trained epoch, the history holds {len(window.state.history)}")
        row = window.state.history[-1]
        return f"loss {row['loss']:.3f}, {row.get('images_per_s', 0):.0f} images/s"

    run.step("train", train)

    def save():
        saved: list[bool] = []
        window.projects.save_to(str(project_dir), then=saved.append)
        _wait(app, lambda: bool(saved), "the project to be saved")
        if not saved[0]:
            check_errors()
            raise SelftestFailure("saving the project failed")
        from .core.project.store import is_project

        if not is_project(project_dir):
            raise SelftestFailure(f"{project_dir} was saved but is not recognised as a project")
        size = sum(p.stat().st_size for p in project_dir.rglob("*") if p.is_file())
        return f"{size / 1024:.0f} KiB"

    run.step("save", save)

    def reopen():
        window.state.update(model=None, project_path=None, history=[])
        window.projects.open(str(project_dir), confirm=False)
        _wait(app, lambda: window.state.project_path is not None or bool(errors), "the project to open")
        check_errors()
        if not window.state.has_model or len(window.state.history) != 1:
            raise SelftestFailure("the reopened project has no model or lost its training history")
        return None

    run.step("reopen", reopen)

    image = str(next((sample / SAMPLE_CLASSES[0]).glob("*.png")))

    def predict():
        result = _job(app, window, EngineWorker.predict_files, paths=[image], k=3)[0]
        if result.error is not None:
            raise SelftestFailure(result.error)
        state["prepared"] = result.image
        top = result.top[0]
        return f"{Path(image).name}: {top[0]} {top[1]:.0%}"

    run.step("predict", predict)

    def inspect():
        import numpy as np

        result = _job(app, window, EngineWorker.inspect, image=state["prepared"])
        maps, cam = result.maps, np.asarray(result.cam)
        if not maps:
            raise SelftestFailure("no activation maps came back")
        if cam.ndim != 2 or not np.all(np.isfinite(cam)):
            raise SelftestFailure(f"the heat map is not a finite 2-D map (shape {cam.shape})")
        return f"{len(maps)} layers of activation maps, heat map {cam.shape[0]}x{cam.shape[1]}"

    run.step("inspect", inspect)

    def dataset_map():  # scikit-learn's PCA and t-SNE, which an installer must bundle with their compiled parts
        import numpy as np

        from .core.data.copies import DEFAULT_DISTANCE

        data = window.state.data
        result = _job(app, window, EngineWorker.map_dataset, data=data, distance=DEFAULT_DISTANCE)
        if result is None or result.xy.shape != (len(data.labels), 2) or not np.all(np.isfinite(result.xy)):
            raise SelftestFailure("the map of the dataset did not place every image")
        return f"{len(result):,} images placed"

    run.step("map", dataset_map)

    def export(fmt: str, filename: str):
        path = Path(_job(app, window, EngineWorker.export, fmt=fmt, out=str(work / filename)))
        if not path.is_file() or path.stat().st_size == 0:
            raise SelftestFailure(f"{path} was not written")
        state[fmt] = path
        return f"{path.stat().st_size / 1024:.0f} KiB"

    run.step("export .keras", lambda: export("keras", "exported.keras"))

    def open_keras():
        opened = _job(app, window, EngineWorker.open_model, path=str(state["keras"]))
        if len(opened.model.class_names) != len(SAMPLE_CLASSES):
            raise SelftestFailure(f"the exported model has {len(opened.model.class_names)} classes, expected "
                                  f"{len(SAMPLE_CLASSES)}")
        return f"{len(opened.layers)} layers"

    run.step("open .keras", open_keras)

    run.step("export LiteRT", lambda: export("litert", "exported.tflite"))

    def close():
        window.state.modified = False
        window.close()
        _wait(app, lambda: not window.isVisible(), "the window to close")
        window.shutdown()
        if window.engine.worker_thread.isRunning():
            raise SelftestFailure("the engine thread did not stop")
        return None

    run.step("close", close)
    return window
