"""The dataset panel's memory limit as a person uses it: the estimate, the path it picks, progress and cancel."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from cnndesk.core.data import dataset as dataset_module
from cnndesk.core.data import disk_cache
from cnndesk.core.data.cache_plan import CACHE_DIR_ENV
from cnndesk.ui.bindings import DatasetReading
from cnndesk.ui.dataset_panel import DatasetPanel

from conftest import shown, write_dataset
from test_dataset_panel import loaded, panel, pick_folder, state  # noqa: F401 (panel and state: fixtures)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder


@pytest.fixture
def reading(qtbot, cache_dir, state):
    """The panel of test_dataset_panel (``panel``, ``state``), a little taller, with its cache in ``cache_dir``."""
    r = DatasetReading(state, shown(qtbot, DatasetPanel(), 1000, 700))
    yield r
    r.shutdown()


def type_limit(panel, qtbot, text: str) -> None:
    editor = panel.memory_limit.lineEdit()
    editor.selectAll()
    qtbot.keyClicks(editor, text)
    qtbot.keyClick(editor, Qt.Key_Return)  # a number applies when it is finished


def test_the_memory_setting_shows_the_estimate_and_where_the_images_will_be_kept(panel, qtbot, monkeypatch,
                                                                                 tmp_path, cache_dir, state):
    assert "follows once a folder is read" in panel.cache_estimate.text()
    assert panel.memory_limit.text().startswith("Auto (")
    panel.image_size.setCurrentText("224")  # 30 images of 224x224x3: 4.5 MB decoded
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    pick_folder(panel, qtbot, monkeypatch, folder)
    qtbot.waitUntil(lambda: loaded(state, panel, folder), timeout=20000)
    assert not state.data.on_disk
    assert panel.cache_estimate.text().startswith("30 images decoded: 4.52 MB of ")
    assert "kept in memory" in panel.cache_estimate.text()

    type_limit(panel, qtbot, "1")  # 1 MB: too little for them
    assert "4.52 MB of 1 MB allowed" in panel.cache_estimate.text()
    assert f"read from a cache on disk in {cache_dir}" in panel.cache_estimate.text()
    qtbot.waitUntil(lambda: loaded(state, panel, folder) and state.data.on_disk, timeout=20000)
    assert "cache on disk" in panel.status_label.text()
    assert panel.thumbs.count() == 18 and panel.class_table.rowCount() == 3  # read back from the shards
    assert [p.parent for p in cache_dir.glob("*/manifest.json")] == [state.data.storage.folder]

    panel.image_size.setCurrentText("32")  # 30 images of 32x32x3: 92 kB, within 1 MB
    assert "92.2 kB of 1 MB allowed, so they are kept in memory" in panel.cache_estimate.text()
    qtbot.waitUntil(lambda: loaded(state, panel, folder) and not state.data.on_disk, timeout=20000)


def test_preparing_the_cache_shows_progress_and_cancel_leaves_nothing_behind(panel, reading, qtbot, monkeypatch,
                                                                            tmp_path, cache_dir, state):
    folder = write_dataset(tmp_path / "data", per_class=10, size=32)
    release = threading.Event()
    real = dataset_module.decode_or_reason

    def slow_decode(path, preprocessing):  # the loader thread waits here until the test has pressed Cancel
        release.wait(20)
        return real(path, preprocessing)

    for module in (dataset_module, disk_cache):
        monkeypatch.setattr(module, "decode_or_reason", slow_decode)
    type_limit(panel, qtbot, "1")
    panel.image_size.setCurrentText("224")
    qtbot.waitUntil(lambda: not panel._reload_timer.isActive())  # no folder yet: nothing to read again
    pick_folder(panel, qtbot, monkeypatch, folder)
    qtbot.waitUntil(lambda: "Preparing the on-disk cache" in panel.status_label.text(), timeout=20000)
    assert panel.progress.isVisible() and panel.cancel_button.isVisible()
    qtbot.mouseClick(panel.cancel_button, Qt.LeftButton)
    release.set()
    assert panel.status_label.text() == "Reading cancelled."
    assert not panel.cancel_button.isVisible() and state.data is None
    reading.shutdown()  # the cancelled thread has stopped and cleaned up
    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []


def test_the_window_trains_from_a_dataset_on_disk_and_saves_a_normal_project(window, qtbot, monkeypatch, tmp_path,
                                                                            cache_dir):
    from cnndesk.core.project.store import open_project
    from cnndesk.ui import file_dialogs

    w = window
    panel = w.dataset_panel
    type_limit(panel, qtbot, "1")
    panel.image_size.setCurrentText("96")  # the sample's 120 images: 3.32 MB decoded, over 1 MB
    sample = w.state.data.root
    qtbot.waitUntil(lambda: loaded(w.state, panel, sample) and w.state.data.on_disk, timeout=30000)
    spin = w.model_panel.epochs
    spin.selectAll()
    qtbot.keyClicks(spin, "1")
    qtbot.keyClick(spin, Qt.Key_Return)
    qtbot.mouseClick(w.training_panel.train_button, Qt.LeftButton)
    qtbot.waitUntil(lambda: not w.state.training, timeout=120000)
    assert "cache on disk" in w.training_panel.log.toPlainText()
    assert w.training_panel.progress.format().startswith("Done") and len(w.state.history) == 1

    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.setattr(file_dialogs, "ask_folder_for_writing", lambda *a, **k: str(folder))
    w.save_as_action.trigger()
    qtbot.waitUntil(lambda: not w.state.busy, timeout=30000)
    project, model = open_project(folder)
    assert project.dataset.preprocessing.image_size == (96, 96) and len(project.history) == 1
    assert model.predict(w.state.data.images[:2].astype("float32"), verbose=0).shape == (2, 4)


def test_the_memory_limit_belongs_to_the_computer_and_is_remembered(make_window, qtbot, settings, cache_dir):
    settings.setValue("dataset/memoryLimitMB", 750)
    w = make_window(start_engine=False)
    assert w.dataset_panel.memory_limit.value() == 750
    assert w.dataset_panel.cache_settings().memory_limit == 750 * 10**6
    type_limit(w.dataset_panel, qtbot, "0")
    assert w.dataset_panel.memory_limit.text().startswith("Auto (")
    assert w.dataset_panel.cache_settings().memory_limit is None  # half of the available memory, read at load
    assert int(settings.value("dataset/memoryLimitMB")) == 0
