"""Shared fixtures: tiny generated datasets, offscreen Qt, fresh settings."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# the suite does not depend on the caller's shell: TensorFlow's log level is pinned here, and the log file goes
# to a folder of the run's own instead of the user's data folder
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["CNNDESK_LOG_DIR"] = tempfile.mkdtemp(prefix="cnndesk-test-logs-")

REPO = Path(__file__).resolve().parents[1]
#: variables a child's terminal output depends on; ``child_env`` clears them unless a test sets them
TERMINAL_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES", "TF_ENABLE_ONEDNN_OPTS", "QT_QPA_PLATFORM")


def child_env(**variables: str) -> dict[str, str]:
    """The environment for a cnndesk child process whose terminal a test reads.

    This checkout on the path, and the variables of ``TERMINAL_VARIABLES``
    cleared (as a user who never set them has them) except those given, with
    Qt offscreen unless ``QT_QPA_PLATFORM`` is given.
    """
    env = {k: v for k, v in os.environ.items() if k not in TERMINAL_VARIABLES}
    env.update(PYTHONPATH=str(REPO), QT_QPA_PLATFORM="offscreen")
    env.update(variables)
    return env

from cnndesk.core.app_log import start_logging  # noqa: E402
from cnndesk.core.cpu_kernels import use_onednn_kernels  # noqa: E402

start_logging("pytest")  # as the app and the CLI do at start-up
use_onednn_kernels()  # the kernels the app and the CLI train with; before anything imports TensorFlow

import numpy as np
import pytest
from PIL import Image

from cnndesk.core.model import architecture

#: the fewest steps a new model takes in the app; the suite trains its tiny folders for exactly the epochs a test
#: asks instead (``exact_epochs``), and the tests of the rule itself bring it back (``app_min_steps``)
APP_MIN_STEPS = architecture.MIN_STEPS


@pytest.fixture(scope="session", autouse=True)
def exact_epochs():
    """The minimum number of steps off for the whole suite (every ``TrainingSettings()`` made from here on).

    The tests' folders are a few dozen images, a step or two per epoch: with the app's minimum a run of 2
    epochs would be 150, and every test that counts epochs would count those instead.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(architecture, "MIN_STEPS", 0)
        yield


@pytest.fixture
def app_min_steps(monkeypatch):
    """The app's minimum number of steps, for a test of the rule (or of what shows it)."""
    monkeypatch.setattr(architecture, "MIN_STEPS", APP_MIN_STEPS)
    return APP_MIN_STEPS


def make_image(kind: str, rng: np.random.Generator, size: int = 32) -> Image.Image:
    """A small, clearly separable image: class 0 dark-left, 1 dark-top, 2 bright centre, 3 stripes."""
    arr = rng.integers(90, 140, (size, size, 3)).astype(np.uint8)
    h = size // 2
    if kind == "left":
        arr[:, :h] = rng.integers(0, 40)
    elif kind == "top":
        arr[:h, :] = rng.integers(0, 40)
    elif kind == "centre":
        arr[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 250
    else:
        arr[::4] = 250
    return Image.fromarray(arr)


def write_dataset(root, classes=("left", "top", "centre"), per_class=20, size=32, fmt="png", seed=0):
    rng = np.random.default_rng(seed)
    for c in classes:
        d = root / c
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            make_image(c, rng, size).save(d / f"{c}_{i:02d}.{fmt}")
    return root


def read_only_folder(folder, monkeypatch):
    """A folder that refuses new files; as root (whom permissions do not stop) as a read-only disk refuses them."""
    import errno
    import tempfile
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real = tempfile.mkstemp

        def mkstemp(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == folder:
                raise OSError(errno.EROFS, "Read-only file system")
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folder


def strict_json(text: str):
    """``text`` parsed as JSON that every reader takes: NaN, Infinity and -Infinity (Python's extensions) are refused."""
    import json

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def pytest_collection_modifyitems(config, items):
    """Every test that drives Qt (the ``qtbot`` fixture, directly or through a window fixture) is marked ``gui``.

    ``slow`` and ``distributed`` are marked by hand in the test files; pyproject.toml registers all three.
    """
    for item in items:
        if {"qtbot", "qapp"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.gui)


@pytest.fixture
def tiny_dataset(tmp_path):
    """3 classes x 20 PNG images at 32x32, easy to learn."""
    return write_dataset(tmp_path / "tiny")


# ---------------------------------------------------------------------------
# GUI fixtures

@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory):
    """A small copy of the built-in sample (30 per class), what the app starts with."""
    from cnndesk.core.data.samples import write_sample_dataset

    return write_sample_dataset(tmp_path_factory.mktemp("sample") / "shapes", per_class=30)


@pytest.fixture
def settings(tmp_path):
    """Fresh QSettings in a temporary file, so no test sees another's or the user's."""
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def make_window(qtbot, settings, sample_dir):
    """Create main windows; each is shut down after the test, and its threads must be gone."""
    from cnndesk.ui.main_window import MainWindow

    windows = []

    def make(**kwargs):
        kwargs.setdefault("settings", settings)
        kwargs.setdefault("sample_dir", sample_dir)
        w = MainWindow(**kwargs)
        w.show()  # closed below, not by qtbot.addWidget: its teardown runs first and would meet the save question
        windows.append(w)
        return w

    yield make
    for w in windows:
        if w.state.training:
            w.training.stop()
            qtbot.waitUntil(lambda: not w.state.training, timeout=30000)
        w.state.modified = False
        w.close()
        w.shutdown()
        assert not w.engine.worker_thread.isRunning(), "the engine thread outlived its window"
        threads = w.dataset_reading.loader._threads
        assert not threads or all(not t.isRunning() for t in threads)


@pytest.fixture
def window(make_window, qtbot):
    """The main window with TensorFlow loaded and the sample dataset read."""
    w = make_window()
    qtbot.waitUntil(lambda: w.engine.is_ready and w.state.data is not None, timeout=60000)
    return w


def kept_epoch(history: list[dict], n_val: int) -> int:
    """The epoch keep-the-best should pick: the best validation accuracy, where one validation image fewer right
    counts as a tie, ties going to the lower validation loss (docs/early-stopping.md)."""
    top = max(r["val_accuracy"] for r in history)
    near = [r for r in history if r["val_accuracy"] >= top - 1 / n_val - 1e-6]
    return min(near, key=lambda r: r["val_loss"])["epoch"]


def shown(qtbot, widget, width: int, height: int):
    """``widget`` on screen at ``width`` x ``height``, closed by qtbot after the test (panels tested alone)."""
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def rows_in_sight(table) -> int:
    """How many of a table's rows a person sees whole: inside its viewport and not cut off by a scrolling parent."""
    sight = table.viewport().visibleRegion().boundingRect()
    return sum(1 for r in range(table.rowCount()) if table.rowViewportPosition(r) >= sight.top()
               and table.rowViewportPosition(r) + table.rowHeight(r) - 1 <= sight.bottom())


def columns_in_sight(table) -> int:
    """How many of a table's columns a person sees whole (see ``rows_in_sight``)."""
    sight = table.viewport().visibleRegion().boundingRect()
    return sum(1 for c in range(table.columnCount()) if table.columnViewportPosition(c) >= sight.left()
               and table.columnViewportPosition(c) + table.columnWidth(c) - 1 <= sight.right())


def looked_inside(viewer) -> bool:
    """The viewer shows the selected image's maps and its heat map (the Grad-CAM tab's picture), as a person sees
    them once every answer for that image has come."""
    cam, im = viewer.gradcam, viewer.current
    return im is not None and im.prepared is not None and cam.image is im.prepared and cam.cam is not None
